"""The intent ledger of one target, as pure functions on its JSON form.

In Kubernetes mode a target's durable state is one ``IntentLedger`` object: its pending intents in
arrival order, its desired and observed scale, and, per receiver, what decides a hit's outcome
(idempotency keys, Alertmanager retry keys, the last accepted time, the rate-limit bucket, the last
hit). Every change is "read the object, compute the new ledger with a function below, write it back
with the resourceVersion read" (``controller.store.kube``); a 409 means another replica wrote first
and the function runs again on the fresh ledger. So these functions must be pure: same ledger and
request in, same result out, no clock of their own.

The outcome is decided by the rule both stores share (``controller.store.outcome``), over a
history read from the receiver's entry; here the rate limit is shared by all listeners. Unlike
SQLite the object has a size limit (etcd's is about 1.5 MiB), so everything it holds is bounded:

- at most ``MAX_PENDING`` pending intents: a target that can't be applied stops taking hits (the
  store raises ``LedgerFull``, answered 503 with Retry-After) instead of growing until etcd refuses
  every write of it, folds included; the store also refuses a hit that would take the encoded
  ledger over ``MAX_LEDGER_BYTES`` (``controller.store.kube``), whatever filled it;
- idempotency and Alertmanager retry keys as fixed-size digests (``key_digest``), idempotency keys
  for 24 h but at most ``MAX_KEYS`` per receiver (the oldest go first), retry keys for their window;
- the rate limit as a token bucket (``controller.store.rate_bucket``): two numbers per receiver,
  ``bucket: {tokens, at}``, whatever its ``requests``, dropped once it is full again (``perSeconds``
  after its last hit). A ledger written before kept a ``rate`` list of hit times instead: it is read
  as a full bucket and dropped by the receiver's next hit;
- the target's ``history`` (its chart on the status page) as the last ``MAX_HISTORY`` points, one
  per visible change of desired, observed, converged or error (compact keys, about 60 bytes each),
  and its ``recentHits`` as the last ``MAX_RECENT_HITS`` hits of any outcome (about 200 bytes each):
  together under 20 KiB, counted in ``MAX_LEDGER_BYTES`` like everything else; the newest accepted
  intent (``latestIntent``) is kept for the status views too;
- a receiver's entry until ``keepUntil``, the end of the longest window it was last recorded with
  (idempotency, retry, cooldown, rate limit): after that it decides nothing, so entries of receivers
  deleted, renamed or moved to another target are dropped by the next hit of the target, and a
  ledger left with no entries, no pending intents and nothing to confirm can be deleted
  (``is_empty``).

A hit copies only what it changes (the ledger's top level, its receivers map, the receiver's entry,
the pending list's references): a deep copy per hit costs tens of milliseconds at thousands of
pending intents.
"""

from __future__ import annotations

import copy
import hashlib
import json
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
    LedgerFull,
    PendingIntent,
    StoreError,
    TargetPoint,
    TargetState,
)
from controller.store.ids import IDEMPOTENCY_WINDOW
from controller.store.outcome import Duplicate, RateLimited, decide
from controller.store.rate_bucket import Bucket

MAX_KEYS = 1000  # idempotency keys remembered per receiver (bounds the object's size)
MAX_PENDING = 2000  # pending intents per target; about 200 bytes each
MAX_LEDGER_BYTES = 512 * 1024  # the encoded ledger, well under etcd's 1.5 MiB request limit
MAX_HISTORY = 100  # history points kept per target (the newest)
MAX_RECENT_HITS = 50  # hits kept per target for the status views (the newest)


class LastHit(TypedDict):
    hit: str
    outcome: Outcome
    at: float
    reason: str | None
    state: IntentState | None
    before: int | None
    after: int | None
    clamped: bool | None


class RecentHit(LastHit):
    receiver: str


