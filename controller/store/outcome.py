"""The one rule that decides a hit's outcome, over a history any store can answer from.

Both stores decide a hit the same way: the SQLite store answers ``HitHistory`` with queries inside
the transaction that records the hit, the Kubernetes ledger from the JSON object it is about to
compare-and-swap. Neither keeps its own copy of the order, so the two modes can't drift apart.

The order, first match wins:

1. **Idempotency key** seen for this receiver within the idempotency window: a duplicate of that hit.
2. **Alertmanager retry**: an *accepted* hit with the same dedupe key within ``dedupe_window``: a
   duplicate of it.
3. **Cooldown**: within ``cooldown`` of the receiver's last accepted hit: recorded as "cooldown".
4. **Rate limit**: no token left in the receiver's bucket (``controller.store.rate_bucket``): refused
   (not recorded, not counted), with the seconds until a token is there.
5. **The listener's disposition**: "suspended" or "ignored" as the receiver's spec says.
6. Otherwise **accepted**; a hit to act on must carry its intent.

Repeats are answered before anything counts them: a sender retrying a hit it already got through
is told "duplicate" rather than 429, and a hit the cooldown swallows was never going to act, so it
doesn't use up the rate limit. Every hit the rate limit lets through takes a token, whatever it does
next: the decision carries the receiver's bucket after it, for the store to keep with the hit.

Windows are compared on ``received_at`` values only (never a clock), as ``since`` bounds: a window
of W seconds holds the times ``t > received_at - W``, so a hit exactly W seconds later is outside.
The bucket refills by ``received_at`` values too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from controller.model import Outcome
from controller.store.base import HitRequest, StoreError
from controller.store.rate_bucket import Bucket, take


class HitHistory(Protocol):
    """What a store remembers of one receiver's hits, as the rule asks for it."""

    def idempotent_hit(self, receiver: str, key: str, since: float) -> str | None:
        """The hit recorded under ``key`` after ``since``."""
        ...

    def retried_hit(self, receiver: str, dedupe_key: str, since: float) -> str | None:
        """The first accepted hit with ``dedupe_key`` after ``since``."""
        ...

    def last_accepted_at(self, receiver: str) -> float | None: ...

    def rate_bucket(self, receiver: str) -> Bucket | None:
        """The receiver's bucket after the last hit the rate limit counted; None when full."""
        ...


@dataclass(frozen=True)
class Duplicate:
    hit_id: str  # the hit this one repeats


@dataclass(frozen=True)
class RateLimited:
    retry_after: float  # seconds


@dataclass(frozen=True)
class Record:
    """Record the hit with this outcome; an accepted one with its intent."""

    outcome: Outcome
    reason: str | None
    bucket: Bucket | None  # the rate limit counted it: the receiver's bucket now, for the store to keep


Decision = Duplicate | RateLimited | Record


def decide(history: HitHistory, req: HitRequest, *, idempotency_window: float) -> Decision:
    """The hit's outcome (module docstring). Raises ``StoreError`` for a hit to act on without intent."""
    at = req.received_at
    if req.idempotency_key is not None:
        first = history.idempotent_hit(req.receiver, req.idempotency_key, at - idempotency_window)
        if first is not None:
            return Duplicate(first)
    if req.dedupe_key is not None:
        first = history.retried_hit(req.receiver, req.dedupe_key, at - req.dedupe_window)
        if first is not None:
            return Duplicate(first)
    if req.cooldown > 0:
        last = history.last_accepted_at(req.receiver)
        if last is not None and at - last < req.cooldown:
            reason = f"cooldown: last accepted hit {at - last:.1f}s ago, cooldown is {req.cooldown:g}s"
            return Record("cooldown", reason, bucket=None)
    bucket: Bucket | None = None
    if req.rate_limit is not None:
        bucket, wait = take(req.rate_limit, history.rate_bucket(req.receiver), at)
        if wait is not None:
            return RateLimited(wait)
    if req.disposition != "act":
        return Record(req.disposition, req.reason, bucket=bucket)
    if req.intent is None:
        raise StoreError(f"hit of {req.receiver} to act on has no intent")
    return Record("accepted", req.reason, bucket=bucket)
