"""Benchmark: trigger-endpoint throughput against a bare aiohttp handler, and hit-to-PUT latency.

Run by hand (not a test), from the repository root:

    .venv/bin/python -m bench.listener [--seconds 10] [--concurrency 32]

1. Throughput. The same aiohttp client, with the same number of concurrent connections, posts as
   fast as it can for ``--seconds`` to (a) a bare aiohttp server whose handler only returns 200, and
   (b) the real ``webhook-service run`` process on a receiver with wide bounds. Every 200 from (b)
   is a hit recorded durably (SQLite WAL, synchronous=FULL, group commit). Reports both rates and
   their ratio.
2. Latency. Sequential hits, one at a time, on the same service; the Cattle sandbox runs inside
   this process with a middleware that timestamps every scale PUT, so "hit sent" and "PUT
   received" are read from one clock. Reports p50 and p99 of hit -> PUT carrying that hit's step.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
from aiohttp import web

from bench.processes import Process, Service, free_port, write_receiver
from controller.sandbox.app import SANDBOX_STATE, SandboxOptions, make_sandbox_app
from controller.sandbox.seed import SandboxSeed, SeedProject, SeedService

BARE_SERVER = """
import sys
from aiohttp import web
async def ok(request):
    await request.read()
    return web.json_response({"outcome": "accepted"})
app = web.Application()
app.router.add_post("/v1-webhooks/endpoint", ok)
app.router.add_get("/healthz", ok)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)
"""

START_SCALE = 1


async def hammer(url: str, seconds: float, concurrency: int) -> tuple[int, int]:
    """Post to ``url`` from ``concurrency`` workers for ``seconds``; returns (200s, others)."""
    ok = other = 0
    deadline = time.monotonic() + seconds
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            nonlocal ok, other
            while time.monotonic() < deadline:
                async with session.post(url) as answer:
                    await answer.read()
                    if answer.status == 200:
                        ok += 1
                    else:
                        other += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return ok, other


async def throughput(url: str, seconds: float, concurrency: int) -> float:
    await hammer(url, 1.0, concurrency)  # warm-up: connections, caches, JIT-free but page cache
    started = time.monotonic()
    ok, other = await hammer(url, seconds, concurrency)
    elapsed = time.monotonic() - started
    if other:
        print(f"  warning: {other} answers were not 200", file=sys.stderr)
    return ok / elapsed


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
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=5)
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
    bare_port = free_port()
    # One core for the client (this process, with the sandbox), the other for the server under test,
    # so the two never compete for a core and runs on a 2-core machine are comparable.
    os.sched_setaffinity(0, {0})
    bare = Process("bare", [sys.executable, "-c", BARE_SERVER, str(bare_port)], tmp / "bare.log").start()
    assert bare.proc is not None
    os.sched_setaffinity(bare.proc.pid, {1})
    service = Service(
        tmp,
        receivers=receivers,
        state=tmp / "state",
        cattle_url=f"http://127.0.0.1:{sandbox_port}/v2-beta",
        env={"WEBHOOK_LOG_LEVEL": "WARNING"},
    )
    try:
        bare.wait_http(f"http://127.0.0.1:{bare_port}/healthz")
        service.start()
        assert service.proc is not None
        os.sched_setaffinity(service.proc.pid, {1})
        await asyncio.to_thread(service.wait_http, f"{service.base}/readyz")
        url = await asyncio.to_thread(service.trigger_url, "bench-up")
        print(f"throughput: {args.concurrency} connections, {args.rounds} rounds of {args.seconds:g}s each")
        bare_url = f"http://127.0.0.1:{bare_port}/v1-webhooks/endpoint"
        ratios = []
        for n in range(1, args.rounds + 1):
            # Alternate the two servers so drift in the machine's speed hits both alike.
            bare_rate = await throughput(bare_url, args.seconds, args.concurrency)
            service_rate = await throughput(url, args.seconds, args.concurrency)
            ratios.append(service_rate / bare_rate)
            print(
                f"  round {n}: bare aiohttp {bare_rate:6.0f} req/s, webhook-service {service_rate:6.0f} "
                f"durable hits/s, ratio {ratios[-1]:.2f}"
            )
        print(
            f"  median ratio: {statistics.median(ratios):.2f} (min {min(ratios):.2f}, max {max(ratios):.2f})"
        )

        # Let the reconciler catch up with the throughput phase before timing single hits.
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
        bare.stop()
        await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(main())
