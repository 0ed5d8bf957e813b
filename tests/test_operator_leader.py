"""One leader folds, fenced: the Lease election, the reconciler it gates, and the fold the store fences.

Everything runs against the Kubernetes emulator with two stores or two electors, as two replicas
have. Time is a fake clock that the electors' injected sleep moves, so a 15 s failover takes
milliseconds; the order of two reconcilers is set with events that gate a fake scale target.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest

from controller.backoff import Backoff
from controller.drivers import load_drivers
from controller.drivers.base import DriverContext
from controller.drivers.scale_service import ScaleServiceDriver
from controller.kube.client import LEASES, KubeClient
from controller.metrics import Metrics
from controller.model import Target
from controller.operator.app import Leadership
from controller.operator.leader import LEASE_NAME, LeaderElector, LeaseTimings
from controller.reconciler import Reconciler
from controller.store.base import FoldConflict, FoldStep, HitRequest
from controller.store.kube import KubeStore
from tests import toolbox
from tests.kubeemu import KubeEmulator
from tests.test_store_kube import HIT, TARGET
from tests.toolbox import FakeClock

NS = "webhook-service"


def hit(at: float) -> HitRequest:
    return dataclasses.replace(HIT, received_at=at)


@dataclass
class Service:
    """The one scale both replicas' drivers read and set, as Cattle's service would be."""

    scale: int


@dataclass
class GatedScaleService(ScaleServiceDriver):
    """scaleService on an in-memory ``Service``; ``apply_gate``, when set, holds each apply until set."""

    service: Service = field(default_factory=lambda: Service(5))
    apply_gate: asyncio.Event | None = None
    applying: asyncio.Event = field(default_factory=asyncio.Event)

    async def observe(self, target: Target, ctx: DriverContext) -> int:
        return self.service.scale

    async def apply(self, target: Target, desired: int, ctx: DriverContext) -> int:
        self.applying.set()
        if self.apply_gate is not None:
            await self.apply_gate.wait()
        self.service.scale = desired
        return desired


class GatedStore(KubeStore):
    """A replica's store that, once, holds a pass right after it read the target's state."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.state_read = asyncio.Event()
        self.resume = asyncio.Event()

    async def get_target(self, target_id: str) -> Any:
        state = await super().get_target(target_id)
        if not self.state_read.is_set():
            self.state_read.set()
            await self.resume.wait()
        return state


def reconciler(
    store: KubeStore, driver: GatedScaleService, sleep: Callable[[float], Awaitable[None]]
) -> Reconciler:
    return Reconciler(
        store=store,
        drivers=load_drivers().replacing(driver),
        ctx=DriverContext(cattle=None),
        metrics=Metrics(),
        backoff=Backoff(base=0.01, cap=0.01),
        resync_interval=3600,
        sleep=sleep,
    )


async def first_of(*waits: Awaitable[object]) -> None:
    tasks = [asyncio.ensure_future(w) for w in waits]
    await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    for task in tasks:
        task.cancel()


@pytest.fixture
async def clients(kube: KubeEmulator) -> AsyncIterator[tuple[KubeClient, KubeClient]]:
    """Two clients with their own connection pools, as two replicas have."""
    kube.add_namespaces(NS)
    url = str(kube.url).rstrip("/")
    async with aiohttp.ClientSession() as one, aiohttp.ClientSession() as two:
        yield KubeClient(one, url, {}), KubeClient(two, url, {})


# -- the fold is fenced


