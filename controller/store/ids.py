"""Hit ids and the idempotency window, shared by every store so hits look the same in both modes."""

from __future__ import annotations

import itertools
import os
from typing import Final

IDEMPOTENCY_WINDOW: Final = 24 * 3600.0  # an Idempotency-Key repeated within this many seconds is a duplicate


class HitIds:
    """Unique hit ids ordered by arrival: the hit's time in nanoseconds, a random per-store part, a
    counter (32 hex characters).

    Time order matters for speed: ids that grow append to the end of the primary-key B-tree, so a
    batch of hits dirties a few pages instead of one random page per hit; and it lets pruning by age
    use the primary key. The random part (drawn once) keeps ids of two processes or two runs apart;
    the counter keeps ids of one process apart.
    """

    def __init__(self) -> None:
        self._node = os.urandom(4).hex()
        self._counter = itertools.count()

    def next(self, at: float) -> str:
        return f"{self.time_prefix(at)}{self._node}{next(self._counter) & 0xFFFFFFFF:08x}"

    @staticmethod
    def time_prefix(at: float) -> str:
        return f"{max(0, int(at * 1e9)):016x}"
