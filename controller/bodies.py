"""Raw JSON shapes, as TypedDicts: receiver manifests, Alertmanager payloads, Cattle resources.

They describe what arrives from outside before it is checked; code past the edges works with the
frozen values in ``controller.model`` instead.
"""

from __future__ import annotations

from typing import Any, Literal, Required, TypedDict


class ObjectMeta(TypedDict, total=False):
    name: str
    namespace: str
    uid: str
    generation: int
    annotations: dict[str, str]
    labels: dict[str, str]


class RateLimitSpec(TypedDict):
    requests: int
    perSeconds: int


class SecretRef(TypedDict):
    name: str  # a Secret in the receiver's namespace


class SignatureSpec(TypedDict, total=False):
    scheme: Required[Literal["standard-webhooks", "github"]]
    secretRef: SecretRef
    secretFile: str


class ReceiverSpec(TypedDict, total=False):
    """What every receiver's spec has. The driver's own config (``spec.<driver>Config``) is declared by
    its driver module and read with ``controller.drivers.contract.config_of``."""

    driver: str
    cattleSecretRef: SecretRef
    signature: SignatureSpec
    fireOn: list[str]
    cooldownSeconds: int
    dedupeWindowSeconds: int
    rateLimit: RateLimitSpec
    suspend: bool


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


class CattleLaunchConfig(TypedDict, total=False):
    """A launch config; Cattle's has many more fields (ports, environment...), kept as they are."""

    name: str  # a sidekick's (secondaryLaunchConfigs) name
    imageUuid: str
    labels: dict[str, str]
    version: str


class CattleService(TypedDict, total=False):
    id: str
    type: str
    baseType: str
    kind: str
    name: str
    stackId: str
    accountId: str
    state: str
    healthState: str
    transitioning: Literal["yes", "no", "error"]
    transitioningMessage: str | None
    scale: int
    currentScale: int
    launchConfig: CattleLaunchConfig
    secondaryLaunchConfigs: list[CattleLaunchConfig]
    upgrade: dict[str, Any] | None  # the running upgrade: {"inServiceStrategy": {...}, ...}
    links: dict[str, str]
    actions: dict[str, str]


class CattleHost(TypedDict, total=False):
    """A Cattle host. Its machine-driver settings are in one ``<driver>Config`` field (e.g.
    ``digitaloceanConfig``) that a TypedDict can't name; custom hosts have none and no ``driver``."""

    id: str
    type: str
    kind: str
    name: str | None
    hostname: str | None
    accountId: str
    state: str  # for an active host with an agentState, the agent state (reconnecting, disconnected)
    agentState: str | None
    transitioning: Literal["yes", "no", "error"]
    labels: dict[str, str]
    driver: str | None
    hostTemplateId: str | None
    created: str
    createdTS: int
    links: dict[str, str]
    actions: dict[str, str]


class CattlePagination(TypedDict, total=False):
    first: str | None
    previous: str | None
    next: str | None
    limit: int
    total: int | None
    partial: bool


class CattleCollection(TypedDict, total=False):
    type: Literal["collection"]
    resourceType: str
    data: list[dict[str, Any]]
    pagination: CattlePagination
    links: dict[str, str]


class CattleErrorBody(TypedDict, total=False):
    id: str
    type: Literal["error"]
    status: int
    code: str
    message: str
    detail: str | None
    fieldName: str | None
