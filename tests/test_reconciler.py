"""The reconcile loop against the real SQLite store and the Cattle sandbox, through the real client.

Backoff sleeps are injected: a test sees every delay the loop asked for and can change the world
(Cattle comes back, a service stops restarting) between attempts, without waiting.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from controller.backoff import Backoff
from controller.cattle.client import CattleClient
from controller.drivers import load_drivers
from controller.drivers.base import DriverContext
from controller.metrics import Metrics
from controller.model import ScaleIntent
from controller.reconciler import Reconciler
from controller.sandbox.app import SANDBOX_STATE, SandboxOptions, SandboxState, run_sandbox
from controller.sandbox.seed import SandboxSeed, SeedProject, SeedService
from controller.store.base import FoldStep, HitRequest
from controller.store.sqlite import SqliteStore

TARGET = "scaleService:1a5/1s7"
WIDE = ScaleIntent("up", 1, 0, 10_000)


@dataclass
class Sleeps:
    delays: list[float] = field(default_factory=list)
    on_sleep: Callable[[int], object] = lambda n: None
    slept: asyncio.Event = field(default_factory=asyncio.Event)

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        self.on_sleep(len(self.delays))
        self.slept.set()
        await asyncio.sleep(0)

    async def until(self, count: int) -> None:
        while len(self.delays) < count:
            self.slept.clear()
            await self.slept.wait()


@dataclass
class World:
    store: SqliteStore
    sandbox: SandboxState
    reconciler: Reconciler
    sleeps: Sleeps
    metrics: Metrics

    def scale(self, service: str = "1s7") -> int:
        return self.sandbox.service("1a5", service).scale


def seed(scale: int) -> SandboxSeed:
    return SandboxSeed(projects=(SeedProject(id="1a5", services=(
        SeedService(id="1s7", name="web", stack_id="1st1", scale=scale),
        SeedService(id="1s8", name="agent", stack_id="1st1", scale=1,
                    labels={"io.rancher.scheduler.global": "true"}),
    )),))  # fmt: skip


async def make_world(
    tmp_path: Path,
    start_scale: int,
    *,
    keys: tuple[str, str] | None = None,
    client_keys: tuple[str, str] | None = None,
) -> AsyncIterator[World]:
    store = SqliteStore(tmp_path / "webhook.db")
    await store.open()
    options = SandboxOptions(
        transition_ms=0, access_key=keys[0] if keys else None, secret_key=keys[1] if keys else None
    )
    runner = await run_sandbox("127.0.0.1", 0, seed(start_scale), options)
    app: web.Application = runner.app
    port = runner.addresses[0][1]
    metrics = Metrics()
    async with aiohttp.ClientSession() as session:
        cattle = CattleClient(
            session,
            base_url=f"http://127.0.0.1:{port}/v2-beta",
            access_key=client_keys[0] if client_keys else None,
            secret_key=client_keys[1] if client_keys else None,
            timeout=5,
            metrics=metrics,
        )
        sleeps = Sleeps()
        reconciler = Reconciler(
            store=store,
            drivers=load_drivers(),
            ctx=DriverContext(cattle=cattle, confirm_timeout=5, poll_interval=0.01),
            metrics=metrics,
            backoff=Backoff(base=0.01, cap=0.1),
            resync_interval=3600,
            sleep=sleeps,
        )
        yield World(store, app[SANDBOX_STATE], reconciler, sleeps, metrics)
        await reconciler.stop()
    await runner.cleanup()
    await store.close()


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    async for w in make_world(tmp_path, start_scale=500):
        yield w


async def accept(store: SqliteStore, intent: ScaleIntent, target: str = TARGET, n: int = 1) -> list[str]:
    ids = []
    for _ in range(n):
        result = await store.record_hit(HitRequest(
            receiver="default/web", receiver_uid="u1", target_id=target, disposition="act", reason=None,
            intent=intent.to_json(), idempotency_key=None, dedupe_key=None, dedupe_window=0, cooldown=0,
            received_at=1_800_000_000.0,
        ))  # fmt: skip
        assert result.outcome == "accepted"
        ids.append(result.hit_id)
    return ids


async def test_ups_and_downs_fold_in_order_and_converge(world: World) -> None:
    await accept(world.store, WIDE, n=200)
    await accept(world.store, ScaleIntent("down", 1, 0, 10_000), n=100)
    world.reconciler.wake(TARGET)
    await world.reconciler.idle()
    assert world.scale() == 600
    state = await world.store.get_target(TARGET)
    assert state is not None and (state.desired, state.observed, state.converged) == (600, 600, True)
    assert await world.store.pending_intents(TARGET) == []


async def test_wakes_during_a_pass_are_not_lost(world: World) -> None:
    await accept(world.store, WIDE)
    world.reconciler.wake(TARGET)
    await asyncio.sleep(0)
    await accept(world.store, WIDE, n=5)
    world.reconciler.wake(TARGET)
    await world.reconciler.idle()
    assert world.scale() == 506


async def test_a_step_past_max_is_clamped_and_recorded(world: World) -> None:
    [hit] = await accept(world.store, ScaleIntent("up", 10, 1, 505))
    world.reconciler.wake(TARGET)
    await world.reconciler.idle()
    assert world.scale() == 505
    record = (await world.store.read_status()).last_hits["default/web"]
    assert (record.hit_id, record.before, record.after, record.clamped) == (hit, 500, 505, True)


async def test_a_desired_scale_recorded_before_a_crash_is_applied_once(world: World) -> None:
    """The crash window: the fold was recorded, the PUT never happened. A new run PUTs, never re-steps."""
    [hit] = await accept(world.store, WIDE)
    [pending] = await world.store.pending_intents(TARGET)
    await world.store.commit_fold(TARGET, 501, [FoldStep(pending.seq, hit, 500, 501, False)])
    run = asyncio.create_task(world.reconciler.run())
    for _ in range(200):
        state = await world.store.get_target(TARGET)
        if state is not None and state.converged:
            break
        await asyncio.sleep(0.01)
    run.cancel()
    await asyncio.gather(run, return_exceptions=True)
    assert world.scale() == 501


async def test_a_scale_changed_by_hand_is_the_base_of_the_next_fold(world: World) -> None:
    world.sandbox.update("1a5", "1s7", {"scale": 42})
    await accept(world.store, WIDE)
    world.reconciler.wake(TARGET)
    await world.reconciler.idle()
    assert world.scale() == 43


async def test_a_busy_service_is_retried_until_it_accepts(world: World) -> None:
    world.sandbox.set_state("1a5", "1s7", "restarting")
    world.sleeps.on_sleep = lambda n: world.sandbox.set_state("1a5", "1s7", "active") if n == 3 else None
    await accept(world.store, WIDE)
    world.reconciler.wake(TARGET)
    await world.reconciler.idle()
    assert len(world.sleeps.delays) == 3
    assert world.scale() == 501


async def test_a_vanished_service_fails_its_intents_without_retrying(world: World) -> None:
    await accept(world.store, WIDE, target="scaleService:1a5/1s99")
    world.reconciler.wake("scaleService:1a5/1s99")
    await world.reconciler.idle()
    assert world.sleeps.delays == []
    record = (await world.store.read_status()).last_hits["default/web"]
    assert record.intent_state == "failed"
    assert record.reason is not None and "not found" in record.reason.lower()
    assert await world.store.targets_with_work() == []


async def test_a_global_service_is_refused(world: World) -> None:
    await accept(world.store, WIDE, target="scaleService:1a5/1s8")
    world.reconciler.wake("scaleService:1a5/1s8")
    await world.reconciler.idle()
    record = (await world.store.read_status()).last_hits["default/web"]
    assert record.intent_state == "failed" and record.reason is not None and "global" in record.reason
    assert world.scale("1s8") == 1


async def test_rejected_credentials_are_reported_and_retried(tmp_path: Path) -> None:
    async for world in make_world(tmp_path, 3, keys=("ak", "sk"), client_keys=("ak", "wrong")):
        stop_after = 4
        await accept(world.store, WIDE)
        world.reconciler.wake(TARGET)
        await world.sleeps.until(stop_after)
        state = await world.store.get_target(TARGET)
        assert state is not None and state.last_error is not None and "credentials" in state.last_error
        errors = world.metrics.registry.get_sample_value(
            "webhook_reconcile_total", {"target": TARGET, "result": "credentials_error"}
        )
        assert errors is not None and errors >= stop_after
        assert len(await world.store.pending_intents(TARGET)) == 1  # nothing dropped
        assert world.scale() == 3


async def test_a_target_whose_first_attempt_failed_is_not_converged_and_shows_the_error(
    tmp_path: Path,
) -> None:
    async for world in make_world(tmp_path, 3, keys=("ak", "sk"), client_keys=("ak", "wrong")):
        await accept(world.store, WIDE)
        world.reconciler.wake(TARGET)
        await world.sleeps.until(1)
        state = await world.store.get_target(TARGET)
        assert state is not None and (state.converged, state.state) == (False, "error")


async def test_a_refused_target_is_left_in_error_at_its_scale(world: World) -> None:
    await accept(world.store, WIDE, target="scaleService:1a5/1s8")
    world.reconciler.wake("scaleService:1a5/1s8")
    await world.reconciler.idle()
    state = await world.store.get_target("scaleService:1a5/1s8")
    assert state is not None and (state.desired, state.converged, state.state) == (None, False, "error")
    assert await world.store.targets_with_work() == []


async def test_backoff_delays_grow(world: World) -> None:
    world.sandbox.set_state("1a5", "1s7", "restarting")
    world.sleeps.on_sleep = lambda n: world.sandbox.set_state("1a5", "1s7", "active") if n == 6 else None
    await accept(world.store, WIDE)
    world.reconciler.wake(TARGET)
    await world.reconciler.idle()
    # full jitter within [ceiling/2, ceiling], ceiling doubling from 0.01 and capped at 0.1
    assert world.sleeps.delays[0] <= 0.01 and world.sleeps.delays[-1] >= 0.05


async def test_each_folded_hit_is_logged_at_debug_with_the_scale_it_moved_from_and_to(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    [first, second] = await accept(world.store, ScaleIntent("up", 3, 0, 504), n=2)
    with caplog.at_level(logging.DEBUG, logger="controller.reconciler"):
        world.reconciler.wake(TARGET)
        await world.reconciler.idle()
    assert f"[{TARGET}] hit {first} of default/web: scale 500 -> 503" in caplog.messages
    assert f"[{TARGET}] hit {second} of default/web: scale 503 -> 504 (clamped)" in caplog.messages


async def test_a_fold_writes_one_info_line_whatever_the_number_of_hits(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    await accept(world.store, ScaleIntent("up", 1, 0, 1000), n=3)
    with caplog.at_level(logging.INFO, logger="controller.reconciler"):
        world.reconciler.wake(TARGET)
        await world.reconciler.idle()
    info = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    folds = [line for line in info if "intent" in line]
    assert folds == [f"[{TARGET}] folded 3 intent(s): scale 500 -> 503"]
