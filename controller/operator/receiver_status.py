"""Writing a Receiver's status and Events.

Status has two writers in the active replica: the Receiver handlers (token, validity, readiness)
and the ledger handler (last hit, scale, whether the target is reachable). Both go through
``update_status``, a compare-and-swap on the Receiver's resourceVersion, so neither overwrites the
other's fresher conditions with a stale copy. Conditions follow the Kubernetes convention:
``lastTransitionTime`` changes only when ``status`` does, and ``observedGeneration`` is the generation
whose handling set the condition.

Ready sums up the others: False when the spec is invalid, when the Secret's name is taken, when a
driver's gate refuses the target, or when the target is not reachable (``TargetReachable`` False,
with its reason). Only a gate's refusal makes the listener refuse hits (``refusal_shown``); an
unreachable target still queues them, to be applied when it comes back.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Literal, TypedDict

from controller.kube.client import EVENTS, RECEIVERS, KubeClient, KubeObject
from controller.kube.errors import KubeConflict, KubeError, KubeNotFound

logger = logging.getLogger(__name__)

ConditionStatus = Literal["True", "False", "Unknown"]
MAX_ATTEMPTS = 10


class Condition(TypedDict):
    type: str
    status: ConditionStatus
    reason: str
    message: str
    lastTransitionTime: str
    observedGeneration: int


def now_rfc3339(at: float | None = None) -> str:
    moment = datetime.now(tz=UTC) if at is None else datetime.fromtimestamp(at, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def set_condition(
    status: dict[str, Any],
    type_: str,
    value: ConditionStatus,
    reason: str,
    message: str,
    generation: int,
) -> None:
    conditions: list[Condition] = list(status.get("conditions") or [])
    previous = next((c for c in conditions if c["type"] == type_), None)
    changed_at = (
        previous["lastTransitionTime"]
        if previous is not None and previous["status"] == value
        else now_rfc3339()
    )
    condition: Condition = {
        "type": type_,
        "status": value,
        "reason": reason,
        "message": message,
        "lastTransitionTime": changed_at,
        "observedGeneration": generation,
    }
    status["conditions"] = [c for c in conditions if c["type"] != type_] + [condition]
    order = {"Ready": 0, "TokenIssued": 1, "TargetReachable": 2}
    status["conditions"].sort(key=lambda c: order.get(c["type"], 9))


INVALID_SPEC = "InvalidSpec"  # Ready's reason when the spec is invalid
SECRET_NAME_TAKEN = "SecretNameTaken"  # Ready's and TokenIssued's when another Secret holds the name
TARGET_ERROR = "TargetError"  # TargetReachable's, and then Ready's, when applying to the target failed
NOT_REFUSALS = frozenset({INVALID_SPEC, SECRET_NAME_TAKEN, TARGET_ERROR})


def refusal_shown(status: Mapping[str, Any]) -> str | None:
    """What a granted Receiver's status says hits are refused for (Ready=False), or None.

    Every reason for Ready=False other than those in ``NOT_REFUSALS`` is a driver's gate refusing
    the target (e.g. an HPA manages the workload)."""
    for found in status.get("conditions") or []:
        if found.get("type") == "Ready" and found.get("status") == "False":
            if found.get("reason") in NOT_REFUSALS:
                return None
            return str(found.get("message") or found.get("reason"))
    return None


def ready_from_reachable(status: dict[str, Any], generation: int) -> None:
    """Ready for a granted Receiver that no gate refuses: True unless its target is unreachable."""
    reachable = condition(status, "TargetReachable")
    if reachable is not None and reachable["status"] == "False":
        set_condition(status, "Ready", "False", TARGET_ERROR, reachable["message"], generation)
    else:
        set_condition(status, "Ready", "True", "Ready", READY_MESSAGE, generation)


def not_ready_for_another_reason(status: dict[str, Any]) -> bool:
    """Whether Ready is False for a reason other than the target (invalid spec, name taken, refusal)."""
    ready = condition(status, "Ready")
    return ready is not None and ready["status"] == "False" and ready["reason"] != TARGET_ERROR


READY_MESSAGE = "hits on the trigger URL act on the target"


def condition(status: dict[str, Any], type_: str) -> Condition | None:
    return next((c for c in status.get("conditions") or [] if c["type"] == type_), None)


async def update_status(
    client: KubeClient,
    namespace: str,
    name: str,
    change: Callable[[KubeObject, dict[str, Any]], None],
) -> KubeObject | None:
    """Apply ``change(receiver, status)`` to the Receiver's status; None if the Receiver is gone."""
    ref = RECEIVERS.named(name, namespace)
    for _ in range(MAX_ATTEMPTS):
        try:
            obj = await client.get(ref)
        except KubeNotFound:
            return None
        before = obj.get("status") or {}
        status = copy.deepcopy(before)
        change(obj, status)
        if status == before:
            return obj
        # Keys dropped by ``change`` must be sent as null for a merge patch to remove them.
        body = {**{k: None for k in before if k not in status}, **status}
        patch = {"metadata": {"resourceVersion": obj["metadata"]["resourceVersion"]}, "status": body}
        try:
            return await client.patch(ref.named(name, namespace, "status"), patch)
        except KubeConflict:
            continue
        except KubeNotFound:
            return None
    raise KubeError(f"status of {namespace}/{name}: {MAX_ATTEMPTS} conflicting writes in a row")


async def post_event(
    client: KubeClient, receiver: KubeObject, type_: Literal["Normal", "Warning"], reason: str, message: str
) -> None:
    """An Event on the Receiver (``kubectl describe rcv`` shows it). Losing one is logged, not fatal."""
    meta = receiver["metadata"]
    stamp = now_rfc3339()
    event = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
        "involvedObject": {
            "apiVersion": receiver.get("apiVersion", "webhook-service.dev/v1"),
            "kind": "Receiver",
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta.get("uid"),
        },
        "type": type_,
        "reason": reason,
        "message": message[:1024],
        "source": {"component": "webhook-service"},
        "reportingComponent": "webhook-service",
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
    }
    try:
        await client.create(EVENTS.within(meta["namespace"]), event)
    except KubeError as e:
        logger.warning("could not post the %s Event on %s/%s: %s", reason, meta["namespace"], meta["name"], e)
