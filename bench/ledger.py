"""What a hit costs the Kubernetes API, and how big a target's ledger gets while Cattle is down.

Run by hand (not a test), from the repository root:

    .venv/bin/python -m bench.ledger [--hits 10000] [--concurrency 1,16]

The real ``KubeStore`` records hits of one target (each with a 255-character idempotency key, the
most a sender may send) against a small in-process API server that keeps IntentLedgers only: GET,
LIST, POST, PUT with resourceVersion compare-and-swap (409 on a stale one) and DELETE, nothing
else, and counts every request and the bytes of every body written. Nothing folds the hits, as when
Cattle is down, so the run shows the pending cap at work: hits are accepted until the target has
``MAX_PENDING`` intents and refused (``LedgerFull``) after.

For each concurrency (hits in flight in one process, which share a write when they meet): API
requests and bytes written per accepted hit, the answers, the ledger's encoded size at the end,
and the time per hit. Bytes written grow with the ledger, since every write replaces the whole
object: the caps bound that too.

The server here is not ``tests/kubeemu.py`` on purpose: bench code does not import the tests, and a
ledger needs only this much of the API.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from controller.kube.client import KubeClient
from controller.store import ledger as ledgers
from controller.store.base import HitRequest, LedgerFull
from controller.store.kube import KubeStore

NS = "webhook-service"
TARGET = "scaleService:1a5/1s7"
PREFIX = f"/apis/webhook-service.dev/v1/namespaces/{NS}/intentledgers"


@dataclass
class LedgerServer:
    """IntentLedgers over HTTP with the API server's compare-and-swap, counting what it is sent."""

    objects: dict[str, dict[str, Any]] = field(default_factory=dict)
    version: int = 0
    requests: Counter[str] = field(default_factory=Counter)
    written: int = 0  # bytes of request bodies

    def app(self) -> web.Application:
        app = web.Application(client_max_size=8 * 1024 * 1024)
        app.router.add_route("*", PREFIX, self.collection)
        app.router.add_route("*", PREFIX + "/{name}", self.item)
        return app

    async def collection(self, request: web.Request) -> web.Response:
        self.requests[request.method] += 1
        if request.method == "GET":
            return web.json_response({"items": list(self.objects.values())})
        obj = await self._body(request)
        name = obj["metadata"]["name"]
        if name in self.objects:
            return self._status(409, "AlreadyExists")
        return web.json_response(self._store(name, obj), status=201)

    async def item(self, request: web.Request) -> web.Response:
        self.requests[request.method] += 1
        name = request.match_info["name"]
        current = self.objects.get(name)
        if current is None:
            return self._status(404, "NotFound")
        if request.method == "GET":
            return web.json_response(current)
        if request.method == "DELETE":
            del self.objects[name]
            return web.json_response(current)
        obj = await self._body(request)
        if obj["metadata"].get("resourceVersion") != current["metadata"]["resourceVersion"]:
            return self._status(409, "Conflict")
        return web.json_response(self._store(name, obj))

    async def _body(self, request: web.Request) -> dict[str, Any]:
        raw = await request.read()
        self.written += len(raw)
        body: dict[str, Any] = json.loads(raw)
        return body

    def _store(self, name: str, obj: dict[str, Any]) -> dict[str, Any]:
        self.version += 1
        obj["metadata"]["resourceVersion"] = str(self.version)
        self.objects[name] = obj
        return obj

    @staticmethod
    def _status(code: int, reason: str) -> web.Response:
        body = {"kind": "Status", "status": "Failure", "reason": reason, "code": code, "message": reason}
        return web.json_response(body, status=code)


def hit(i: int) -> HitRequest:
    return HitRequest(
        receiver="shop/web-up",
        receiver_uid="uid-1",
        target_id=TARGET,
        disposition="act",
        reason=None,
        intent={"action": "up", "amount": 1, "min": 0, "max": 1_000_000},
        idempotency_key=f"{i:08d}" + "k" * 247,
        dedupe_key=None,
        dedupe_window=60.0,
        cooldown=0.0,
        received_at=1_800_000_000.0 + i / 1000,
    )


async def run(hits: int, concurrency: int) -> None:
    server = LedgerServer()
    runner = web.AppRunner(server.app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    answers: Counter[str] = Counter()
    async with aiohttp.ClientSession() as session:
        store = KubeStore(KubeClient(session, f"http://127.0.0.1:{port}", {}), NS)
        await store.open()
        queue = iter(range(hits))

        async def sender() -> None:
            for i in queue:
                try:
                    answers[(await store.record_hit(hit(i))).outcome] += 1
                except LedgerFull:
                    answers["refused (ledger full)"] += 1

        started = time.perf_counter()
        await asyncio.gather(*(sender() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
        await store.close()
    await runner.cleanup()
    [obj] = server.objects.values()
    accepted = answers["accepted"]
    calls = sum(server.requests.values())
    print(f"concurrency {concurrency}: {hits} hits in {elapsed:.1f}s ({elapsed / hits * 1000:.2f} ms/hit)")
    print(f"  answers: {dict(answers)}")
    print(f"  requests: {dict(server.requests)}, {calls / max(accepted, 1):.2f} per accepted hit")
    print(
        f"  written: {server.written / 1e6:.1f} MB, {server.written / max(accepted, 1) / 1024:.1f} KiB"
        " per accepted hit"
    )
    size = ledgers.encoded_size(obj["ledger"])
    print(f"  ledger at the end: {size / 1024:.1f} KiB, {len(obj['ledger']['pending'])} pending")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--hits", type=int, default=10_000)
    parser.add_argument("--concurrency", default="1,16", help="comma-separated hits in flight")
    args = parser.parse_args()
    for concurrency in (int(c) for c in args.concurrency.split(",")):
        asyncio.run(run(args.hits, concurrency))


if __name__ == "__main__":
    main()