async def test_a_fold_read_before_another_replicas_commit_landed_is_redone_from_fresh_state(
    clients: tuple[KubeClient, KubeClient],
) -> None:
    """B reads "converged"; A commits 6 for hit 1; hit 2 arrives; B observes 5 before A's apply lands.

    Unfenced, B folds hit 2 from 5 to 6 and the result is 6. Fenced, B's commit fails, B reads again
    once A is done, and folds hit 2 from 6 to 7.
    """
    store_a, store_b = KubeStore(clients[0], NS), GatedStore(clients[1], NS)
    for store in (store_a, store_b):
        await store.open()
    service = Service(5)
    a_lands = asyncio.Event()
    driver_a = GatedScaleService(service=service, apply_gate=a_lands)
    driver_b = GatedScaleService(service=service)
    a_done: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    b_failed = asyncio.Event()

    async def b_retries_after_a(_delay: float) -> None:
        b_failed.set()
        await a_done

    folder_a = reconciler(store_a, driver_a, asyncio.sleep)
    folder_b = reconciler(store_b, driver_b, b_retries_after_a)
    await store_a.record_hit(hit(1000.0))
    folder_b.wake(TARGET)
    await store_b.state_read.wait()  # B saw the target converged (no desired value yet)
    pass_a = asyncio.create_task(folder_a.reconcile_once(TARGET))
    await driver_a.applying.wait()  # A committed desired 6; its apply has not landed
    await store_a.record_hit(hit(1001.0))
    store_b.resume.set()  # B reads hit 2 and observes 5
    # B's commit either fails (then B waits to retry) or lands (then B applies its 6).
    await first_of(b_failed.wait(), driver_b.applying.wait())
    a_lands.set()
    a_done.set_result(await pass_a)
    await folder_b.idle()
    assert service.scale == 7
    assert await store_a.pending_intents(TARGET) == []
    for store in (store_a, store_b):
        await store.close()


async def test_a_fold_commit_after_another_replica_folded_fails(
    clients: tuple[KubeClient, KubeClient],
) -> None:
    late, leader = KubeStore(clients[0], NS), KubeStore(clients[1], NS)
    for store in (late, leader):
        await store.open()
    first = await leader.record_hit(hit(1000.0))
    [stale] = await late.pending_intents(TARGET)
    [fresh] = await leader.pending_intents(TARGET)
    await leader.commit_fold(TARGET, 6, [FoldStep(fresh.seq, first.hit_id, 5, 6, False)])
    await leader.set_observed(TARGET, 6, converged=True, error=None)
    with pytest.raises(FoldConflict):
        await late.commit_fold(TARGET, 6, [FoldStep(stale.seq, first.hit_id, 5, 6, False)])
    state = await leader.get_target(TARGET)
    assert state is not None and (state.desired, state.observed, state.converged) == (6, 6, True)


async def test_a_fold_of_a_ledger_whose_desired_value_is_unconfirmed_fails(
    clients: tuple[KubeClient, KubeClient],
) -> None:
    store = KubeStore(clients[0], NS)
    await store.open()
    first = await store.record_hit(hit(1000.0))
    [p] = await store.pending_intents(TARGET)
    await store.commit_fold(TARGET, 6, [FoldStep(p.seq, first.hit_id, 5, 6, False)])
    second = await store.record_hit(hit(1001.0))
    [p] = await store.pending_intents(TARGET)
    with pytest.raises(FoldConflict):
        await store.commit_fold(TARGET, 6, [FoldStep(p.seq, second.hit_id, 5, 6, False)])


# -- the Lease


@dataclass
class Replica:
    elector: LeaderElector
    terms: list[str] = field(default_factory=list)
    leads: asyncio.Event = field(default_factory=asyncio.Event)


def elector(
    client: KubeClient,
    identity: str,
    clock: FakeClock,
    *,
    on_stopped: Callable[[], Awaitable[None]] | None = None,
) -> Replica:
    replica: Replica

    async def started() -> None:
        replica.terms.append("started")
        replica.leads.set()

    async def stopped() -> None:
        replica.terms.append("stopped")

    replica = Replica(
        LeaderElector(client, NS, identity, on_started=started, on_stopped=on_stopped or stopped, clock=clock)
    )
    return replica


