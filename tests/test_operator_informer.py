"""The supervised Receiver informer (controller/operator/informer.py) against the Kubernetes emulator.

Each replica's listener trusts its informer's view of the Receivers, so the informer must come back
from any failure, and the replica must be unready while its view may be stale. The informer's sleep
is a ``Gate`` the test opens, so no test waits for a backoff; the emulator's watches are shortened
(``time_scale``) so that they end, as a real API server's do, within a test.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import kmock
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient

from controller.backoff import Backoff
from controller.drivers import load_drivers
from controller.kube.client import LEDGERS, RECEIVERS, KubeClient, KubeObject, Ref
from controller.metrics import Metrics
from controller.operator.app import informing
from controller.operator.informer import ReceiverInformer
from controller.receiver_set import ReceiverSet
from controller.receivers.schema import ReceiverSchema
from controller.settings import Settings
from controller.store.sqlite import SqliteStore
from controller.tokens import KeyRing, TokenVerifier
from controller.wiring import wire
from tests.kubeemu import KubeEmulator
from tests.test_operator import APP_NS, receiver
from tests.toolbox import until

RECEIVERS_RESOURCE = kmock.resource("webhook-service.dev", "v1", "receivers")


class FlakyClient(KubeClient):
    """Our client, but the next lists or watches raise what a test queues (a bug, a bad line...)."""

    def __init__(self, url: str) -> None:
        super().__init__(aiohttp.ClientSession(), url, {})
        self.get_failures: list[BaseException] = []
        self.watch_failures: list[BaseException] = []

    async def get(self, ref: Ref) -> KubeObject:
        if self.get_failures:
            raise self.get_failures.pop(0)
        return await super().get(ref)

    async def watch(self, ref: Ref, *, resource_version: str | None = None) -> AsyncGenerator[KubeObject]:
        if self.watch_failures:
            raise self.watch_failures.pop(0)
        async for event in super().watch(ref, resource_version=resource_version):
            yield event


class Gate:
    """The informer's sleep: records each delay, and returns only once the test opens the gate."""

    def __init__(self) -> None:
        self.delays: list[float] = []
        self._open = asyncio.Event()

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        await self._open.wait()
        self._open.clear()

    def open(self) -> None:
        self._open.set()


@dataclass
class Replica:
    kube: KubeEmulator
    client: FlakyClient
    receiver_set: ReceiverSet
    gate: Gate
    http: TestClient[web.Request, web.Application]

    async def readyz(self) -> tuple[int, dict[str, Any]]:
        response = await self.http.get("/readyz")
        return response.status, await response.json()

    async def issue(self, name: str) -> None:
        """A Receiver whose token the active replica has issued: one the informer lets hits through."""
        await self.client.create(RECEIVERS.within(APP_NS), receiver(name))
        await self.client.patch(
            RECEIVERS.named(name, APP_NS, "status"), {"status": {"tokenId": f"{name}-t1"}}
        )

    def lists(self) -> int:
        return sum(1 for r in self.kube if r.resource == RECEIVERS_RESOURCE and r.action == kmock.action.LIST)

    def granted(self, name: str) -> bool:
        return self.receiver_set.get(f"{APP_NS}/{name}") is not None


@pytest.fixture
async def client(kube: KubeEmulator) -> AsyncIterator[FlakyClient]:
    kube.add_namespaces(APP_NS)
    kube.time_scale = 0.0001  # the client's timeoutSeconds=300 lasts 30 ms
    client = FlakyClient(str(kube.url).rstrip("/"))
    yield client
    await client.close()


def informer_of(client: KubeClient, receiver_set: ReceiverSet, gate: Gate) -> ReceiverInformer:
    schema = ReceiverSchema.load()
    return ReceiverInformer(
        client, receiver_set, load_drivers(), schema, backoff=Backoff(base=0.5, cap=30), sleep=gate
    )


