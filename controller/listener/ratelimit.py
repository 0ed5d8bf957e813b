"""The rate limit of pass-through hits, which no store sees, and the Retry-After header of a 429.

Hits that are recorded are limited by the store, inside the rule that decides their outcome
(``controller.store.outcome``). A pass-through hit (a ``Forwarder``'s, ``controller.drivers.contract``)
is never recorded, so the listener keeps its token buckets here, with the same function the rule
uses (``controller.store.rate_bucket.take``): a receiver's ``rateLimit`` means the same thing
whatever its driver. Each listener process has its own buckets. A refused hit takes no token: a
sender that backs off as told by ``Retry-After`` gets through when it comes back.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from controller.model import RateLimit
from controller.store.rate_bucket import Buckets, take


class RateLimiter:
    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._buckets = Buckets()

    def acquire(self, key: str, limit: RateLimit) -> float | None:
        """Take one token for ``key``: None when allowed, else the seconds until one is there."""
        bucket, wait = take(limit, self._buckets.get(key), self._clock())
        if wait is None:
            self._buckets.put(key, bucket, limit)
        return wait

    def __len__(self) -> int:
        return len(self._buckets)


def retry_after_header(seconds: float) -> str:
    """Retry-After takes whole seconds; round up so a sender never comes back too early, and at least 1."""
    return str(max(1, math.ceil(seconds)))