async def test_one_of_two_electors_takes_a_free_lease(clients: tuple[KubeClient, KubeClient]) -> None:
    clock = FakeClock(0.0)
    one, two = elector(clients[0], "one", clock), elector(clients[1], "two", clock)
    assert await one.elector.try_acquire_or_renew()
    assert not await two.elector.try_acquire_or_renew()
    lease = await clients[0].get(LEASES.named(LEASE_NAME, NS))
    assert lease["spec"]["holderIdentity"] == "one" and lease["spec"]["leaseDurationSeconds"] == 15


async def test_a_renewed_lease_is_not_taken_over(clients: tuple[KubeClient, KubeClient]) -> None:
    clock = FakeClock(0.0)
    one, two = elector(clients[0], "one", clock), elector(clients[1], "two", clock)
    await one.elector.try_acquire_or_renew()
    assert not await two.elector.try_acquire_or_renew()
    for _ in range(10):  # 20 s, longer than the lease, renewed every retry period
        clock.advance(2.0)
        assert await one.elector.try_acquire_or_renew()
        assert not await two.elector.try_acquire_or_renew()


async def test_another_elector_takes_over_within_the_lease_duration_once_renewals_stop(
    clients: tuple[KubeClient, KubeClient],
) -> None:
    clock = FakeClock(0.0)
    one, two = elector(clients[0], "one", clock), elector(clients[1], "two", clock)
    await one.elector.try_acquire_or_renew()
    assert not await two.elector.try_acquire_or_renew()  # two sees the lease change now
    clock.advance(14.9)
    assert not await two.elector.try_acquire_or_renew()
    clock.advance(0.2)
    assert await two.elector.try_acquire_or_renew()
    lease = await clients[1].get(LEASES.named(LEASE_NAME, NS))
    assert (lease["spec"]["holderIdentity"], lease["spec"]["leaseTransitions"]) == ("two", 1)


async def test_a_leader_that_cannot_renew_for_the_renew_deadline_stops_leading(
    kube: KubeEmulator, clients: tuple[KubeClient, KubeClient]
) -> None:
    clock = FakeClock(0.0)
    started, go, lost = asyncio.Event(), asyncio.Event(), asyncio.Event()
    lost_at: list[float] = []

    async def on_stopped() -> None:
        lost_at.append(clock())
        lost.set()

    async def sleep(delay: float) -> None:
        await go.wait()
        if lost.is_set():
            await asyncio.Event().wait()  # hold the loop still once the term ended
        clock.advance(delay)

    async def on_started() -> None:
        started.set()

    leader = LeaderElector(
        clients[0], NS, "one", on_started=on_started, on_stopped=on_stopped, clock=clock, sleep=sleep
    )
    task = asyncio.create_task(leader.run())
    await started.wait()  # acquired at 0 s
    kube["put", kube.resource("coordination.k8s.io/v1/leases")] << 503  # renewals fail from now on
    go.set()
    await lost.wait()
    assert lost_at == [LeaseTimings().renew_deadline]  # before anyone may take over (15 s)
    assert not leader.leading
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_a_leader_that_stops_releases_the_lease_for_the_next_at_once(
    clients: tuple[KubeClient, KubeClient],
) -> None:
    clock = FakeClock(0.0)
    one, two = elector(clients[0], "one", clock), elector(clients[1], "two", clock)
    task = asyncio.create_task(one.elector.run())
    await one.leads.wait()
    assert not await two.elector.try_acquire_or_renew()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert one.terms == ["started", "stopped"]
    assert await two.elector.try_acquire_or_renew()  # no wait for the lease to expire


# -- only the leader reconciles


async def test_losing_the_lease_cancels_the_reconcilers_workers_and_later_wakes_start_none(
    clients: tuple[KubeClient, KubeClient],
) -> None:
    store = KubeStore(clients[0], NS)
    await store.open()
    await store.record_hit(hit(1000.0))
    never = asyncio.Event()
    driver = GatedScaleService(apply_gate=never)
    folder = reconciler(store, driver, asyncio.sleep)
    leadership = Leadership(folder, clients[0], NS)
    await leadership.started()
    await driver.applying.wait()  # a worker is in the middle of applying
    await leadership.stopped()
    await asyncio.wait_for(folder.idle(), timeout=1)  # the worker is gone, cancelled
    folder.wake(TARGET)
    await asyncio.wait_for(folder.idle(), timeout=1)
    assert driver.service.scale == 5
    await store.close()


