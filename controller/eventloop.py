"""The event loop a long-running command runs on: uvloop where it is installed, a short GIL switch.

uvloop (``pip install 'webhook-service[fast]'``) is libuv under asyncio's interface: the listener's
sockets, timers and callbacks cost less CPU on it, a few percent more hits per second. Without it the
standard loop runs, unchanged.

The committer thread hands each COMMIT's completion back to the loop, and CPython lets a thread that
waits for the GIL have it only every switch interval (5 ms by default): while the loop is busy that
delay adds to every batch. ``SWITCH_INTERVAL`` shortens it to half a millisecond.
"""

from __future__ import annotations

import asyncio
import importlib
import sys
from collections.abc import Callable, Coroutine
from typing import Any, Final, TypeVar

_T = TypeVar("_T")

SWITCH_INTERVAL: Final = 0.0005  # seconds a thread holds the GIL before one waiting for it may have it


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop if it is installed, else None (asyncio's own)."""
    try:
        # By name: uvloop is an optional extra, so type checks must pass with and without it.
        uvloop = importlib.import_module("uvloop")
    except ImportError:
        return None
    new_loop: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return new_loop


def run(main: Coroutine[Any, Any, _T]) -> _T:
    """``asyncio.run(main)`` on the loop of ``loop_factory``, with the GIL switch interval shortened."""
    sys.setswitchinterval(SWITCH_INTERVAL)
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(main)
