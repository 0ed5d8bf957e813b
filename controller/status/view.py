"""The status view: one JSON-able shape that the status page, ``status`` and ``status -o json|yaml`` render.

Every rendering reads the same ``StatusView``, so the page, the tables and the JSON cannot disagree.
The rules of what is shown live here, once:

- a target whose receivers are all gone and that has nothing pending is left out (its history stays
  in the store until the retention drops it);
- a target is ``converged`` only when a desired value was applied and confirmed, nothing is pending
  and no error stands; an error shows as ``state: error`` with the error;
- a target is described by its driver's capability (``DriverSet``): a scale shows desired and
  observed, a target whose intents are applied (serviceUpgrade) shows what its newest intent asks for
  (``IntentDescriber``) and never a scale.

Nothing here reads a token, a trigger URL or a credential: the inputs carry none, and the Cattle
label and every error are masked again (``controller.redact``: a store written by an older version
kept the URL with its credentials, and an error may quote a URL).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal, TypedDict

from controller.drivers.contract import DriverSet
from controller.redact import mask_url
from controller.store.base import HitRecord, StoreStatus, TargetPhase, TargetPoint, TargetState

TargetKind = Literal["scale", "apply", "other"]


class HitView(TypedDict):
    hit_id: str
    at: str  # ISO 8601 in UTC, to the millisecond
    receiver: str  # "namespace/name"
    target: str  # target id, "driver:key"
    outcome: str  # accepted, ignored, duplicate, cooldown, suspended
    intent_state: str | None  # pending, folded, failed; None for a hit that carries no intent
    before: int | None
    after: int | None
    reason: str | None


class ReceiverView(TypedDict):
    name: str  # "namespace/name"
    driver: str
    target: str  # target id
    last_hit_at: str | None
    last_outcome: str | None  # as the ``status`` table shows it, e.g. "accepted (folded 1->2)"


class PointView(TypedDict):
    at: str
    desired: int | None
    observed: int | None
    converged: bool
    error: str | None


class TargetView(TypedDict):
    id: str
    driver: str
    kind: TargetKind  # scale: desired/observed are scales; apply: ``does`` says what is rolled out
    does: str  # in words: "scale 3 -> 7" or "roll out nginx:1.2"
    desired: int | None  # null for a target that is not a scale
    observed: int | None
    pending: int
    state: TargetPhase  # new (nothing applied yet), pending, converged, error
    converged: bool  # state == "converged"
    last_error: str | None
    last_change: str | None
    history: list[PointView]  # oldest first
    hits: list[HitView]  # this target's recent hits, oldest first


class CattleView(TypedDict):
    label: str  # the Cattle API's URL, masked, or "SANDBOX ..."
    problem: str | None  # why Cattle is degraded, when the service knows


class StatusView(TypedDict):
    generated_at: str
    cattle: CattleView
    receivers: list[ReceiverView]
    targets: list[TargetView]
    recent_hits: list[HitView]  # newest first
    problems: list[str]


@dataclass(frozen=True)
class ReceiverRef:
    """A receiver as the view needs it: the running service's set, or the tokens a store keeps."""

    name: str
    driver: str
    target_id: str