async def test_a_replica_that_does_not_lead_ignores_wakes(clients: tuple[KubeClient, KubeClient]) -> None:
    store = KubeStore(clients[0], NS)
    await store.open()
    await store.record_hit(hit(1000.0))
    driver = GatedScaleService()
    folder = reconciler(store, driver, asyncio.sleep)
    await folder.pause()
    folder.wake(TARGET)
    await folder.idle()
    assert driver.service.scale == 5 and len(await store.pending_intents(TARGET)) == 1
    folder.resume()
    folder.wake(TARGET)
    await folder.idle()
    assert driver.service.scale == 6
    await store.close()


async def test_the_leader_folds_a_hit_another_replica_recorded_without_waiting_for_a_resync(
    clients: tuple[KubeClient, KubeClient],
) -> None:
    leader_store, peer_store = KubeStore(clients[0], NS), KubeStore(clients[1], NS)
    for store in (leader_store, peer_store):
        await store.open()
    driver = GatedScaleService()
    leadership = Leadership(reconciler(leader_store, driver, asyncio.sleep), clients[0], NS)
    await leadership.started()  # its resync runs every hour: only the ledger watch can wake it
    await peer_store.record_hit(hit(1000.0))
    await toolbox.until(lambda: driver.service.scale == 6, 5, "the hit applied")
    await leadership.stopped()
    for store in (leader_store, peer_store):
        await store.close()


async def test_when_the_leader_freezes_the_next_one_applies_every_accepted_hit_once(
    clients: tuple[KubeClient, KubeClient],
) -> None:
    """A leader that hangs mid-apply (as a killed one would, forever): the other replica takes the Lease
    once it expires, finishes the hung leader's recorded fold and folds the rest, each hit once."""
    stores = (KubeStore(clients[0], NS), KubeStore(clients[1], NS))
    for store in stores:
        await store.open()
    clock, frozen = FakeClock(0.0), asyncio.Event()
    service, hung = Service(5), asyncio.Event()
    drivers = (GatedScaleService(service=service), GatedScaleService(service=service))

    async def sleep_of(replica: int, delay: float) -> None:
        if replica == 0 and frozen.is_set():
            await hung.wait()  # never set: the first leader renews nothing more
        await asyncio.sleep(0.001)
        clock.advance(delay / 2)  # both electors move the shared clock

    replicas = []
    for i in (0, 1):
        leadership = Leadership(reconciler(stores[i], drivers[i], asyncio.sleep), clients[i], NS)
        elector = LeaderElector(
            clients[i],
            NS,
            f"replica-{i}",
            on_started=leadership.started,
            on_stopped=leadership.stopped,
            clock=clock,
            sleep=functools.partial(sleep_of, i),
        )
        replicas.append(elector)
    first = asyncio.create_task(replicas[0].run())
    await toolbox.until(lambda: replicas[0].leading, 5, "the first leader")
    second = asyncio.create_task(replicas[1].run())
    for n in range(5):
        await stores[1].record_hit(hit(1000.0 + n))
    await toolbox.until(lambda: service.scale == 10, 5, "the first five hits applied")
    frozen.set()
    drivers[0].apply_gate = hung  # its next apply never lands
    for n in range(5, 10):
        await stores[1].record_hit(hit(1000.0 + n))
    await toolbox.until(lambda: replicas[1].leading, 5, "the second replica leading")
    await toolbox.until(lambda: service.scale == 15, 5, "every hit applied")
    assert await stores[1].pending_intents(TARGET) == []
    state = await stores[1].get_target(TARGET)
    assert state is not None and (state.desired, state.observed, state.converged) == (15, 15, True)
    for task in (first, second):
        task.cancel()
    await asyncio.gather(first, second, return_exceptions=True)
    for store in stores:
        await store.close()
