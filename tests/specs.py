"""Receiver specs for tests: a driver's config under its config field, plus the fields every receiver has.

``ReceiverSpec`` declares only the common fields (a driver declares its own config), so a literal
spec with a config would not type-check: tests build specs here and read configs with ``config_of``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from controller.drivers.contract import config_of
from controller.manifest import ReceiverSpec

__all__ = ["SCALE_WEB_UP", "config_of", "receiver_object", "receiver_spec"]


def receiver_spec(driver: str, config: Mapping[str, Any], **common: Any) -> ReceiverSpec:
    """The spec of a ``driver`` receiver with ``config`` in ``<driver>Config`` and ``common`` fields."""
    return cast(ReceiverSpec, {"driver": driver, f"{driver}Config": dict(config), **common})


# scaleService on the sandbox's web (1a5/1s7): up by 1, between 1 and 10
SCALE_WEB_UP: Mapping[str, Any] = {
    "projectId": "1a5",
    "serviceId": "1s7",
    "action": "up",
    "amount": 1,
    "min": 1,
    "max": 10,
}


def receiver_object(name: str, namespace: str, spec: Mapping[str, Any]) -> dict[str, Any]:
    """A Receiver custom resource as ``kubectl apply`` would send it."""
    return {
        "apiVersion": "webhook-service.dev/v1",
        "kind": "Receiver",
        "metadata": {"name": name, "namespace": namespace},
        "spec": dict(spec),
    }