@pytest.fixture
async def replica(
    kube: KubeEmulator, client: FlakyClient, tmp_path: Path, aiohttp_client: AiohttpClient
) -> Replica:
    """A listener whose receiver set an informer fills, as in operator mode; watches end every 30 ms."""
    receiver_set = ReceiverSet()
    gate = Gate()
    drivers = load_drivers()
    informer = informer_of(client, receiver_set, gate)
    wiring = wire(
        Settings(state_dir=tmp_path, cattle_url=""),
        store=SqliteStore(tmp_path / "state.db"),
        receiver_set=receiver_set,
        verifier=TokenVerifier(KeyRing.load_or_create(tmp_path / "keys")),
        drivers=drivers,
        metrics=Metrics(),
        wake=lambda _target: None,
        startup=[informing(informer)],
    )
    wiring.health.add("informer", informer.unready_reason)
    return Replica(kube, client, receiver_set, gate, await aiohttp_client(wiring.app))


async def test_a_failing_first_list_is_retried_and_the_view_is_unsynced_until_one_succeeds(
    client: FlakyClient,
) -> None:
    client.get_failures.append(ValueError("Expecting value: line 1 column 1 (char 0)"))
    gate = Gate()
    informer = informer_of(client, ReceiverSet(), gate)
    task = asyncio.create_task(informer.run())
    try:
        await until(lambda: gate.delays, what="the informer backing off")
        assert "ValueError: Expecting value" in (informer.unready_reason() or "")
        gate.open()
        await asyncio.wait_for(informer.synced(), timeout=5)
        assert informer.unready_reason() is None
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_an_unexpected_error_makes_the_replica_unready_until_the_informer_has_relisted(
    replica: Replica,
) -> None:
    assert (await replica.readyz())[0] == 200
    replica.client.watch_failures.append(ValueError("Line is too long"))
    await until(lambda: replica.gate.delays, what="the informer backing off")
    status, body = await replica.readyz()
    assert (status, body["failing"]) == (503, ["informer"])
    assert "ValueError: Line is too long" in body["reasons"]["informer"]
    await replica.issue("web-up")  # while the informer is down
    replica.gate.open()
    await until(lambda: replica.granted("web-up"), what="the informer following again")
    assert (await replica.readyz())[0] == 200


async def test_each_failure_is_logged_once_and_backs_off_longer_each_time(
    replica: Replica, caplog: pytest.LogCaptureFixture
) -> None:
    replica.client.watch_failures += [ValueError("not JSON"), ValueError("not JSON either")]
    await until(lambda: replica.gate.delays, what="the first backoff")
    replica.gate.open()
    await until(lambda: len(replica.gate.delays) == 2, what="the second backoff")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    assert "(1 in a row)" in warnings[0] and warnings[0].endswith("ValueError: not JSON")
    assert "(2 in a row)" in warnings[1] and warnings[1].endswith("ValueError: not JSON either")
    assert 0.25 <= replica.gate.delays[0] <= 0.5 <= replica.gate.delays[1] <= 1.0


async def test_a_watch_the_server_ends_is_resumed_without_listing_again(replica: Replica) -> None:
    watches = len(list(replica.kube))
    await replica.issue("web-up")
    await until(lambda: replica.granted("web-up"), what="the new receiver")
    await until(lambda: len(list(replica.kube)) > watches + 5, what="several watches")
    assert replica.lists() == 1
    assert replica.gate.delays == []
    assert (await replica.readyz())[0] == 200


async def test_a_compacted_watch_version_makes_the_informer_list_again(replica: Replica) -> None:
    await replica.issue("web-up")
    await until(lambda: replica.granted("web-up"), what="the receiver")
    # A write the informer does not watch moves the version on; compaction leaves its version behind.
    ledger = {"metadata": {"name": "web"}, "spec": {"target": "scaleService:1a5/1s7"}}
    await replica.client.create(LEDGERS.within("default"), ledger)
    await replica.kube.compact()
    await until(lambda: replica.lists() == 2, what="a relist")
    await replica.client.delete(RECEIVERS.named("web-up", APP_NS))
    await until(lambda: not replica.granted("web-up"), what="the informer following after its relist")
    assert replica.gate.delays == []  # an expired version is not a failure
    assert (await replica.readyz())[0] == 200
