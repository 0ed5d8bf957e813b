"""The times of the hits each receiver's rate limit counted, kept in memory by one process.

The SQLite store has one process writing, so it counts here rather than in the database: a deque per
receiver, appended to and trimmed from the left, costs what a token bucket did. The store adds a
hit's time inside the transaction that records it and takes it back out if that transaction rolls
back, so the count follows what is durable. A restart forgets the windows, as it forgets nothing
else the limit protects. The listener counts pass-through hits (which no store sees) with its own.

Memory is bounded: a window holds at most the limit's ``requests`` times (a refused hit is not
added), and a receiver whose window empties is forgotten.
"""

from __future__ import annotations

import contextlib
from collections import deque


class RateWindows:
    def __init__(self) -> None:
        self._times: dict[str, deque[float]] = {}

    def counted(self, receiver: str, since: float) -> tuple[int, float | None]:
        """How many times after ``since`` the receiver's window holds, and the oldest of them.

        Times up to ``since`` are dropped: every later hit's window starts later still."""
        times = self._times.get(receiver)
        if times is None:
            return 0, None
        while times and times[0] <= since:
            times.popleft()
        if not times:
            del self._times[receiver]
            return 0, None
        return len(times), times[0]

    def add(self, receiver: str, at: float) -> None:
        self._times.setdefault(receiver, deque()).append(at)

    def remove(self, receiver: str, at: float) -> None:
        """Take back a time added last (a rolled-back hit); gone already if it expired meanwhile."""
        times = self._times.get(receiver)
        if times is None:
            return
        if times and times[-1] == at:
            times.pop()
        else:
            with contextlib.suppress(ValueError):
                times.remove(at)

    def __len__(self) -> int:
        return len(self._times)