class HistoryPoint(TypedDict):
    """One visible change of the target, keys kept short: there are up to ``MAX_HISTORY`` of them."""

    t: float  # when
    d: int | None  # desired
    o: int | None  # observed
    c: bool  # converged
    e: str | None  # error


class RateBucket(TypedDict):
    tokens: float  # left after the last hit the rate limit counted
    at: float  # that hit's time


class ReceiverEntry(TypedDict):
    uid: str
    lastAccepted: float | None
    idempotency: dict[str, list[Any]]  # key -> [hit id, received at]
    dedupe: dict[str, list[Any]]  # Alertmanager notification identity -> [hit id, received at]
    bucket: NotRequired[RateBucket]  # absent: full
    rate: NotRequired[list[float]]  # older objects' hit times, read as a full bucket
    keepUntil: NotRequired[float]  # after this the entry decides nothing (absent: kept, older objects)
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
    history: list[HistoryPoint]  # oldest first, at most MAX_HISTORY
    recentHits: list[RecentHit]  # oldest first, at most MAX_RECENT_HITS
    latestIntent: dict[str, Any] | None  # the newest accepted intent


def new_ledger(target_id: str) -> Ledger:
    """A target nothing was applied to yet: not converged, without a desired value to confirm."""
    return {
        "target": target_id,
        "nextSeq": 1,
        "desired": None,
        "observed": None,
        "converged": False,
        "lastError": None,
        "updatedAt": 0.0,
        "pending": [],
        "receivers": {},
        "history": [],
        "recentHits": [],
        "latestIntent": None,
    }


def key_digest(key: str) -> str:
    """A key as the ledger stores it: 32 hex characters, however long the key a sender chose."""
    return hashlib.sha256(key.encode()).digest()[:16].hex()


def encoded_size(ledger: Ledger) -> int:
    """The ledger's size as written in the object (compact JSON, as the client sends it)."""
    return len(json.dumps(ledger, separators=(",", ":")))


class _EntryHistory:
    """``HitHistory`` from one receiver's entry (the ledger holds only this target's receivers)."""

    def __init__(self, entry: ReceiverEntry) -> None:
        self._entry = entry

    def idempotent_hit(self, receiver: str, key: str, since: float) -> str | None:
        seen = self._entry["idempotency"].get(key_digest(key))
        return str(seen[0]) if seen is not None and seen[1] > since else None

    def retried_hit(self, receiver: str, dedupe_key: str, since: float) -> str | None:
        seen = self._entry["dedupe"].get(key_digest(dedupe_key))
        return str(seen[0]) if seen is not None and seen[1] > since else None

    def last_accepted_at(self, receiver: str) -> float | None:
        return self._entry["lastAccepted"]

    def rate_bucket(self, receiver: str) -> Bucket | None:
        kept = self._entry.get("bucket")
        return None if kept is None else Bucket(tokens=kept["tokens"], at=kept["at"])


