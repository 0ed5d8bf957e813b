"""The Kubernetes intent store against the emulator: what holds across several listener replicas."""

from __future__ import annotations

import asyncio
import functools
import re
import socket
from collections.abc import AsyncIterator, Mapping
from dataclasses import replace
from typing import Any

import aiohttp
import pytest

from controller.backoff import Backoff
from controller.cattle.client import CattleClient
from controller.drivers import load_drivers
from controller.drivers.base import DriverContext
from controller.kube.client import EVENTS, KubeClient, KubeObject, Ref
from controller.kube.errors import KubeConflict
from controller.metrics import Metrics
from controller.model import RateLimit
from controller.operator.app import backlog_full_event
from controller.reconciler import Reconciler
from controller.sandbox.app import SANDBOX_STATE, SandboxOptions, run_sandbox
from controller.sandbox.seed import SandboxSeed, SeedProject, SeedService
from controller.store import kube as kube_store
from controller.store import ledger as ledgers
from controller.store.base import FoldStep, HitRateLimited, HitRequest, LedgerFull, StoreUnavailable
from controller.store.kube import KubeStore, ledger_name
from tests.kubeemu import KubeEmulator
from tests.toolbox import FakeClock, until

NS = "webhook-service"
DAY = 24 * 3600.0
TARGET = "scaleService:1a5/1s7"
HIT = HitRequest(
    receiver="shop/web-up",
    receiver_uid="uid-1",
    target_id=TARGET,
    disposition="act",
    reason=None,
    intent={"action": "up", "amount": 1, "min": 0, "max": 1000},
    idempotency_key=None,
    dedupe_key=None,
    dedupe_window=60.0,
    cooldown=0.0,
    received_at=1000.0,
)


class CountingClient(KubeClient):
    """Counts the 409s its writes got: proof that the compare-and-swap path really ran."""

    conflicts = 0

    async def replace(self, ref: Ref, obj: Mapping[str, Any]) -> KubeObject:
        try:
            return await super().replace(ref, obj)
        except KubeConflict:
            CountingClient.conflicts += 1
            raise


@pytest.fixture
async def replicas(kube: KubeEmulator) -> AsyncIterator[tuple[KubeStore, KubeStore]]:
    """Two stores, each with its own client and connection pool, as two listener replicas have."""
    kube.add_namespaces(NS)
    CountingClient.conflicts = 0
    async with aiohttp.ClientSession() as one, aiohttp.ClientSession() as two:
        url = str(kube.url).rstrip("/")
        stores = (KubeStore(CountingClient(one, url, {}), NS), KubeStore(CountingClient(two, url, {}), NS))
        for store in stores:
            await store.open()
        yield stores
        for store in stores:
            await store.close()


async def test_concurrent_hits_through_two_replicas_are_all_recorded(
    replicas: tuple[KubeStore, KubeStore],
) -> None:
    first, second = replicas
    await first.record_hit(HIT)
    await second.record_hit(HIT)  # first's cached copy of the ledger is now stale: its next write is a 409
    results = await asyncio.gather(
        *(
            store.record_hit(replace(HIT, received_at=1001.0 + i))
            for i in range(40)
            for store in (first, second)
        )
    )
    assert [r.outcome for r in results].count("accepted") == 80
    pending = await first.pending_intents(TARGET)
    assert len(pending) == 82 and len({p.hit_id for p in pending}) == 82
    assert [p.seq for p in pending] == list(range(1, 83))
    assert CountingClient.conflicts > 0


async def test_an_idempotency_key_repeated_through_the_other_replica_is_a_duplicate(
    replicas: tuple[KubeStore, KubeStore],
) -> None:
    first, second = replicas
    await first.record_hit(HIT)  # warms first's cache, which the next write makes stale
    original = await second.record_hit(replace(HIT, idempotency_key="alert-7", received_at=1001.0))
    repeat = await first.record_hit(replace(HIT, idempotency_key="alert-7", received_at=1002.0))
    assert (repeat.outcome, repeat.hit_id) == ("duplicate", original.hit_id)
    assert len(await first.pending_intents(TARGET)) == 2


async def test_the_rate_limit_holds_across_replicas(replicas: tuple[KubeStore, KubeStore]) -> None:
    first, second = replicas
    limited = replace(HIT, rate_limit=RateLimit(requests=2, per_seconds=60.0))
    await first.record_hit(limited)
    await second.record_hit(limited)
    with pytest.raises(HitRateLimited) as refused:
        await first.record_hit(replace(limited, received_at=1001.0))
    assert refused.value.retry_after == pytest.approx(29.0)


