"""One receiver as Rancher 1.6 stored it, turned into a Receiver manifest — or the reason it can't be.

Rancher kept each receiver as a Cattle ``genericObject`` of kind ``webhookReceiver``: ``name`` (any
text), ``key`` (the trigger URL's key) and ``resourceData: {url, driver, config}``, where ``config`` is
the driver's config as Rancher's Go structs wrote it. The fields that differ here:

- the project: Rancher's configs hold none (but forwardPost's); it is the project that holds the
  object, and goes into the driver config's ``projectId``;
- forwardPost's ``port`` is text in Rancher (``"8080"``), an integer here;
- serviceUpgrade's ``intervalMillis`` is in Rancher's unit: it multiplied it by 1000 before giving it to
  Cattle, so Rancher's 2 meant 2 s, which is 2000 here (the driver's ``rancher_interval_to_millis``);
- Rancher's Go structs left zero values out (``omitempty``): a missing ``min`` was 0, a missing
  ``startFirst`` false, an empty ``addressType`` or ``deleteOption`` the default;
- the name: a manifest's must be a DNS-1123 label, so it is made from Rancher's and the original is
  kept in an annotation;
- the key: only its SHA-256 is kept (``controller.rancher.keys``), so the old URL keeps working.

Selectors are taken as given. The manifest is then checked like any file (``check_object``), so
what this service can't express (a driver it lacks, a scale with max below min) is reported with
the reason, never written half-right.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypedDict

from controller.drivers.contract import Driver
from controller.drivers.service_upgrade import rancher_interval_to_millis
from controller.errors import WebhookServiceError
from controller.model import API_VERSION, DEFAULT_NAMESPACE, KIND
from controller.rancher.keys import KEY_DIGEST_FIELD, NAME_ANNOTATION, key_digest
from controller.receivers.loader import check_object
from controller.receivers.schema import ReceiverSchema

WEBHOOK_RECEIVER_KIND = "webhookReceiver"
DEFAULT_ADDRESS_TYPE = "registry"  # Rancher's default Alibaba registry address
MAX_NAME = 63  # a DNS-1123 label


class GenericObjectData(TypedDict, total=False):
    url: str
    driver: str
    config: dict[str, Any]


class GenericObject(TypedDict, total=False):
    """A Cattle ``genericObject`` as the API answers it (the fields used here)."""

    id: str
    name: str
    kind: str
    key: str
    resourceData: GenericObjectData


class Unconvertible(WebhookServiceError):
    """A receiver Rancher stored that this service can't express; the message says why."""


@dataclass(frozen=True)
class Converted:
    name: str  # the manifest's name
    manifest: dict[str, Any]


def dns_label(text: str) -> str:
    """A DNS-1123 label made from any text ("Scale up web!" -> "scale-up-web"); "" if nothing is left."""
    label = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return label[:MAX_NAME].rstrip("-")


def convert(
    obj: GenericObject,
    project_id: str,
    *,
    name: str,
    namespace: str,
    drivers: Mapping[str, Driver],
    schema: ReceiverSchema,
) -> Converted:
    """The manifest of one stored receiver, named ``name``; ``Unconvertible`` when it can't be one."""
    data = obj.get("resourceData") or {}
    driver = data.get("driver", "")
    config = data.get("config")
    convert_config = CONVERTERS.get(driver)
    if convert_config is None or driver not in drivers:
        raise Unconvertible(f"driver {driver!r} is not one this service has")
    if not isinstance(config, dict):
        raise Unconvertible("it has no driver config")
    key = obj.get("key", "")
    if not key:
        raise Unconvertible("it has no key")
    spec = {
        "driver": driver,
        f"{driver}Config": convert_config(config, project_id),
        KEY_DIGEST_FIELD: key_digest(key),
    }
    metadata: dict[str, Any] = {"name": name, "annotations": {NAME_ANNOTATION: obj.get("name", "")}}
    if namespace != DEFAULT_NAMESPACE:
        metadata["namespace"] = namespace
    manifest = {"apiVersion": API_VERSION, "kind": KIND, "metadata": metadata, "spec": spec}
    _, problems = check_object(manifest, drivers, schema)
    if problems:
        raise Unconvertible("; ".join(f"{p.path}: {p.message}" if p.path else p.message for p in problems))
    return Converted(name=name, manifest=manifest)


def _scale_service(config: Mapping[str, Any], project_id: str) -> dict[str, Any]:
    return {"projectId": project_id, "serviceId": config.get("serviceId", ""), **_step(config)}


def _scale_host(config: Mapping[str, Any], project_id: str) -> dict[str, Any]:
    out = {"projectId": project_id, "hostSelector": dict(config.get("hostSelector") or {}), **_step(config)}
    if config.get("deleteOption"):
        out["deleteOption"] = config["deleteOption"]
    return out


def _service_upgrade(config: Mapping[str, Any], project_id: str) -> dict[str, Any]:
    out: dict[str, Any] = {
        "projectId": project_id,
        "serviceSelector": dict(config.get("serviceSelector") or {}),
        "tag": config.get("tag", ""),
        "payloadFormat": config.get("payloadFormat", ""),
        "startFirst": bool(config.get("startFirst", False)),
    }
    if config.get("batchSize"):
        out["batchSize"] = config["batchSize"]
    if config.get("intervalMillis"):
        out["intervalMillis"] = rancher_interval_to_millis(_integer(config, "intervalMillis"))
    address_type = config.get("addressType") or DEFAULT_ADDRESS_TYPE
    if address_type != DEFAULT_ADDRESS_TYPE:
        out["addressType"] = address_type  # the schema check says so when this service has no such field
    return out


def _forward_post(config: Mapping[str, Any], project_id: str) -> dict[str, Any]:
    own_project = config.get("projectId") or project_id
    if own_project != project_id:
        raise Unconvertible(
            f"it forwards into project {own_project} but is kept in {project_id}, "
            "whose projectId its URL carries"
        )
    out = {
        "projectId": project_id,
        "serviceName": config.get("serviceName", ""),
        "port": _integer(config, "port"),
    }
    if config.get("path"):
        out["path"] = config["path"]
    return out


def _step(config: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "action": config.get("action", ""),
        "amount": _integer(config, "amount"),
        "min": _integer(config, "min"),
        "max": _integer(config, "max"),
    }


def _integer(config: Mapping[str, Any], field: str) -> int:
    """A number Rancher stored, as an integer: absent is Go's zero value, text (forwardPost's port) is
    parsed."""
    value = config.get(field, 0)
    if isinstance(value, bool):
        raise Unconvertible(f"{field} is {value!r}, not a number")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    raise Unconvertible(f"{field} is {value!r}, not a whole number")


CONVERTERS: Mapping[str, Callable[[Mapping[str, Any], str], dict[str, Any]]] = {
    "scaleService": _scale_service,
    "scaleHost": _scale_host,
    "serviceUpgrade": _service_upgrade,
    "forwardPost": _forward_post,
}