def iso(at: float) -> str:
    """Epoch seconds as ISO 8601 in UTC, to the millisecond (a chart's points can be close together)."""
    return datetime.fromtimestamp(at, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def epoch(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def build_view(
    *,
    receivers: Iterable[ReceiverRef],
    status: StoreStatus,
    drivers: DriverSet,
    problems: Sequence[str],
    cattle_label: str,
    cattle_problem: str | None,
    now: float,
) -> StatusView:
    """The view of ``status`` (what the store knows) for ``receivers`` (the live ones), at ``now``."""
    refs = sorted(receivers, key=lambda r: r.name)
    targeted = {r.target_id for r in refs}
    hits_of: dict[str, list[HitView]] = {}
    for hit in reversed(status.recent_hits):  # oldest first
        hits_of.setdefault(hit.target_id, []).append(hit_view(hit))
    targets = [
        target_view(t, status, drivers, hits_of.get(t.target_id, []))
        for t in sorted(status.targets, key=lambda t: t.target_id)
        if t.target_id in targeted or status.pending.get(t.target_id, 0) > 0
    ]
    return {
        "generated_at": iso(now),
        "cattle": {"label": mask_url(cattle_label), "problem": masked(cattle_problem)},
        "receivers": [receiver_view(r, status.last_hits.get(r.name)) for r in refs],
        "targets": targets,
        "recent_hits": [hit_view(h) for h in status.recent_hits],
        "problems": list(problems),
    }


def hit_view(hit: HitRecord) -> HitView:
    return {
        "hit_id": hit.hit_id,
        "at": iso(hit.received_at),
        "receiver": hit.receiver,
        "target": hit.target_id,
        "outcome": hit.outcome,
        "intent_state": hit.intent_state,
        "before": hit.before,
        "after": hit.after,
        "reason": hit.reason,
    }


def receiver_view(ref: ReceiverRef, hit: HitRecord | None) -> ReceiverView:
    return {
        "name": ref.name,
        "driver": ref.driver,
        "target": ref.target_id,
        "last_hit_at": None if hit is None else iso(hit.received_at),
        "last_outcome": None if hit is None else outcome_text(hit),
    }


def outcome_text(hit: HitRecord) -> str:
    text: str = hit.outcome
    if hit.intent_state is not None:
        text += f" ({hit.intent_state}"
        if hit.before is not None and hit.after is not None:
            text += f" {hit.before}->{hit.after}" + (" clamped" if hit.clamped else "")
        text += ")"
    if hit.reason:
        text += f": {hit.reason}"
    return text


def target_view(
    target: TargetState, status: StoreStatus, drivers: DriverSet, hits: list[HitView]
) -> TargetView:
    driver = target.target_id.partition(":")[0]
    pending = status.pending.get(target.target_id, 0)
    state = state_of(target, pending)
    kind: TargetKind = (
        "scale" if driver in drivers.scalers else "apply" if driver in drivers.appliers else "other"
    )
    if kind == "scale":
        desired, observed = target.desired, target.observed
        moving = desired is not None and desired != observed
        does = f"scale {dash(observed)} -> {desired}" if moving else f"scale {dash(observed)}"
    else:
        desired, observed = None, None
        intent = status.latest_intents.get(target.target_id)
        describer = drivers.describers.get(driver)
        does = "-" if intent is None or describer is None else describer.describe_intent(intent)
    return {
        "id": target.target_id,
        "driver": driver,
        "kind": kind,
        "does": does,
        "desired": desired,
        "observed": observed,
        "pending": pending,
        "state": state,
        "converged": state == "converged",
        "last_error": masked(target.last_error),
        "last_change": iso(target.updated_at) if target.updated_at else None,
        "history": [point_view(p, kind) for p in status.history.get(target.target_id, [])],
        "hits": hits,
    }


def state_of(target: TargetState, pending: int) -> TargetPhase:
    """The store's word for the target, except that pending intents make a target at rest pending."""
    state = target.state
    return "pending" if pending and state in ("new", "converged") else state


def point_view(point: TargetPoint, kind: TargetKind) -> PointView:
    scale = kind == "scale"
    return {
        "at": iso(point.at),
        "desired": point.desired if scale else None,
        "observed": point.observed if scale else None,
        "converged": point.converged and point.error is None and (point.desired is not None or not scale),
        "error": masked(point.error),
    }


def masked(text: str | None) -> str | None:
    """An error as shown: it may quote a URL, whose credentials are masked like the Cattle label."""
    return None if text is None else mask_url(text)


def dash(value: int | None) -> str:
    return "-" if value is None else str(value)