async def test_the_cooldown_holds_across_replicas(replicas: tuple[KubeStore, KubeStore]) -> None:
    first, second = replicas
    await first.record_hit(replace(HIT, cooldown=30.0))
    result = await second.record_hit(replace(HIT, cooldown=30.0, received_at=1010.0))
    assert result.outcome == "cooldown"


async def test_a_rate_limited_hit_does_not_fail_the_hits_written_with_it(
    replicas: tuple[KubeStore, KubeStore],
) -> None:
    first, _ = replicas
    limit = RateLimit(requests=1, per_seconds=60.0)
    other = replace(HIT, receiver="shop/web-down", receiver_uid="uid-2")
    results = await asyncio.gather(
        first.record_hit(replace(HIT, rate_limit=limit)),
        first.record_hit(replace(HIT, rate_limit=limit, received_at=1000.5)),
        first.record_hit(other),
        return_exceptions=True,
    )
    assert [type(r).__name__ for r in results] == ["HitResult", "HitRateLimited", "HitResult"]


async def test_a_hit_recorded_while_a_fold_commits_stays_pending(
    replicas: tuple[KubeStore, KubeStore],
) -> None:
    folder, listener = replicas
    first = await listener.record_hit(HIT)
    [pending] = await folder.pending_intents(TARGET)
    second = await listener.record_hit(replace(HIT, received_at=1001.0))  # folder's copy is now stale
    await folder.commit_fold(TARGET, 2, [FoldStep(pending.seq, first.hit_id, 1, 2, False)])
    assert [p.hit_id for p in await folder.pending_intents(TARGET)] == [second.hit_id]
    state = await folder.get_target(TARGET)
    assert state is not None and (state.desired, state.converged) == (2, False)


async def test_the_ledger_lives_in_the_operator_namespace_under_a_stable_name(
    kube: KubeEmulator, replicas: tuple[KubeStore, KubeStore]
) -> None:
    await replicas[0].record_hit(HIT)
    obj = kube.objects["webhook-service.dev/v1/intentledgers", NS, ledger_name(TARGET)]
    assert obj["spec"] == {"target": TARGET}
    # A DNS-1123 label (target ids hold ':', '/' and '@'), and one per target.
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", ledger_name(TARGET))
    assert ledger_name(TARGET) != ledger_name("scaleService:1a5/1s8")


async def test_an_unreachable_api_server_answers_store_unavailable() -> None:
    async with aiohttp.ClientSession() as session:
        store = KubeStore(KubeClient(session, "http://127.0.0.1:9", {}), NS)
        await store.open()
        with pytest.raises(StoreUnavailable):
            await store.record_hit(HIT)


async def test_a_closed_store_refuses_hits(replicas: tuple[KubeStore, KubeStore]) -> None:
    await replicas[0].close()
    with pytest.raises(StoreUnavailable):
        await replicas[0].record_hit(HIT)


def stored_ledger(kube: KubeEmulator) -> ledgers.Ledger:
    """The target's ledger as the API server holds it."""
    led: ledgers.Ledger = kube.objects["webhook-service.dev/v1/intentledgers", NS, ledger_name(TARGET)].raw[
        "ledger"
    ]
    return led


@pytest.fixture
async def timed(kube: KubeEmulator) -> AsyncIterator[tuple[KubeStore, FakeClock]]:
    """One store whose clock (used for folds, resyncs and warnings) the test moves."""
    kube.add_namespaces(NS)
    clock = FakeClock(HIT.received_at)
    async with aiohttp.ClientSession() as session:
        store = KubeStore(KubeClient(session, str(kube.url).rstrip("/"), {}), NS, clock=clock)
        await store.open()
        yield store, clock
        await store.close()


async def test_hits_over_the_pending_cap_are_refused_and_the_rest_recorded(
    timed: tuple[KubeStore, FakeClock], monkeypatch: pytest.MonkeyPatch
) -> None:
    store, _ = timed
    monkeypatch.setattr(ledgers, "MAX_PENDING", 3)
    results = await asyncio.gather(
        *(store.record_hit(replace(HIT, received_at=1000.0 + i)) for i in range(5)), return_exceptions=True
    )
    assert [type(r).__name__ for r in results] == ["HitResult"] * 3 + ["LedgerFull"] * 2
    assert len(await store.pending_intents(TARGET)) == 3


