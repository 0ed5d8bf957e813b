"""The reconciler's hook for drivers that apply intents themselves (``IntentApplier``),
with a fake applier and the real SQLite store: intents stay pending until the driver is done."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from controller.backoff import Backoff
from controller.drivers.base import ConfirmTimeout, DriverContext, TargetRefused
from controller.drivers.contract import DriverSet
from controller.drivers.service_upgrade import ServiceUpgradeDriver
from controller.metrics import Metrics
from controller.model import Target
from controller.reconciler import Reconciler, Sleep
from controller.store.base import FoldStep, HitRequest, PendingIntent
from controller.store.sqlite import SqliteStore

TARGET = "serviceUpgrade:1a5/app=web"


@dataclass
class FakeApplier(ServiceUpgradeDriver):
    """Records what it was handed; fails with ``errors`` first, then upgrades ``services`` services."""

    services: int = 2
    errors: list[Exception] = field(default_factory=list)
    calls: list[list[str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__()

    async def apply_intents(
        self, target: Target, pending: Sequence[PendingIntent], ctx: DriverContext
    ) -> list[FoldStep]:
        self.calls.append([p.hit_id for p in pending])
        if self.errors:
            raise self.errors.pop(0)
        return [
            FoldStep(p.seq, p.hit_id, 0, self.services if p is pending[-1] else 0, False) for p in pending
        ]


async def no_sleep(_: float) -> None:
    await asyncio.sleep(0)


def reconciler(
    store: SqliteStore, applier: FakeApplier, *, sleep: Sleep = no_sleep, backoff: Backoff | None = None
) -> Reconciler:
    return Reconciler(
        store=store,
        drivers=DriverSet([applier]),
        ctx=DriverContext(cattle=None),
        metrics=Metrics(),
        backoff=backoff or Backoff(base=0.01, cap=0.1),
        resync_interval=3600,
        sleep=sleep,
    )


async def accept(store: SqliteStore, *images: str) -> list[str]:
    ids = []
    for image in images:
        intent: dict[str, Any] = {
            "registry": "docker.io",
            "repository": "acme/web",
            "tag": "v1",
            "image": image,
        }
        result = await store.record_hit(HitRequest(
            receiver="default/upgrade", receiver_uid="u1", target_id=TARGET, disposition="act", reason=None,
            intent=intent, idempotency_key=None, dedupe_key=None, dedupe_window=0, cooldown=0,
            received_at=1_800_000_000.0,
        ))  # fmt: skip
        ids.append(result.hit_id)
    return ids


async def test_pending_intents_are_handed_over_and_marked_done(store: SqliteStore) -> None:
    applier = FakeApplier()
    ids = await accept(store, "acme/web:v1.1", "acme/web:v1.2")
    assert await reconciler(store, applier).reconcile_once(TARGET) == "applied"
    assert applier.calls == [ids]
    assert await store.pending_intents(TARGET) == []
    state = await store.get_target(TARGET)
    assert state is not None and (state.desired, state.observed, state.converged) == (2, 2, True)
    assert (await store.read_status()).last_hits["default/upgrade"].intent_state == "folded"


async def test_intents_stay_pending_after_an_interrupted_pass_and_are_handed_over_again(
    store: SqliteStore,
) -> None:
    applier = FakeApplier(errors=[ConfirmTimeout("still upgrading")])
    [hit] = await accept(store, "acme/web:v1.1")
    with pytest.raises(ConfirmTimeout):
        await reconciler(store, applier).reconcile_once(TARGET)
    assert [p.hit_id for p in await store.pending_intents(TARGET)] == [hit]
    assert await store.targets_with_work() == [TARGET]
    # A new run (a restart) picks them up, and the driver continues.
    await reconciler(store, applier).reconcile_once(TARGET)
    assert applier.calls == [[hit], [hit]]
    assert await store.pending_intents(TARGET) == []


async def test_a_retryable_error_is_retried_until_done(store: SqliteStore) -> None:
    applier = FakeApplier(errors=[ConfirmTimeout("still upgrading")])
    await accept(store, "acme/web:v1.1")
    r = reconciler(store, applier)
    r.wake(TARGET)
    await r.idle()
    assert len(applier.calls) == 2
    assert await store.targets_with_work() == []


async def test_a_refused_upgrade_fails_its_intents_with_the_reason(store: SqliteStore) -> None:
    applier = FakeApplier(errors=[TargetRefused("service 1s1 failed to upgrade: pull failed; rolled back")])
    await accept(store, "acme/web:v1.1")
    r = reconciler(store, applier)
    r.wake(TARGET)
    await r.idle()
    hit = (await store.read_status()).last_hits["default/upgrade"]
    assert hit.intent_state == "failed"
    assert hit.reason == "service 1s1 failed to upgrade: pull failed; rolled back"
    assert await store.targets_with_work() == []


async def test_a_target_without_pending_intents_is_idle_and_never_scaled(store: SqliteStore) -> None:
    applier = FakeApplier()
    await store.commit_fold(TARGET, 1, [])  # as if a crash came before set_observed
    assert await reconciler(store, applier).reconcile_once(TARGET) == "idle"
    assert applier.calls == []
    assert await store.targets_with_work() == []
