"""``spec.signature`` in manifests: what the loader makes of it, and the one-of rule on its secret."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from controller.cli import main
from controller.drivers import load_drivers
from controller.drivers.contract import DriverSet
from controller.receivers.loader import FileLoad, check_object, load_documents, load_standalone
from controller.receivers.schema import ReceiverSchema

CONFIG = {"projectId": "1a5", "serviceId": "1s7", "action": "up", "amount": 1, "min": 1, "max": 10}


@pytest.fixture
def drivers() -> DriverSet:
    return load_drivers()


def manifest(signature: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "webhook-service.dev/v1",
        "kind": "Receiver",
        "metadata": {"name": "signed", "namespace": "default"},
        "spec": {"driver": "scaleService", "scaleServiceConfig": CONFIG, "signature": signature},
    }


def load(tmp_path: Path, drivers: DriverSet, signature: dict[str, Any]) -> FileLoad:
    path = tmp_path / "receiver.yaml"
    path.write_text(yaml.safe_dump(manifest(signature)))
    return load_documents(path, drivers, ReceiverSchema.load())


def test_a_signature_with_a_secret_file_reaches_the_receiver(tmp_path: Path, drivers: DriverSet) -> None:
    signature = {"scheme": "standard-webhooks", "secretFile": "/etc/webhook/secret"}
    result = load(tmp_path, drivers, signature)
    assert result.problems == []
    assert result.receivers[0].signature == signature


def test_a_secret_ref_is_a_valid_manifest(tmp_path: Path, drivers: DriverSet) -> None:
    result = load(tmp_path, drivers, {"scheme": "github", "secretRef": {"name": "gh-hook"}})
    assert result.problems == []


def test_a_secret_ref_is_a_load_time_problem_in_standalone_mode(tmp_path: Path, drivers: DriverSet) -> None:
    path = tmp_path / "receiver.yaml"
    path.write_text(yaml.safe_dump(manifest({"scheme": "github", "secretRef": {"name": "gh-hook"}})))
    result = load_standalone(path, drivers, ReceiverSchema.load())
    assert result.receivers == []
    assert [(p.path, p.message) for p in result.problems] == [
        (
            "spec.signature.secretRef",
            "names a Kubernetes Secret, which only the operator (webhook-service operator) can read;"
            " in standalone mode use secretFile",
        )
    ]


def test_a_secret_file_loads_in_standalone_mode(tmp_path: Path, drivers: DriverSet) -> None:
    path = tmp_path / "receiver.yaml"
    path.write_text(yaml.safe_dump(manifest({"scheme": "github", "secretFile": "/etc/secret"})))
    assert load_standalone(path, drivers, ReceiverSchema.load()).problems == []


def test_validate_reports_a_secret_ref_unless_checking_for_kubernetes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "receiver.yaml").write_text(
        yaml.safe_dump(manifest({"scheme": "github", "secretRef": {"name": "gh-hook"}}))
    )
    assert main(["validate", str(tmp_path)]) == 1
    assert "spec.signature.secretRef" in capsys.readouterr().out
    assert main(["validate", "--kubernetes", str(tmp_path)]) == 0


def test_a_receiver_without_signature_has_none(tmp_path: Path, drivers: DriverSet) -> None:
    path = tmp_path / "receiver.yaml"
    document = manifest({})
    del document["spec"]["signature"]
    path.write_text(yaml.safe_dump(document))
    assert load_documents(path, drivers).receivers[0].signature is None


def test_both_secret_ref_and_secret_file_is_a_problem_at_spec_signature(
    tmp_path: Path, drivers: DriverSet
) -> None:
    signature = {"scheme": "github", "secretRef": {"name": "gh-hook"}, "secretFile": "/etc/secret"}
    result = load(tmp_path, drivers, signature)
    assert [(p.path, p.message) for p in result.problems] == [
        ("spec.signature", "set exactly one of secretRef and secretFile")
    ]
    assert result.receivers == []


def test_neither_secret_ref_nor_secret_file_is_a_problem_at_spec_signature(
    tmp_path: Path, drivers: DriverSet
) -> None:
    result = load(tmp_path, drivers, {"scheme": "github"})
    assert [p.path for p in result.problems] == ["spec.signature"]


def test_an_unknown_scheme_is_a_schema_problem(tmp_path: Path, drivers: DriverSet) -> None:
    result = load(tmp_path, drivers, {"scheme": "hmac-md5", "secretFile": "/etc/secret"})
    assert [p.path for p in result.problems] == ["spec.signature.scheme"]


def test_the_operator_applies_the_same_rule(drivers: DriverSet) -> None:
    receiver, problems = check_object(manifest({"scheme": "github"}), drivers, ReceiverSchema.load())
    assert receiver is None
    assert [p.path for p in problems] == ["spec.signature"]