async def test_a_hit_that_would_take_the_ledger_over_its_size_cap_is_refused(
    kube: KubeEmulator, timed: tuple[KubeStore, FakeClock], monkeypatch: pytest.MonkeyPatch
) -> None:
    store, _ = timed
    await store.record_hit(HIT)
    key = ("webhook-service.dev/v1/intentledgers", NS, ledger_name(TARGET))
    room = 500  # bytes: a few more pending intents, not six
    monkeypatch.setattr(
        ledgers, "MAX_LEDGER_BYTES", ledgers.encoded_size(kube.objects[key].raw["ledger"]) + room
    )
    results = await asyncio.gather(
        *(store.record_hit(replace(HIT, received_at=1001.0 + i)) for i in range(6)), return_exceptions=True
    )
    refused = [r for r in results if isinstance(r, LedgerFull)]
    assert 0 < len(refused) < 6
    stored = stored_ledger(kube)
    assert ledgers.encoded_size(stored) <= ledgers.MAX_LEDGER_BYTES
    assert len(stored["pending"]) == 1 + 6 - len(refused)


async def test_a_full_ledger_is_logged_once_a_minute(
    timed: tuple[KubeStore, FakeClock], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    store, clock = timed
    monkeypatch.setattr(ledgers, "MAX_PENDING", 0)
    for step in (0.0, 30.0, 31.0):
        clock.advance(step)
        with pytest.raises(LedgerFull):
            await store.record_hit(HIT)
    warnings = [r for r in caplog.records if r.levelname == "WARNING" and TARGET in r.getMessage()]
    assert len(warnings) == 2


async def test_a_full_ledger_posts_one_warning_event_a_minute_on_the_refused_receiver(
    kube: KubeEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    kube.add_namespaces(NS, "shop")
    monkeypatch.setattr(ledgers, "MAX_PENDING", 0)
    clock = FakeClock(HIT.received_at)
    async with aiohttp.ClientSession() as session:
        client = KubeClient(session, str(kube.url).rstrip("/"), {})
        notice = functools.partial(backlog_full_event, client)
        store = KubeStore(client, NS, clock=clock, on_full=notice)
        await store.open()
        for step in (0.0, 30.0):
            clock.advance(step)
            with pytest.raises(LedgerFull):
                await store.record_hit(HIT)

        async def events() -> list[KubeObject]:
            return await client.list(EVENTS.within("shop"))

        async def two_events() -> list[KubeObject]:
            posted = await events()
            return posted if len(posted) == 2 else []

        found: list[KubeObject] = await until(events, what="the Warning Event")
        clock.advance(31.0)  # a minute after the first: told again
        with pytest.raises(LedgerFull):
            await store.record_hit(HIT)
        both: list[KubeObject] = await until(two_events, what="a second Event")
        await store.close()
    assert [e["reason"] for e in both] == ["TargetBacklogFull"] * 2
    [event] = found
    assert (event["type"], event["reason"]) == ("Warning", "TargetBacklogFull")
    involved = event["involvedObject"]
    assert (involved["kind"], involved["name"], involved["uid"]) == ("Receiver", "web-up", HIT.receiver_uid)
    assert TARGET in event["message"]


async def test_a_ledger_with_nothing_left_is_deleted_by_the_resync(
    timed: tuple[KubeStore, FakeClock],
) -> None:
    store, clock = timed
    await store.record_hit(replace(HIT, disposition="ignored", intent=None))
    clock.advance(DAY)
    assert await store.targets_with_work() == []
    assert await store.get_target(TARGET) is not None  # the idempotency window is still open
    clock.advance(1.0)
    assert await store.targets_with_work() == []
    assert await store.get_target(TARGET) is None


async def test_a_ledger_with_pending_intents_is_kept_however_old(timed: tuple[KubeStore, FakeClock]) -> None:
    store, clock = timed
    await store.record_hit(HIT)
    clock.advance(30 * DAY)
    assert await store.targets_with_work() == [TARGET]
    assert len(await store.pending_intents(TARGET)) == 1


class RacingClient(KubeClient):
    """Has a hit recorded, through another store, right before each deletion it sends."""

    other: KubeStore

    async def delete(self, ref: Ref, *, resource_version: str | None = None) -> None:
        await self.other.record_hit(replace(HIT, received_at=HIT.received_at + 2 * DAY))
        await super().delete(ref, resource_version=resource_version)


async def test_a_ledger_written_after_the_resync_read_it_is_not_deleted(
    kube: KubeEmulator, timed: tuple[KubeStore, FakeClock]
) -> None:
    other, clock = timed
    await other.record_hit(replace(HIT, disposition="ignored", intent=None))
    clock.advance(DAY + 1)
    async with aiohttp.ClientSession() as session:
        client = RacingClient(session, str(kube.url).rstrip("/"), {})
        client.other = other
        folder = KubeStore(client, NS, clock=clock)
        await folder.open()
        assert await folder.targets_with_work() == []
        assert [p.receiver for p in await folder.pending_intents(TARGET)] == [HIT.receiver]
        await folder.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def test_a_ledger_filled_while_cattle_is_down_drains_once_it_is_back(
    kube: KubeEmulator, timed: tuple[KubeStore, FakeClock], monkeypatch: pytest.MonkeyPatch
) -> None:
    store, _ = timed
    monkeypatch.setattr(ledgers, "MAX_PENDING", 20)
    port = free_port()  # nothing listens there yet: Cattle is down
    cattle_back = asyncio.Event()
    retries: list[float] = []

    async def sleep(delay: float) -> None:
        retries.append(delay)
        await cattle_back.wait()

    accepted = []
    for i in range(25):
        try:
            accepted.append((await store.record_hit(replace(HIT, received_at=1000.0 + i))).hit_id)
        except LedgerFull:
            break
    assert len(accepted) == 20
    full = ledgers.encoded_size(stored_ledger(kube))
    async with aiohttp.ClientSession() as session:
        reconciler = Reconciler(
            store=store,
            drivers=load_drivers(),
            ctx=DriverContext(
                cattle=CattleClient(
                    session,
                    base_url=f"http://127.0.0.1:{port}/v2-beta",
                    access_key=None,
                    secret_key=None,
                    timeout=5,
                    metrics=Metrics(),
                ),
                confirm_timeout=5,
                poll_interval=0.01,
            ),
            metrics=Metrics(),
            backoff=Backoff(base=0.01, cap=0.1),
            resync_interval=3600,
            sleep=sleep,
        )
        reconciler.wake(TARGET)
        await until(lambda: bool(retries))
        service = SeedService(id="1s7", name="web", stack_id="1st1", scale=1)
        seed = SandboxSeed(projects=(SeedProject(id="1a5", services=(service,)),))
        runner = await run_sandbox("127.0.0.1", port, seed, SandboxOptions(transition_ms=0))
        try:
            cattle_back.set()
            await reconciler.idle()
            assert runner.app[SANDBOX_STATE].service("1a5", "1s7").scale == 21
        finally:
            await reconciler.stop()
            await runner.cleanup()
    assert await store.pending_intents(TARGET) == []
    hits = (await store.read_status()).last_hits
    assert hits[HIT.receiver].hit_id == accepted[-1] and hits[HIT.receiver].intent_state == "folded"
    assert ledgers.encoded_size(stored_ledger(kube)) < full


async def test_status_merges_every_ledgers_recent_hits_newest_first_up_to_its_cap(
    timed: tuple[KubeStore, FakeClock], monkeypatch: pytest.MonkeyPatch
) -> None:
    store, _ = timed
    monkeypatch.setattr(kube_store, "RECENT_HITS", 3)
    other = "scaleService:1a5/1s8"
    results = [
        await store.record_hit(replace(HIT, received_at=1000.0 + i, target_id=TARGET if i % 2 else other))
        for i in range(4)
    ]
    recent = (await store.read_status()).recent_hits
    assert [(r.hit_id, r.target_id) for r in recent] == [
        (results[3].hit_id, TARGET),
        (results[2].hit_id, other),
        (results[1].hit_id, TARGET),
    ]


async def test_a_ledger_written_before_the_history_still_reads(
    kube: KubeEmulator, timed: tuple[KubeStore, FakeClock]
) -> None:
    store, _ = timed
    await store.record_hit(HIT)
    stored = stored_ledger(kube)
    for key in ("history", "recentHits", "latestIntent"):
        del stored[key]  # type: ignore[misc]
    status = await store.read_status()
    assert (status.history, status.recent_hits, status.latest_intents) == ({}, [], {})
    assert [t.state for t in status.targets] == ["new"]
    await store.commit_fold(TARGET, 2, [])
    assert [(p.desired, p.converged) for p in (await store.read_status()).history[TARGET]] == [(2, False)]
