"""Per-receiver token buckets for the trigger endpoint.

A bucket holds up to ``requests`` tokens and refills at ``requests / per_seconds`` per second, so a
receiver may burst its whole allowance and then keeps the average rate. Refused requests take no
token: a sender that backs off as told by ``Retry-After`` gets through when it comes back.

Memory is bounded: buckets live in an LRU of ``max_entries``; forgetting the least recently used one
only gives that receiver a full bucket again, which errs on the side of letting hits through. A
bucket remembers the limit it was made for; when the receiver's limit changes the bucket starts over
full under the new limit, rather than carrying a debt measured in the old units.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from controller.model import RateLimit


@dataclass
class _Bucket:
    limit: RateLimit
    tokens: float
    updated: float


class RateLimiter:
    def __init__(self, *, clock: Callable[[], float] = time.time, max_entries: int = 10_000) -> None:
        self._clock = clock
        self._max_entries = max_entries
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def acquire(self, key: str, limit: RateLimit) -> float | None:
        """Take one token for ``key``: None when allowed, else the seconds until one is available."""
        if limit.per_seconds <= 0:  # the schema forbids it; no window means no limit, not a crash
            return None
        if limit.requests < 1:
            return limit.per_seconds
        now = self._clock()
        bucket = self._bucket(key, limit, now)
        rate = limit.requests / limit.per_seconds
        # A clock stepped backwards must not drain the bucket, hence max(0, ...).
        elapsed = max(0.0, now - bucket.updated)
        bucket.tokens = min(float(limit.requests), bucket.tokens + elapsed * rate)
        bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return None
        return (1.0 - bucket.tokens) / rate

    def __len__(self) -> int:
        return len(self._buckets)

    def _bucket(self, key: str, limit: RateLimit, now: float) -> _Bucket:
        bucket = self._buckets.get(key)
        if bucket is None or bucket.limit != limit:
            bucket = _Bucket(limit=limit, tokens=float(limit.requests), updated=now)
            self._buckets[key] = bucket
        self._buckets.move_to_end(key)
        while len(self._buckets) > self._max_entries:
            self._buckets.popitem(last=False)
        return bucket


def retry_after_header(seconds: float) -> str:
    """Retry-After takes whole seconds; round up so a sender never comes back too early, and at least 1."""
    return str(max(1, math.ceil(seconds)))
