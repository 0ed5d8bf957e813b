"""The intent ledger of one target, as pure functions on its JSON form.

In Kubernetes mode a target's durable state is one ``IntentLedger`` object: its pending intents in
arrival order, its desired and observed scale, and, per receiver, what decides a hit's outcome
(idempotency keys, Alertmanager retry keys, the last accepted time, the rate-limit window, the last
hit). Every change is "read the object, compute the new ledger with a function below, write it back
with the resourceVersion read" (``controller.store.kube``); a 409 means another replica wrote first
and the function runs again on the fresh ledger. So these functions must be pure: same ledger and
request in, same result out, no clock of their own.

The outcome is decided by the rule both stores share (``controller.store.outcome``), over a
history read from the receiver's entry; here the rate limit is shared by all listeners. Unlike
SQLite the object has a size limit (about 1 MiB), so what it remembers is bounded: idempotency keys
for 24 h but at most ``MAX_KEYS`` per receiver (the oldest go first), retry keys for their window,
rate-limit timestamps for their window.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any, NotRequired, TypedDict, cast

from controller.model import Outcome
from controller.store.base import (
    FoldStep,
    HitRateLimited,
    HitRecord,
    HitRequest,
    HitResult,
    IntentState,
    PendingIntent,
    StoreError,
    TargetState,
)
from controller.store.ids import IDEMPOTENCY_WINDOW
from controller.store.outcome import Duplicate, RateLimited, decide

MAX_KEYS = 1000  # idempotency keys remembered per receiver (bounds the object's size)


class LastHit(TypedDict):
    hit: str
    outcome: Outcome
    at: float
    reason: str | None
    state: IntentState | None
    before: int | None
    after: int | None
    clamped: bool | None


class ReceiverEntry(TypedDict):
    uid: str
    lastAccepted: float | None
    idempotency: dict[str, list[Any]]  # key -> [hit id, received at]
    dedupe: dict[str, list[Any]]  # Alertmanager notification identity -> [hit id, received at]
    rate: list[float]  # times of hits counted by the rate limit, oldest first
    lastHit: NotRequired[LastHit]


class LedgerIntent(TypedDict):
    seq: int
    hit: str
    receiver: str
    intent: dict[str, Any]
    at: float


class Ledger(TypedDict):
    target: str
    nextSeq: int
    desired: int | None
    observed: int | None
    converged: bool
    lastError: str | None
    updatedAt: float
    pending: list[LedgerIntent]
    receivers: dict[str, ReceiverEntry]


def new_ledger(target_id: str) -> Ledger:
    return {
        "target": target_id,
        "nextSeq": 1,
        "desired": None,
        "observed": None,
        "converged": True,
        "lastError": None,
        "updatedAt": 0.0,
        "pending": [],
        "receivers": {},
    }


class _EntryHistory:
    """``HitHistory`` from one receiver's entry (the ledger holds only this target's receivers)."""

    def __init__(self, entry: ReceiverEntry) -> None:
        self._entry = entry

    def idempotent_hit(self, receiver: str, key: str, since: float) -> str | None:
        seen = self._entry["idempotency"].get(key)
        return str(seen[0]) if seen is not None and seen[1] > since else None

    def retried_hit(self, receiver: str, dedupe_key: str, since: float) -> str | None:
        seen = self._entry["dedupe"].get(dedupe_key)
        return str(seen[0]) if seen is not None and seen[1] > since else None

    def last_accepted_at(self, receiver: str) -> float | None:
        return self._entry["lastAccepted"]

    def rate_counted(self, receiver: str, since: float) -> tuple[int, float | None]:
        times = [t for t in self._entry["rate"] if t > since]
        return len(times), min(times, default=None)


def record_hit(ledger: Ledger, req: HitRequest, hit_id: str) -> tuple[Ledger, HitResult]:
    """The hit's outcome and the ledger with it recorded. Raises ``HitRateLimited``."""
    at = req.received_at
    new = copy.deepcopy(ledger)
    entry = new["receivers"].get(req.receiver)
    if entry is None or entry["uid"] != req.receiver_uid:
        # New, or deleted and created again under the same name: it starts afresh.
        entry = {"uid": req.receiver_uid, "lastAccepted": None, "idempotency": {}, "dedupe": {}, "rate": []}
        new["receivers"][req.receiver] = entry
    _forget_old(entry, req, at)

    decision = decide(_EntryHistory(entry), req, idempotency_window=IDEMPOTENCY_WINDOW)
    if isinstance(decision, Duplicate):
        return ledger, HitResult(hit_id=decision.hit_id, outcome="duplicate")
    if isinstance(decision, RateLimited):
        raise HitRateLimited(retry_after=decision.retry_after)
    if decision.rate_counted:
        entry["rate"].append(at)
    if decision.outcome == "accepted":
        entry["lastAccepted"] = at
        if req.dedupe_key is not None:
            entry["dedupe"][req.dedupe_key] = [hit_id, at]
        seq = new["nextSeq"]
        new["nextSeq"] = seq + 1
        assert req.intent is not None  # the rule refuses a hit to act on without one
        new["pending"].append(
            {"seq": seq, "hit": hit_id, "receiver": req.receiver, "intent": req.intent, "at": at}
        )
    if req.idempotency_key is not None:
        entry["idempotency"][req.idempotency_key] = [hit_id, at]
    entry["lastHit"] = {
        "hit": hit_id,
        "outcome": decision.outcome,
        "at": at,
        "reason": decision.reason,
        "state": "pending" if decision.outcome == "accepted" else None,
        "before": None,
        "after": None,
        "clamped": None,
    }
    new["updatedAt"] = max(new["updatedAt"], at)
    return new, HitResult(hit_id=hit_id, outcome=decision.outcome)


