"""The fold: pending scale intents, in arrival order, applied to a starting scale.

Each step is ``clamp(scale ± amount, min, max)`` with *that intent's* bounds — the bounds in force
when its hit was accepted — so editing a receiver's max later does not reinterpret hits already
answered. The fold is pure; the reconciler records its result before touching the target.
"""

from __future__ import annotations

from collections.abc import Sequence

from controller.model import ScaleIntent
from controller.store.base import FoldStep, PendingIntent


def clamp(value: int, low: int, high: int) -> int:
    return max(low, min(high, value))


def step(scale: int, intent: ScaleIntent) -> tuple[int, bool]:
    """One intent applied to ``scale``: (new scale, whether the bounds cut it)."""
    raw = scale + intent.amount if intent.action == "up" else scale - intent.amount
    after = clamp(raw, intent.min, intent.max)
    return after, after != raw


def fold(scale: int, pending: Sequence[PendingIntent]) -> tuple[int, list[FoldStep]]:
    steps: list[FoldStep] = []
    for item in pending:
        after, clamped = step(scale, ScaleIntent.from_json(item.intent))
        steps.append(FoldStep(seq=item.seq, hit_id=item.hit_id, before=scale, after=after, clamped=clamped))
        scale = after
    return scale, steps
