"""Crash test: SIGKILL the service while hits pour in; every distinct hit is applied exactly once.

Clients behave like Alertmanager: each hit carries its own Idempotency-Key and is retried until it
gets a 2xx, so a hit whose answer was lost in the crash is sent again. The service is killed twice
at arbitrary moments and restarted on the same state folder. At the end the service's scale must
be exactly start + number of distinct hits: no hit lost (every 200 was durable), none applied
twice (retries are duplicates; folds are recorded before Cattle is touched).
"""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from pathlib import Path

import aiohttp
import pytest

from tests.processes import Sandbox, Service, sandbox_scale, write_receiver, write_seed
from tests.toolbox import until

pytestmark = pytest.mark.e2e

HITS = 300
CONCURRENCY = 16


async def send_until_2xx(session: aiohttp.ClientSession, url: str, key: str, answered: list[str]) -> str:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            async with session.post(url, headers={"Idempotency-Key": key}) as answer:
                if 200 <= answer.status < 300:
                    outcome: str = (await answer.json())["outcome"]
                    answered.append(key)
                    return outcome
        except (TimeoutError, aiohttp.ClientError):
            pass
        await asyncio.sleep(0.05)
    raise AssertionError(f"hit {key} never got a 2xx")


async def test_every_distinct_hit_is_applied_exactly_once_across_sigkills(tmp_path: Path) -> None:
    receivers = tmp_path / "receivers"
    receivers.mkdir()
    write_receiver(receivers, "web-up", high=10_000)
    sandbox = Sandbox(tmp_path, write_seed(tmp_path / "seed.yaml", scale=1)).start_and_wait()
    service = Service(tmp_path, receivers=receivers, state=tmp_path / "state", cattle_url=sandbox.url)
    try:
        service.start_and_wait()
        url = service.trigger_url("web-up")
        answered: list[str] = []
        kills: list[int] = []
        kill_at = {HITS // 4, HITS // 2}
        crashes: list[asyncio.Task[None]] = []
        keys = [uuid.uuid4().hex for _ in range(HITS)]
        limit = asyncio.Semaphore(CONCURRENCY)
        timeout = aiohttp.ClientTimeout(total=5)
        async with aiohttp.ClientSession(timeout=timeout) as session:

            async def crash() -> None:
                service.kill()
                assert service.proc is not None and service.proc.returncode == -signal.SIGKILL
                kills.append(len(answered))
                await asyncio.sleep(0.3)
                service.start()

            async def one(key: str) -> str:
                async with limit:
                    outcome = await send_until_2xx(session, url, key, answered)
                if len(answered) in kill_at:
                    kill_at.discard(len(answered))
                    crashes.append(asyncio.create_task(crash()))
                return outcome

            outcomes = await asyncio.gather(*(one(k) for k in keys))
            await asyncio.gather(*crashes)
        assert set(outcomes) <= {"accepted", "duplicate"}
        assert len(kills) == 2 and kills[-1] < HITS  # both kills happened while hits were still coming
        service.wait_http(f"{service.base}/readyz")
        await until(lambda: sandbox_scale(sandbox) == 1 + HITS, within=60, what=f"scale {1 + HITS}")
        await asyncio.sleep(1.5)  # a resync runs every second: an extra step would show now
        assert sandbox_scale(sandbox) == 1 + HITS
    finally:
        service.stop()
        sandbox.stop()
