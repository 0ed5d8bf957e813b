"""The rate limit as a token bucket: one pure function, and the in-memory buckets of one process.

``rateLimit: {requests: N, perSeconds: S}`` is a bucket of capacity N refilled at N/S tokens a
second, full when never used. A hit the rate limit counts takes one token; with less than one token
the hit is refused, told to wait the seconds until one is there, ``(1 - level) * S / N``. So a
receiver takes a burst of N at once and N per S on average, as nginx's ``limit_req`` or Envoy's
local rate limit do. Its state is two numbers whatever N is: the tokens left by the last counted hit
and that hit's time (``Bucket``), so a limit of tens of thousands costs what a limit of one does.

``take`` is the rule's arithmetic, shared by the outcome rule (``controller.store.outcome``, for
both stores) and the listener's pass-through hits (``controller.listener.ratelimit``). Times come
from hits, not a clock, and may arrive out of order (several replicas, a clock stepped back): a
time before the bucket's never refills it backwards (it counts as no time passed, and the bucket
keeps the later time), so the wait is never more than S.

``Buckets`` keeps the state in memory for a process that owns it alone (the SQLite store, the
listener). A bucket is full again S seconds after its last counted hit at the latest, and a full
bucket is the same as none, so such receivers are forgotten: the map is swept whenever it has had
more changes than the last sweep kept receivers, which bounds it at about twice the receivers hit
within S, at an amortised constant cost per hit. A restart forgets every bucket, i.e. they start full.
"""

from __future__ import annotations

from dataclasses import dataclass

from controller.model import RateLimit


@dataclass(frozen=True)
class Bucket:
    tokens: float  # left after the last counted hit
    at: float  # that hit's time


def take(limit: RateLimit, state: Bucket | None, at: float) -> tuple[Bucket | None, float | None]:
    """One token for a hit at ``at``: ``(the bucket after it, None)``, or ``(None, seconds to wait)``.

    ``state`` None is a full bucket. A limit without a window (``per_seconds`` <= 0, which the
    schema forbids) limits nothing and keeps nothing: ``(None, None)``."""
    capacity, per = limit.requests, limit.per_seconds
    if per <= 0:
        return None, None
    if capacity <= 0:
        return None, per
    if state is None:
        level, last = float(capacity), at
    else:
        elapsed = max(0.0, at - state.at)
        # Multiplied before divided, so a whole number of tokens is exact when elapsed is whole.
        level, last = min(float(capacity), state.tokens + elapsed * capacity / per), max(state.at, at)
    if level < 1.0:
        return None, min(per, (1.0 - level) * per / capacity)
    return Bucket(level - 1.0, last), None


class Buckets:
    """Each receiver's bucket, for one process; receivers whose bucket is full again are forgotten."""

    def __init__(self) -> None:
        self._buckets: dict[str, tuple[Bucket, float]] = {}  # key -> (bucket, when it is full again)
        self._changes = 0  # since the last sweep
        self._kept = 0  # receivers the last sweep kept

    def get(self, key: str) -> Bucket | None:
        kept = self._buckets.get(key)
        return None if kept is None else kept[0]

    def put(self, key: str, bucket: Bucket | None, limit: RateLimit) -> None:
        """Keep ``bucket`` (None: a full one) as ``key``'s, under the limit it was taken with."""
        if bucket is None:
            self._buckets.pop(key, None)
        else:
            self._buckets[key] = (bucket, bucket.at + limit.per_seconds)
            self._changes += 1
            if self._changes > self._kept:
                self._sweep(bucket.at)

    def _sweep(self, now: float) -> None:
        self._buckets = {k: kept for k, kept in self._buckets.items() if kept[1] > now}
        self._changes, self._kept = 0, len(self._buckets)  # since the last sweep
        self._kept = 0  # receivers the last sweep kept

    def __len__(self) -> int:
        return len(self._buckets)
