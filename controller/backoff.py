"""Capped exponential backoff with full jitter, honouring a server's ``Retry-After``.

The reconciler's retry loop is the one place that retries Cattle calls; it asks this for delays.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass
class Backoff:
    base: float = 0.5
    cap: float = 30.0
    rng: random.Random = field(default_factory=random.Random)

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Delay before retry number ``attempt`` (1-based). A Retry-After wins when it is longer."""
        ceiling = min(self.cap, self.base * 2.0 ** max(0, attempt - 1))
        jittered = ceiling / 2 + self.rng.uniform(0, ceiling / 2)
        if retry_after is not None:
            return max(jittered, min(retry_after, self.cap))
        return jittered