def record_hit(ledger: Ledger, req: HitRequest, hit_id: str) -> tuple[Ledger, HitResult]:
    """The hit's outcome and the ledger with it recorded. Raises ``HitRateLimited``, ``LedgerFull``.

    The ledger passed in is never changed; the one returned shares what the hit left alone."""
    at = req.received_at
    old = ledger["receivers"].get(req.receiver)
    if old is None or old["uid"] != req.receiver_uid:
        # New, or deleted and created again under the same name: it starts afresh.
        entry: ReceiverEntry = {
            "uid": req.receiver_uid,
            "lastAccepted": None,
            "idempotency": {},
            "dedupe": {},
        }
    else:
        entry = _forget_old(old, req, at)

    decision = decide(_EntryHistory(entry), req, idempotency_window=IDEMPOTENCY_WINDOW)
    if isinstance(decision, Duplicate):
        return ledger, HitResult(hit_id=decision.hit_id, outcome="duplicate")
    if isinstance(decision, RateLimited):
        raise HitRateLimited(retry_after=decision.retry_after)
    new: Ledger = {**ledger, "receivers": _live_entries(ledger["receivers"], at)}
    if decision.bucket is not None:
        entry["bucket"] = {"tokens": decision.bucket.tokens, "at": decision.bucket.at}
    if decision.outcome == "accepted":
        if len(ledger["pending"]) >= MAX_PENDING:
            raise LedgerFull(
                f"{ledger['target']} has {len(ledger['pending'])} pending intents, the most it keeps"
            )
        entry["lastAccepted"] = at
        if req.dedupe_key is not None:
            entry["dedupe"][key_digest(req.dedupe_key)] = [hit_id, at]
        seq = new["nextSeq"]
        new["nextSeq"] = seq + 1
        assert req.intent is not None  # the rule refuses a hit to act on without one
        new["pending"] = [
            *ledger["pending"],
            {"seq": seq, "hit": hit_id, "receiver": req.receiver, "intent": req.intent, "at": at},
        ]
        new["latestIntent"] = req.intent
    if req.idempotency_key is not None:
        entry["idempotency"][key_digest(req.idempotency_key)] = [hit_id, at]
    last: LastHit = {
        "hit": hit_id,
        "outcome": decision.outcome,
        "at": at,
        "reason": decision.reason,
        "state": "pending" if decision.outcome == "accepted" else None,
        "before": None,
        "after": None,
        "clamped": None,
    }
    entry["lastHit"] = last
    new["recentHits"] = [*ledger["recentHits"][-(MAX_RECENT_HITS - 1) :], {**last, "receiver": req.receiver}]
    entry["keepUntil"] = max(entry.get("keepUntil", at), at + _longest_window(req))
    new["receivers"][req.receiver] = entry
    new["updatedAt"] = max(new["updatedAt"], at)
    return new, HitResult(hit_id=hit_id, outcome=decision.outcome)


def _longest_window(req: HitRequest) -> float:
    rate_window = req.rate_limit.per_seconds if req.rate_limit is not None else 0.0
    return max(IDEMPOTENCY_WINDOW, req.dedupe_window, req.cooldown, rate_window)


def _live_entries(receivers: dict[str, ReceiverEntry], at: float) -> dict[str, ReceiverEntry]:
    """The entries that may still decide a hit at ``at`` (a new dict: the caller changes it)."""
    return {key: e for key, e in receivers.items() if e.get("keepUntil", at) >= at}


def _forget_old(entry: ReceiverEntry, req: HitRequest, at: float) -> ReceiverEntry:
    """A copy of the entry without what no window needs any more; the rule itself checks each window."""
    idempotency = {k: v for k, v in entry["idempotency"].items() if at - v[1] < IDEMPOTENCY_WINDOW}
    if len(idempotency) >= MAX_KEYS:
        idempotency = dict(sorted(idempotency.items(), key=lambda kv: kv[1][1])[-(MAX_KEYS - 1) :])
    kept: ReceiverEntry = {
        **entry,
        "idempotency": idempotency,
        "dedupe": {k: v for k, v in entry["dedupe"].items() if at - v[1] < req.dedupe_window},
    }
    kept.pop("rate", None)
    bucket = kept.get("bucket")
    window = req.rate_limit.per_seconds if req.rate_limit is not None else 0.0
    if bucket is not None and at - bucket["at"] >= window:  # full again
        del kept["bucket"]
    return kept


def is_empty(ledger: Ledger, now: float) -> bool:
    """Nothing pending, nothing to confirm, no receiver entry that may still decide a hit: deletable."""
    return not has_work(ledger) and not _live_entries(ledger["receivers"], now)


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
    by_hit = {s.hit_id: s for s in steps}
    for p in new["pending"]:
        step = folded.get((p["seq"], p["hit"]))
        entry = new["receivers"].get(p["receiver"])
        last = entry.get("lastHit") if entry is not None else None
        if step is not None and last is not None and last["hit"] == p["hit"]:
            _mark_folded(last, step)
    for recent in new["recentHits"]:
        if recent["state"] == "pending" and (step := by_hit.get(recent["hit"])) is not None:
            _mark_folded(recent, step)
    new["pending"], new["desired"], new["converged"], new["updatedAt"] = remaining, desired, False, now
    return _with_history_point(new)


