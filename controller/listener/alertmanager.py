"""Recognising Alertmanager's webhook payload (version "4") and naming one notification.

A body is treated as Alertmanager's only when it says so (``version == "4"``); then it must have the
shape Alertmanager always sends, or the hit is refused: a half-right payload is more likely a broken
sender than a curl user, and acting on it would scale on a notification we could not read.

Alertmanager retries a notification it thinks failed and re-sends it every ``repeat_interval``; both
carry the same group, status and alerts. ``dedupe_key`` names that identity so the store can answer
"duplicate" for a repeat within the receiver's dedupe window. Alerts are named by (fingerprint,
startsAt) — a new firing of the same alert has a new startsAt — and by their sorted labels when a
sender leaves the fingerprint out. Order inside the payload does not matter.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal, TypedDict, cast

from controller.errors import WebhookServiceError

ALERTMANAGER_VERSION = "4"


class AlertmanagerAlert(TypedDict, total=False):
    status: str
    labels: dict[str, str]
    annotations: dict[str, str]
    startsAt: str
    endsAt: str
    generatorURL: str
    fingerprint: str


class AlertmanagerPayload(TypedDict, total=False):
    """Alertmanager's webhook body, version "4" (Alertmanager 0.x)."""

    version: str
    groupKey: str
    truncatedAlerts: int
    status: Literal["firing", "resolved"]
    receiver: str
    groupLabels: dict[str, str]
    commonLabels: dict[str, str]
    commonAnnotations: dict[str, str]
    externalURL: str
    alerts: list[AlertmanagerAlert]


class MalformedPayload(WebhookServiceError):
    """The body claims to be an Alertmanager payload but does not have its shape."""


def is_alertmanager(data: object) -> bool:
    """Whether the body claims to be Alertmanager's (it may still be malformed)."""
    return isinstance(data, dict) and data.get("version") == ALERTMANAGER_VERSION


def parse_payload(data: object) -> AlertmanagerPayload | None:
    """The payload when ``data`` is Alertmanager's, None when it is some other body.

    Raises ``MalformedPayload`` when it claims version "4" but is not shaped like one.
    """
    if not is_alertmanager(data):
        return None
    body = cast(dict[str, Any], data)
    if not isinstance(body.get("status"), str):
        raise MalformedPayload("Alertmanager payload needs a string 'status'")
    alerts = body.get("alerts")
    if not isinstance(alerts, list):
        raise MalformedPayload("Alertmanager payload needs a list 'alerts'")
    if not isinstance(body.get("groupKey", ""), str):
        raise MalformedPayload("Alertmanager payload's 'groupKey' must be a string")
    for index, alert in enumerate(alerts):
        _check_alert(index, alert)
    return cast(AlertmanagerPayload, body)


def _check_alert(index: int, alert: object) -> None:
    if not isinstance(alert, dict):
        raise MalformedPayload(f"Alertmanager alert {index} must be an object")
    for name in ("fingerprint", "startsAt", "status"):
        if not isinstance(alert.get(name, ""), str):
            raise MalformedPayload(f"Alertmanager alert {index}: '{name}' must be a string")
    labels = alert.get("labels", {})
    if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
        raise MalformedPayload(f"Alertmanager alert {index}: 'labels' must map names to strings")


def dedupe_key(payload: AlertmanagerPayload) -> str:
    """sha256 hex over groupKey, status and the sorted identities of the alerts."""
    identities = sorted(_canonical(_alert_identity(alert)) for alert in payload.get("alerts", []))
    material = [payload.get("groupKey", ""), payload.get("status", ""), identities]
    return hashlib.sha256(_canonical(material).encode()).hexdigest()


def _alert_identity(alert: AlertmanagerAlert) -> list[Any]:
    starts_at = alert.get("startsAt", "")
    fingerprint = alert.get("fingerprint")
    if fingerprint:
        return ["fingerprint", fingerprint, starts_at]
    return ["labels", sorted(alert.get("labels", {}).items()), starts_at]


def _canonical(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
