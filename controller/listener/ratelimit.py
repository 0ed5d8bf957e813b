"""The rate limit of pass-through hits, which no store sees, and the Retry-After header of a 429.

Hits that are recorded are limited by the store, inside the rule that decides their outcome
(``controller.store.outcome``). A pass-through hit (a ``Forwarder``'s, ``controller.drivers.contract``)
is never recorded, so the listener counts it here, with the same window and the same rule's
``rate_limit_wait``: a
receiver's ``rateLimit`` means the same thing whatever its driver. Each listener process counts its
own pass-through hits. A refused hit is not counted: a sender that backs off as told by
``Retry-After`` gets through when it comes back.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from controller.model import RateLimit
from controller.store.outcome import rate_limit_wait
from controller.store.rate_windows import RateWindows


class RateLimiter:
    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._windows = RateWindows()

    def acquire(self, key: str, limit: RateLimit) -> float | None:
        """Count one hit for ``key``: None when allowed, else the seconds until one will be."""
        now = self._clock()
        count, oldest = self._windows.counted(key, now - limit.per_seconds)
        wait = rate_limit_wait(limit, count, oldest, now)
        if wait is None and limit.per_seconds > 0:
            self._windows.add(key, now)
        return wait

    def __len__(self) -> int:
        return len(self._windows)


def retry_after_header(seconds: float) -> str:
    """Retry-After takes whole seconds; round up so a sender never comes back too early, and at least 1."""
    return str(max(1, math.ceil(seconds)))