def _mark_folded(hit: LastHit, step: FoldStep) -> None:
    hit["state"], hit["before"] = "folded", step.before
    hit["after"], hit["clamped"] = step.after, step.clamped


def _with_history_point(ledger: Ledger) -> Ledger:
    """The ledger with a history point for its state, unless its newest point already shows it."""
    point: HistoryPoint = {
        "t": ledger["updatedAt"],
        "d": ledger["desired"],
        "o": ledger["observed"],
        "c": ledger["converged"],
        "e": ledger["lastError"],
    }
    history = ledger["history"]
    if history and {**history[-1], "t": point["t"]} == point:
        return ledger
    return {**ledger, "history": [*history[-(MAX_HISTORY - 1) :], point]}


def fail_intents(ledger: Ledger, reason: str, now: float) -> tuple[Ledger, int]:
    """Fail the pending intents. The target refused them: the desired value is withdrawn (nothing is
    left to confirm, so no pass retries it) and the target stays unconverged with the error."""
    failed = {p["hit"] for p in ledger["pending"]}
    receivers = dict(ledger["receivers"])
    for key, entry in receivers.items():
        last = entry.get("lastHit")
        if last is not None and last["hit"] in failed:
            receivers[key] = {**entry, "lastHit": {**last, "state": "failed", "reason": reason}}
    recent: list[RecentHit] = [
        {**r, "state": "failed", "reason": reason} if r["state"] == "pending" and r["hit"] in failed else r
        for r in ledger["recentHits"]
    ]
    new: Ledger = {**ledger, "receivers": receivers, "pending": [], "recentHits": recent}
    new["desired"], new["converged"], new["lastError"], new["updatedAt"] = None, False, reason, now
    return _with_history_point(new), len(failed)


def set_observed(
    ledger: Ledger, observed: int | None, converged: bool, error: str | None, now: float
) -> Ledger:
    return _with_history_point(
        {**ledger, "observed": observed, "converged": converged, "lastError": error, "updatedAt": now}
    )


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


def _hit_record(ledger: Ledger, receiver: str, hit: LastHit) -> HitRecord:
    return HitRecord(
        hit_id=hit["hit"],
        receiver=receiver,
        outcome=hit["outcome"],
        received_at=hit["at"],
        reason=hit["reason"],
        intent_state=hit["state"],
        before=hit["before"],
        after=hit["after"],
        clamped=hit["clamped"],
        target_id=ledger["target"],
    )


def last_hits(ledger: Ledger) -> dict[str, HitRecord]:
    hits = {}
    for receiver, entry in ledger["receivers"].items():
        last = entry.get("lastHit")
        if last is not None:
            hits[receiver] = _hit_record(ledger, receiver, last)
    return hits


def history(ledger: Ledger) -> list[TargetPoint]:
    return [
        TargetPoint(at=p["t"], desired=p["d"], observed=p["o"], converged=p["c"], error=p["e"])
        for p in ledger["history"]
    ]


def recent_hits(ledger: Ledger) -> list[HitRecord]:
    """The target's recent hits, newest first."""
    return [_hit_record(ledger, r["receiver"], r) for r in reversed(ledger["recentHits"])]


def from_json(data: Any, target_id: str) -> Ledger:
    """The ledger stored in an object, completed with defaults (older or hand-made objects).

    Objects written before a target had to be confirmed to be converged said a target never folded
    was converged; it is read as it is: not converged."""
    ledger = new_ledger(target_id)
    if isinstance(data, dict):
        ledger.update(cast(Ledger, {k: v for k, v in data.items() if k in ledger}))
    if ledger["desired"] is None:
        ledger["converged"] = False
    return ledger
