"""What the listener did, as one INFO line a minute instead of a line per hit.

A line per hit costs more CPU than recording the hit durably (formatting, the handler's lock, the
write), so hits are logged at DEBUG and ``HitSummary`` counts them instead: outcomes, and the
answers that refused a hit by status and code. ``log_summaries`` writes what was counted every
``interval`` seconds, and nothing when nothing happened, so an idle service stays quiet. Refusals
that need attention (a token rejected, a bad signature) still write their own WARNING lines; the
metrics (``webhook_hits_total``, ``webhook_hit_errors_total``) count the same things per receiver.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable

logger = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]


class HitSummary:
    """Hits counted since the last ``take``, by outcome, and refusals by status and code."""

    def __init__(self) -> None:
        self._outcomes: Counter[str] = Counter()
        self._refusals: Counter[tuple[int, str]] = Counter()

    def hit(self, outcome: str) -> None:
        self._outcomes[outcome] += 1

    def refused(self, status: int, code: str) -> None:
        self._refusals[(status, code)] += 1

    def take(self, interval: float) -> str | None:
        """The summary of the last ``interval`` seconds, counting again from zero; None if empty."""
        if not self._outcomes and not self._refusals:
            return None
        parts = [f"{sum(self._outcomes.values())} hit(s)"]
        if self._outcomes:
            parts[0] += " (" + ", ".join(f"{n} {o}" for o, n in sorted(self._outcomes.items())) + ")"
        if self._refusals:
            refusals = ", ".join(f"{n} {s} {c}" for (s, c), n in sorted(self._refusals.items()))
            parts.append(f"{sum(self._refusals.values())} refused ({refusals})")
        self._outcomes.clear()
        self._refusals.clear()
        return f"in the last {interval:g}s: " + "; ".join(parts)


async def log_summaries(summary: HitSummary, interval: float, *, sleep: Sleep = asyncio.sleep) -> None:
    """Log ``summary`` every ``interval`` seconds until cancelled."""
    while True:
        await sleep(interval)
        line = summary.take(interval)
        if line is not None:
            logger.info("%s", line)
