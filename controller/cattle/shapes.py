"""Cattle's (Rancher 1.x) resources as the client reads them: raw JSON shapes, as TypedDicts.

Only the fields this project reads are declared; Cattle sends many more, which are kept as they are.
"""

from __future__ import annotations

from typing import Any, Literal, TypedDict


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
