"""The loop long-running commands run on: uvloop when it can be imported, asyncio's own otherwise."""

from __future__ import annotations

import asyncio
import sys
import types
from collections.abc import Iterator

import pytest

from controller import eventloop


@pytest.fixture
def switch_interval() -> Iterator[None]:
    before = sys.getswitchinterval()
    yield
    sys.setswitchinterval(before)


def test_without_uvloop_the_loop_is_asyncios(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # import uvloop raises ImportError
    assert eventloop.loop_factory() is None


@pytest.mark.usefixtures("switch_interval")
def test_with_uvloop_its_loop_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = types.ModuleType("uvloop")
    made: list[asyncio.AbstractEventLoop] = []

    def new_event_loop() -> asyncio.AbstractEventLoop:
        made.append(asyncio.new_event_loop())
        return made[-1]

    fake.new_event_loop = new_event_loop  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "uvloop", fake)

    async def running_loop() -> asyncio.AbstractEventLoop:
        return asyncio.get_running_loop()

    loop = eventloop.run(running_loop())
    assert made == [loop]


@pytest.mark.usefixtures("switch_interval")
def test_run_shortens_the_gil_switch_interval_and_returns_the_result(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)

    async def answer() -> int:
        return 42

    assert eventloop.run(answer()) == 42
    assert sys.getswitchinterval() == pytest.approx(eventloop.SWITCH_INTERVAL)
