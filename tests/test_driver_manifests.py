"""Manifests of the scaleHost, serviceUpgrade and forwardPost drivers through the loader (schema plus
the driver's checks): a valid one loads, and each broken rule is reported at its field."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from controller.drivers import load_drivers
from controller.receivers.loader import load_documents

VALID: dict[str, dict[str, Any]] = {
    "scaleHost": {
        "scaleHostConfig": {
            "projectId": "1a5", "hostSelector": {"role": "worker"}, "action": "down", "amount": 1,
            "min": 1, "max": 5, "deleteOption": "leastRecent",
        }
    },
    "serviceUpgrade": {
        "serviceUpgradeConfig": {
            "projectId": "1a5", "serviceSelector": {"app": "web"}, "tag": "v1.*", "payloadFormat": "registry",
            "batchSize": 2, "intervalMillis": 500, "startFirst": True,
        }
    },
    "forwardPost": {
        "forwardPostConfig": {"projectId": "1a5", "serviceName": "builder", "port": 8080, "path": "/hooks"}
    },
}  # fmt: skip

BROKEN = [
    ("scaleHost", "projectId", "1s5", "spec.scaleHostConfig.projectId"),
    ("scaleHost", "hostSelector", {}, "spec.scaleHostConfig.hostSelector"),
    ("scaleHost", "action", "sideways", "spec.scaleHostConfig.action"),
    ("scaleHost", "amount", 0, "spec.scaleHostConfig.amount"),
    ("scaleHost", "max", 0, "spec.scaleHostConfig.max"),
    ("scaleHost", "deleteOption", "random", "spec.scaleHostConfig.deleteOption"),
    ("serviceUpgrade", "payloadFormat", "quay", "spec.serviceUpgradeConfig.payloadFormat"),
    ("serviceUpgrade", "batchSize", 0, "spec.serviceUpgradeConfig.batchSize"),
    ("serviceUpgrade", "intervalMillis", 50, "spec.serviceUpgradeConfig.intervalMillis"),
    ("serviceUpgrade", "tag", "regex:v1.(", "spec.serviceUpgradeConfig.tag"),
    ("serviceUpgrade", "serviceSelector", {}, "spec.serviceUpgradeConfig.serviceSelector"),
    ("forwardPost", "port", 0, "spec.forwardPostConfig.port"),
    ("forwardPost", "port", 70000, "spec.forwardPostConfig.port"),
    ("forwardPost", "serviceName", "", "spec.forwardPostConfig.serviceName"),
]


def write(tmp_path: Path, driver: str, config: dict[str, Any]) -> Path:
    document = {
        "apiVersion": "webhook-service.dev/v1",
        "kind": "Receiver",
        "metadata": {"name": "r"},
        "spec": {"driver": driver, **config},
    }
    path = tmp_path / "receiver.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


@pytest.mark.parametrize("driver", sorted(VALID))
def test_a_valid_manifest_of_each_new_driver_loads(tmp_path: Path, driver: str) -> None:
    load = load_documents(write(tmp_path, driver, VALID[driver]), load_drivers())
    assert load.problems == [] and [r.driver for r in load.receivers] == [driver]


@pytest.mark.parametrize(("driver", "field", "value", "path"), BROKEN)
def test_each_broken_rule_names_its_field(
    tmp_path: Path, driver: str, field: str, value: Any, path: str
) -> None:
    config = copy.deepcopy(VALID[driver])
    next(iter(config.values()))[field] = value
    load = load_documents(write(tmp_path, driver, config), load_drivers())
    assert load.receivers == []
    assert {p.path for p in load.problems} == {path}, load.problems
