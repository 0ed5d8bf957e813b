"""Benchmark: hit-to-PUT latency, from a hit's request to the Cattle PUT that carries its step.

Run by hand (not a test), from the repository root:

    .venv/bin/python -m bench.listener [--latency-hits 100]

Sequential hits, one at a time, on the real ``webhook-service run`` process (default log level); the
Cattle sandbox runs inside this process with a middleware that timestamps every scale PUT, so "hit
sent" and "PUT received" are read from one clock. Reports p50 and p99 of hit -> PUT carrying that
hit's step. Throughput against a bare aiohttp handler is ``python -m bench`` (wrk, not a Python
client, which would cap the bare handler below what it serves).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
from aiohttp import web

from bench.processes import Service, free_port, write_receiver
from controller.sandbox.app import SANDBOX_STATE, SandboxOptions, make_sandbox_app
from controller.sandbox.seed import SandboxSeed, SeedProject, SeedService

START_SCALE = 1


class Puts:
    """Scale PUTs as the sandbox received them: (perf_counter time, scale)."""

    def __init__(self) -> None:
        self.seen: list[tuple[float, int]] = []
        self.arrived = asyncio.Event()

    def add(self, scale: int) -> None:
        self.seen.append((time.perf_counter(), scale))
        self.arrived.set()

    def latest(self) -> int:
        return max((scale for _, scale in self.seen), default=START_SCALE)

    async def first_reaching(self, scale: int) -> float:
        while (found := next((t for t, s in self.seen if s >= scale), None)) is None:
            self.arrived.clear()
            await self.arrived.wait()
        return found


def put_recorder(puts: Puts) -> Callable[..., Awaitable[web.StreamResponse]]:
    @web.middleware
    async def record(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if request.method == "PUT":
            body = json.loads(await request.read())
            if "scale" in body:
                puts.add(int(body["scale"]))
        return await handler(request)

    return record


async def latency(url: str, puts: Puts, hits: int) -> list[float]:
    samples = []
    async with aiohttp.ClientSession() as session:
        for _ in range(hits):
            target = puts.latest() + 1
            sent = time.perf_counter()
            async with session.post(url) as answer:
                assert answer.status == 200, await answer.text()
            samples.append(await puts.first_reaching(target) - sent)
            await asyncio.sleep(0.3)  # let the update settle so each hit starts from a quiet target
    return samples


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--latency-hits", type=int, default=100)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="webhook-bench-"))

    puts = Puts()
    seed = SandboxSeed(projects=(SeedProject(id="1a5", services=(
        SeedService(id="1s7", name="web", stack_id="1st1", scale=START_SCALE),)),))  # fmt: skip
    sandbox_app = make_sandbox_app(seed, SandboxOptions(transition_ms=100))
    sandbox_app.middlewares.append(put_recorder(puts))
    runner = web.AppRunner(sandbox_app, access_log=None)
    await runner.setup()
    sandbox_port = free_port()
    await web.TCPSite(runner, "127.0.0.1", sandbox_port).start()

    receivers = tmp / "receivers"
    receivers.mkdir()
    write_receiver(receivers, "bench-up", high=1_000_000_000)
    service = Service(
        tmp,
        receivers=receivers,
        state=tmp / "state",
        cattle_url=f"http://127.0.0.1:{sandbox_port}/v2-beta",
    )
    try:
        await asyncio.to_thread(service.start_and_wait)
        url = await asyncio.to_thread(service.trigger_url, "bench-up")
        # Let the reconciler settle before timing single hits.
        state = sandbox_app[SANDBOX_STATE]
        while True:
            before = state.service("1a5", "1s7").scale
            await asyncio.sleep(1.0)
            if state.service("1a5", "1s7").scale == before:
                break
        samples = await latency(url, puts, args.latency_hits)
        print(f"latency hit -> Cattle PUT ({len(samples)} sequential hits):")
        print(
            f"  p50 {percentile(samples, 50) * 1000:6.1f} ms   p99 {percentile(samples, 99) * 1000:6.1f} ms"
        )
    finally:
        service.stop()
        await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(main())
