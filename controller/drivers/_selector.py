"""Targets named by a Cattle project and a label selector (scaleHost's host groups, serviceUpgrade's
services), shared by those drivers. Not a driver: ``load_drivers`` skips modules starting with ``_``.

A key reads ``1a5/role=worker,zone=a`` (``@ns/secret`` appended with a ``cattleSecretRef``): the
canonical selector text sorts the pairs and percent-escapes ``,``, ``=``, ``@`` and ``%`` inside keys
and values, so the key splits back exactly and two receivers with the same selector share a target.
The key keeps the selector as written: matching ignores case, but a key is an identity, and changing
how it is spelled would give existing receivers new targets.

Matching follows Rancher's webhook service, whose users' selectors must keep selecting the same things:
label keys and values compare case-insensitively (``App=Web`` selects ``app: web``), and an empty
value asks only that the key is there, whatever its value. ``labels_match`` is the one place this is
decided, for hosts and launch configs alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, unquote

from controller.drivers.base import CATTLE_SECRET_CLAIM, TargetRefused
from controller.manifest import ReceiverSpec
from controller.model import Target

MATCHING = "Keys and values match whatever their case; an empty value matches any value of its key."


def selector_schema(description: str) -> dict[str, Any]:
    """The schema of a selector field: at least one label=value pair."""
    return {
        "type": "object",
        "minProperties": 1,
        "additionalProperties": {"type": "string"},
        "description": f"{description} {MATCHING}",
    }


def labels_match(labels: Mapping[str, str] | None, selector: Mapping[str, str]) -> bool:
    """Whether ``labels`` carry every pair of ``selector``: keys and values ignore case, and an empty
    value matches any value of its key."""
    folded = [(k.casefold(), v.casefold()) for k, v in (labels or {}).items()]
    return all(
        any(k == key.casefold() and (not value or v == value.casefold()) for k, v in folded)
        for key, value in selector.items()
    )


def selector_text(selector: Mapping[str, str]) -> str:
    return ",".join(f"{_escape(k)}={_escape(v)}" for k, v in sorted(selector.items()))


def parse_selector(text: str) -> dict[str, str]:
    pairs = (item.partition("=") for item in text.split(",") if item)
    return {unquote(k): unquote(v) for k, _, v in pairs}


def _escape(text: str) -> str:
    return quote(text, safe="/:+ ")


def secret_of(spec: ReceiverSpec, namespace: str) -> str | None:
    """``namespace/name`` of the receiver's cattleSecretRef, if it has one."""
    ref = spec.get("cattleSecretRef")
    return f"{namespace}/{ref['name']}" if ref else None


def selector_target(driver: str, claim: str, project_id: str, selector: str, secret: str | None) -> Target:
    claims = {"projectId": project_id, claim: selector}
    if secret is not None:
        claims[CATTLE_SECRET_CLAIM] = secret
    return Target(
        driver=driver,
        key=f"{project_id}/{selector}" + (f"@{secret}" if secret else ""),
        project_id=project_id,
        claims=claims,
    )


def selector_target_from_key(driver: str, claim: str, key: str) -> Target:
    group, _, secret = key.partition("@")
    project_id, _, selector = group.partition("/")
    if not project_id or not selector:
        raise TargetRefused(f"malformed {driver} target key {key!r} (want projectId/k=v,...)")
    return selector_target(driver, claim, project_id, selector, secret or None)
