"""Receivers files rewritten in place while hits arrive, and broken at a restart: no URL dies.

Editors, ``kubectl cp`` and configuration tools rewrite a file in place: truncate, then write, so
a reader can see it empty or half written. The real service must keep every trigger URL working
through that, and through a restart while a file is broken, and apply every accepted hit once.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from pathlib import Path

import aiohttp
import pytest

from tests.processes import Sandbox, Service, sandbox_scale, write_receiver
from tests.toolbox import until

pytestmark = pytest.mark.e2e


def rewrite_in_place(path: Path, text: str, pause: float) -> None:
    """Truncate, pause, write half, pause, write the rest: every state a reader may catch."""
    half = len(text) // 2
    with path.open("w") as f:
        f.flush()
        time.sleep(pause)
        f.write(text[:half])
        f.flush()
        time.sleep(pause)
        f.write(text[half:])


def keep_rewriting(paths: list[Path], stop: threading.Event) -> int:
    contents = {path: path.read_text() for path in paths}
    count = 0
    while not stop.is_set():
        for path in paths:
            rewrite_in_place(path, contents[path], pause=0.01)
            count += 1
    return count


async def fire(session: aiohttp.ClientSession, url: str, outcomes: Counter[int]) -> None:
    async with session.post(url) as answer:
        outcomes[answer.status] += 1


async def test_rewrites_in_place_during_hits_leave_every_url_working(
    tmp_path: Path, sandbox: Sandbox
) -> None:
    folder = tmp_path / "receivers"
    folder.mkdir()
    pair = write_receiver(folder, "web-up", action="up")
    pair.write_text(
        pair.read_text() + "---\n" + write_receiver(folder, "worker-up", service="1s8").read_text()
    )
    (folder / "worker-up.yaml").unlink()
    single = write_receiver(folder, "web-up-2", action="up", amount=2)
    service = Service(tmp_path, receivers=folder, state=tmp_path / "state", cattle_url=sandbox.url)
    service.start_and_wait()
    try:
        urls = {name: service.trigger_url(name) for name in ("web-up", "worker-up", "web-up-2")}
        stop = threading.Event()
        writer = asyncio.create_task(asyncio.to_thread(keep_rewriting, [pair, single], stop))
        outcomes: Counter[int] = Counter()
        sent: Counter[str] = Counter()
        async with aiohttp.ClientSession() as session:
            deadline = time.monotonic() + 2.5
            while time.monotonic() < deadline:
                await asyncio.gather(*(fire(session, url, outcomes) for url in urls.values()))
                sent.update(urls.keys())
                await asyncio.sleep(0.01)
        stop.set()
        rewrites = await writer
        assert rewrites > 30
        assert outcomes == {200: sum(sent.values())}
        web = 1 + sent["web-up"] + 2 * sent["web-up-2"]
        await until(lambda: sandbox_scale(sandbox) == web, within=30, what=f"web at {web}")
        await until(lambda: sandbox_scale(sandbox, "1s8") == 2 + sent["worker-up"], what="worker")
    finally:
        service.stop()


async def test_a_file_broken_at_a_restart_keeps_its_urls(tmp_path: Path, sandbox: Sandbox) -> None:
    folder = tmp_path / "receivers"
    folder.mkdir()
    path = write_receiver(folder, "web-up", action="up")
    service = Service(tmp_path, receivers=folder, state=tmp_path / "state", cattle_url=sandbox.url)
    service.start_and_wait()
    url = service.trigger_url("web-up")
    service.stop()
    path.write_text("spec: [unclosed\n")
    service = Service(
        tmp_path, receivers=folder, state=tmp_path / "state", cattle_url=sandbox.url, port=service.port
    )
    service.start_and_wait()
    try:
        async with aiohttp.ClientSession() as session, session.post(url) as answer:
            assert answer.status == 200
        await until(lambda: sandbox_scale(sandbox) == 2, what="scale 2")
    finally:
        service.stop()
