"""The one rule that decides a hit's outcome, over a history any store can answer from.

Both stores decide a hit the same way: the SQLite store answers ``HitHistory`` with queries inside
the transaction that records the hit, the Kubernetes ledger from the JSON object it is about to
compare-and-swap. Neither keeps its own copy of the order, so the two modes can't drift apart.

The order, first match wins:

1. **Idempotency key** seen for this receiver within the idempotency window: a duplicate of that hit.
2. **Alertmanager retry**: an *accepted* hit with the same dedupe key within ``dedupe_window``: a
   duplicate of it.
3. **Cooldown**: within ``cooldown`` of the receiver's last accepted hit: recorded as "cooldown".
4. **Rate limit**: ``requests`` counted hits within the last ``per_seconds``: refused (not recorded,
   not counted), with the seconds until the oldest of them leaves the window.
5. **The listener's disposition**: "suspended" or "ignored" as the receiver's spec says.
6. Otherwise **accepted**; a hit to act on must carry its intent.

Repeats are answered before anything counts them: a sender retrying a hit it already got through
is told "duplicate" rather than 429, and a hit the cooldown swallows was never going to act, so it
doesn't use up the rate limit. Every hit the rate limit lets through counts, whatever it does next.

Windows are compared on ``received_at`` values only (never a clock), as ``since`` bounds: a window
of W seconds holds the times ``t > received_at - W``, so a hit exactly W seconds later is outside.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from controller.model import Outcome, RateLimit
from controller.store.base import HitRequest, StoreError


class HitHistory(Protocol):
    """What a store remembers of one receiver's hits, as the rule asks for it."""

    def idempotent_hit(self, receiver: str, key: str, since: float) -> str | None:
        """The hit recorded under ``key`` after ``since``."""
        ...

    def retried_hit(self, receiver: str, dedupe_key: str, since: float) -> str | None:
        """The first accepted hit with ``dedupe_key`` after ``since``."""
        ...

    def last_accepted_at(self, receiver: str) -> float | None: ...

    def rate_counted(self, receiver: str, since: float) -> tuple[int, float | None]:
        """How many hits the rate limit counted after ``since``, and the oldest of them."""
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
    rate_counted: bool  # the rate limit let it through: the store counts it


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
            return Record("cooldown", reason, rate_counted=False)
    if req.rate_limit is not None:
        count, oldest = history.rate_counted(req.receiver, at - req.rate_limit.per_seconds)
        wait = rate_limit_wait(req.rate_limit, count, oldest, at)
        if wait is not None:
            return RateLimited(wait)
    counted = req.rate_limit is not None and req.rate_limit.per_seconds > 0
    if req.disposition != "act":
        return Record(req.disposition, req.reason, rate_counted=counted)
    if req.intent is None:
        raise StoreError(f"hit of {req.receiver} to act on has no intent")
    return Record("accepted", req.reason, rate_counted=counted)


def rate_limit_wait(limit: RateLimit, count: int, oldest: float | None, at: float) -> float | None:
    """None when ``limit`` lets one more hit through at ``at``, else the seconds until it will.

    ``count`` hits were counted in the window, the oldest at ``oldest``."""
    if limit.per_seconds <= 0:  # the schema forbids it; no window means no limit, not a crash
        return None
    if count < limit.requests:
        return None
    if oldest is None:  # a limit of zero requests
        return limit.per_seconds
    # A clock stepped back leaves times ahead of ``at``: never ask for more than one window.
    return min(limit.per_seconds, max(0.0, oldest + limit.per_seconds - at))
