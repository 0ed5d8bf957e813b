"""The tests' shared tools: one way to wait for a condition, one fake clock.

``until`` polls a check, sync or async, until it returns something truthy and returns that value;
exceptions listed in ``ignoring`` count as "not yet" (a resource not created yet, a port not open).
Waiting is for real processes and real servers only; code that takes a clock gets a ``FakeClock``.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


async def until(
    check: Callable[[], T | Awaitable[T]],
    within: float = 15.0,
    what: str = "condition",
    *,
    ignoring: tuple[type[BaseException], ...] = (),
    interval: float = 0.05,
) -> T:
    """``check()``'s first truthy value; AssertionError naming ``what`` after ``within`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        try:
            value = check()
            if inspect.isawaitable(value):
                value = await value
        except ignoring:
            value = None
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"{what} not reached within {within}s")
        await asyncio.sleep(interval)


class FakeClock:
    """A wall clock that moves only when a test moves it."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


__all__ = ["FakeClock", "folder_fingerprint", "until"]


def folder_fingerprint(folder: Path) -> dict[str, tuple[str, int]]:
    """Every file under ``folder`` (and the folder itself) by relative path: its content's SHA-256 and
    its mode, to show that something left a folder byte-for-byte as it was."""
    found = {".": ("", folder.stat().st_mode)}
    for path in sorted(folder.rglob("*")):
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else ""
        found[str(path.relative_to(folder))] = (digest, path.stat().st_mode)
    return found
