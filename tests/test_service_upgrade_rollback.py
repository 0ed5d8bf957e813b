"""serviceUpgrade against the in-process sandbox, through the real reconciler and SQLite store: an
upgrade that fails in Cattle is rolled back and its hit fails with Cattle's reason."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import cast

import aiohttp
import pytest

from controller.backoff import Backoff
from controller.cattle.client import CattleClient
from controller.drivers import load_drivers
from controller.drivers.base import DriverContext
from controller.drivers.service_upgrade import DRIVER
from controller.manifest import ReceiverSpec
from controller.metrics import Metrics
from controller.reconciler import Reconciler
from controller.sandbox.app import SandboxOptions, run_sandbox
from controller.sandbox.seed import SandboxSeed, SeedProject, SeedService
from controller.store.base import HitRequest
from controller.store.sqlite import SqliteStore

PUSH = (Path(__file__).parent / "fixtures" / "registry" / "dockerhub-push.json").read_bytes()
SPEC = cast(
    ReceiverSpec,
    {
        "driver": "serviceUpgrade",
        "serviceUpgradeConfig": {
            "projectId": "1a5",
            "serviceSelector": {"app": "web"},
            "tag": "v1.*",
            "payloadFormat": "dockerhub",
            "batchSize": 1,
            "intervalMillis": 100,
            "startFirst": False,
        },
    },
)
SEED = SandboxSeed(
    projects=(
        SeedProject(
            id="1a5",
            name="Default",
            services=(
                SeedService(id="1s9", name="web", stack_id="1st1", scale=1, image="docker:acme/web:v1.4.1",
                            labels={"app": "web"}),
            ),
        ),
    )
)  # fmt: skip


@pytest.fixture
async def cattle() -> AsyncIterator[CattleClient]:
    runner = await run_sandbox(
        "127.0.0.1", 0, SEED, SandboxOptions(transition_ms=20, fail_upgrade_of={"1s9"})
    )
    try:
        async with aiohttp.ClientSession() as session:
            url = f"http://127.0.0.1:{runner.addresses[0][1]}/v2-beta"
            yield CattleClient(session, base_url=url, access_key=None, secret_key=None)
    finally:
        await runner.cleanup()


async def test_a_failed_upgrade_is_rolled_back_and_its_hit_fails_with_the_reason(
    cattle: CattleClient, store: SqliteStore
) -> None:
    decision = DRIVER.decide(SPEC, PUSH, "application/json")
    assert decision.disposition == "act" and decision.intent is not None
    target = DRIVER.target(SPEC, "default")
    result = await store.record_hit(
        HitRequest(
            receiver="default/web-deploy", receiver_uid="u1", target_id=target.id, disposition="act",
            reason=None, intent=decision.intent, idempotency_key=None, dedupe_key=None, dedupe_window=0,
            cooldown=0, received_at=1_800_000_000.0,
        )
    )  # fmt: skip
    ctx = DriverContext(cattle=cattle, poll_interval=0.01, poll_max=0.05)
    loop = Reconciler(
        store=store, drivers=load_drivers(), ctx=ctx, metrics=Metrics(), backoff=Backoff(base=0.01, cap=0.01),
        resync_interval=3600,
    )  # fmt: skip

    loop.wake(target.id)
    await loop.idle()

    service = await cattle.get_service("1a5", "1s9")
    # The rollback was started; the sandbox finishes it transition_ms later, which a busy machine can
    # outlast before this read, so "active" after it is as good (the restored image is what tells).
    assert service["state"] in ("rolling-back", "active")
    assert service["launchConfig"]["imageUuid"] == "docker:acme/web:v1.4.1"  # the previous one, restored
    last = (await store.read_status()).last_hits["default/web-deploy"]
    assert (last.hit_id, last.intent_state) == (result.hit_id, "failed")
    assert (
        last.reason is not None and "image pull failed" in last.reason and "rollback started" in last.reason
    )