def _forget_old(entry: ReceiverEntry, req: HitRequest, at: float) -> None:
    """Bound the object's size; the rule itself checks each window."""
    entry["idempotency"] = {k: v for k, v in entry["idempotency"].items() if at - v[1] < IDEMPOTENCY_WINDOW}
    if len(entry["idempotency"]) >= MAX_KEYS:
        newest = sorted(entry["idempotency"].items(), key=lambda kv: kv[1][1])[-(MAX_KEYS - 1) :]
        entry["idempotency"] = dict(newest)
    entry["dedupe"] = {k: v for k, v in entry["dedupe"].items() if at - v[1] < req.dedupe_window}
    window = req.rate_limit.per_seconds if req.rate_limit is not None else 0.0
    entry["rate"] = [t for t in entry["rate"] if at - t < window]


def pending_intents(ledger: Ledger) -> list[PendingIntent]:
    return [
        PendingIntent(seq=p["seq"], hit_id=p["hit"], receiver=p["receiver"], intent=p["intent"])
        for p in sorted(ledger["pending"], key=lambda p: p["seq"])
    ]


def commit_fold(ledger: Ledger, desired: int, steps: Sequence[FoldStep], now: float) -> Ledger:
    """Record ``desired`` and drop the folded intents, or raise if any of them is no longer pending."""
    new = copy.deepcopy(ledger)
    folded = {(s.seq, s.hit_id): s for s in steps}
    remaining = [p for p in new["pending"] if (p["seq"], p["hit"]) not in folded]
    if len(new["pending"]) - len(remaining) != len(steps):
        raise StoreError(f"some of {len(steps)} steps of {ledger['target']} are no longer pending")
    for p in new["pending"]:
        step = folded.get((p["seq"], p["hit"]))
        entry = new["receivers"].get(p["receiver"])
        last = entry.get("lastHit") if entry is not None else None
        if step is not None and last is not None and last["hit"] == p["hit"]:
            last["state"], last["before"], last["after"] = "folded", step.before, step.after
            last["clamped"] = step.clamped
    new["pending"], new["desired"], new["converged"], new["updatedAt"] = remaining, desired, False, now
    return new


def fail_intents(ledger: Ledger, reason: str, now: float) -> tuple[Ledger, int]:
    new = copy.deepcopy(ledger)
    failed = {p["hit"] for p in new["pending"]}
    for entry in new["receivers"].values():
        last = entry.get("lastHit")
        if last is not None and last["hit"] in failed:
            last["state"], last["reason"] = "failed", reason
    new["pending"], new["converged"], new["lastError"], new["updatedAt"] = [], True, reason, now
    return new, len(failed)


def set_observed(
    ledger: Ledger, observed: int | None, converged: bool, error: str | None, now: float
) -> Ledger:
    new = copy.deepcopy(ledger)
    new["observed"], new["converged"], new["lastError"], new["updatedAt"] = observed, converged, error, now
    return new


def target_state(ledger: Ledger) -> TargetState:
    return TargetState(
        target_id=ledger["target"],
        desired=ledger["desired"],
        observed=ledger["observed"],
        converged=ledger["converged"],
        last_error=ledger["lastError"],
        updated_at=ledger["updatedAt"],
    )


def has_work(ledger: Ledger) -> bool:
    return bool(ledger["pending"]) or (ledger["desired"] is not None and not ledger["converged"])


def last_hits(ledger: Ledger) -> dict[str, HitRecord]:
    hits = {}
    for receiver, entry in ledger["receivers"].items():
        last = entry.get("lastHit")
        if last is not None:
            hits[receiver] = HitRecord(
                hit_id=last["hit"],
                receiver=receiver,
                outcome=last["outcome"],
                received_at=last["at"],
                reason=last["reason"],
                intent_state=last["state"],
                before=last["before"],
                after=last["after"],
                clamped=last["clamped"],
            )
    return hits


def from_json(data: Any, target_id: str) -> Ledger:
    """The ledger stored in an object, completed with defaults (older or hand-made objects)."""
    ledger = new_ledger(target_id)
    if isinstance(data, dict):
        ledger.update(cast(Ledger, {k: v for k, v in data.items() if k in ledger}))
    return ledger
