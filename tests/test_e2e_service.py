"""End to end through the real processes: ``cattle-sandbox`` and ``webhook-service run``.

Each test starts its own sandbox and service on free loopback ports with a fresh state folder,
hits trigger URLs the way curl or Alertmanager would, and reads the result back from the sandbox's
API — the same way a person would check it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.processes import (
    REPO,
    Sandbox,
    Service,
    run_cli,
    sandbox_scale,
    write_receiver,
    write_seed,
)
from tests.toolbox import until

pytestmark = pytest.mark.e2e

FIXTURES = Path(__file__).parent / "fixtures"


async def post(url: str, **kwargs: object) -> tuple[int, dict[str, object]]:
    async with aiohttp.ClientSession() as session, session.post(url, **kwargs) as answer:  # type: ignore[arg-type]
        return answer.status, await answer.json()


@pytest.fixture
def receivers(tmp_path: Path) -> Path:
    folder = tmp_path / "receivers"
    folder.mkdir()
    write_receiver(folder, "web-up", action="up")
    write_receiver(folder, "web-down", action="down")
    return folder


@pytest.fixture
def service(tmp_path: Path, receivers: Path, sandbox: Sandbox) -> Iterator[Service]:
    svc = Service(
        tmp_path, receivers=receivers, state=tmp_path / "state", cattle_url=sandbox.url
    ).start_and_wait()
    yield svc
    svc.stop()


async def test_a_hit_scales_the_service_up_by_amount(service: Service, sandbox: Sandbox) -> None:
    status, body = await post(service.trigger_url("web-up"))
    assert (status, body["outcome"], body["receiver"]) == (200, "accepted", "default/web-up")
    await until(lambda: sandbox_scale(sandbox) == 2, what="scale 2")


async def test_the_token_works_as_bearer_and_as_legacy_token_query(
    service: Service, sandbox: Sandbox
) -> None:
    url = service.trigger_url("web-up")
    token = url.split("key=")[1].split("&")[0]
    status, _ = await post(
        f"{service.base}/v1-webhooks/endpoint", headers={"Authorization": f"Bearer {token}"}
    )
    assert status == 200
    status, _ = await post(f"{service.base}/v1-webhooks/endpoint?token={token}")
    assert status == 200
    await until(lambda: sandbox_scale(sandbox) == 3, what="scale 3")


async def test_resolved_notification_after_firing_changes_nothing(service: Service, sandbox: Sandbox) -> None:
    url = service.trigger_url("web-up")
    firing = (FIXTURES / "alertmanager-0.25-firing.json").read_bytes()
    resolved = (FIXTURES / "alertmanager-0.25-resolved.json").read_bytes()
    headers = {"Content-Type": "application/json", "User-Agent": "Alertmanager/0.25.0"}
    assert (await post(url, data=firing, headers=headers))[1]["outcome"] == "accepted"
    assert (await post(url, data=resolved, headers=headers))[1]["outcome"] == "ignored"
    await until(lambda: sandbox_scale(sandbox) == 2, what="scale 2")
    await asyncio.sleep(
        1.5
    )  # a resync pass runs every second here: give a wrong extra step the chance to show
    assert sandbox_scale(sandbox) == 2


async def test_concurrent_up_and_down_hits_lose_no_increment(tmp_path: Path, receivers: Path) -> None:
    sandbox = Sandbox(tmp_path, write_seed(tmp_path / "seed500.yaml", scale=500)).start_and_wait()
    service = Service(tmp_path, receivers=receivers, state=tmp_path / "state", cattle_url=sandbox.url)
    try:
        service.start_and_wait()
        up, down = service.trigger_url("web-up"), service.trigger_url("web-down")
        connector = aiohttp.TCPConnector(limit=32)
        async with aiohttp.ClientSession(connector=connector) as session:

            async def hit(url: str) -> str:
                async with session.post(url) as answer:
                    assert answer.status == 200
                    outcome: str = (await answer.json())["outcome"]
                    return outcome

            outcomes = await asyncio.gather(*[hit(up) for _ in range(200)], *[hit(down) for _ in range(100)])
        assert set(outcomes) == {"accepted"}
        await until(lambda: sandbox_scale(sandbox) == 600, within=30, what="scale 600")
    finally:
        service.stop()
        sandbox.stop()


async def test_added_and_removed_receiver_files_take_effect_within_two_seconds(
    service: Service, receivers: Path
) -> None:
    path = write_receiver(receivers, "worker-up", service="1s8")
    await until(lambda: service.has_receiver("default/worker-up"), within=2.0, what="new receiver loaded")
    url = service.trigger_url("worker-up")
    assert (await post(url))[0] == 200
    path.unlink()
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        status, body = await post(url)
        if status == 403:
            break
        await asyncio.sleep(0.05)
    assert (status, body["code"]) == (403, "token_revoked")


async def test_intents_wait_while_cattle_is_down_and_apply_when_it_returns(
    tmp_path: Path, receivers: Path
) -> None:
    seed = write_seed(tmp_path / "seed.yaml")
    sandbox = Sandbox(tmp_path, seed).start_and_wait()
    service = Service(tmp_path, receivers=receivers, state=tmp_path / "state", cattle_url=sandbox.url)
    try:
        service.start_and_wait()
        url = service.trigger_url("web-up")
        sandbox.stop()
        for _ in range(3):
            assert (await post(url))[1]["outcome"] == "accepted"
        await asyncio.sleep(1.0)
        status = run_cli("status", "--state", str(service.state)).stdout
        assert "Unavailable" in status, status
        sandbox.start()
        sandbox.wait_http(sandbox.url)
        await until(lambda: sandbox_scale(sandbox) == 4, within=40, what="scale 4 after Cattle returned")
    finally:
        service.stop()
        sandbox.stop()


async def test_trigger_urls_survive_a_restart(tmp_path: Path, receivers: Path, sandbox: Sandbox) -> None:
    state = tmp_path / "state"
    first = Service(tmp_path, receivers=receivers, state=state, cattle_url=sandbox.url).start_and_wait()
    try:
        url = first.trigger_url("web-up")
    finally:
        first.stop()
    second = Service(tmp_path, receivers=receivers, state=state, cattle_url=sandbox.url).start_and_wait()
    try:
        assert second.trigger_url("web-up").split("?")[1] == url.split("?")[1]
        status, _ = await post(f"{second.base}/v1-webhooks/endpoint?{url.split('?')[1]}")
        assert status == 200
    finally:
        second.stop()


async def test_status_lists_receivers_targets_and_the_last_hit(service: Service, sandbox: Sandbox) -> None:
    await post(service.trigger_url("web-up"))
    await until(lambda: sandbox_scale(sandbox) == 2, what="scale 2")
    await until(
        lambda: "1->2" in run_cli("status", "--state", str(service.state)).stdout, what="status shows 1->2"
    )
    out = run_cli("status", "--state", str(service.state)).stdout
    assert "default/web-up" in out and "default/web-down" in out
    assert "scaleService:1a5/1s7" in out
    assert out.startswith("Cattle: http://127.0.0.1:")


def test_validate_accepts_the_examples_and_names_each_problem(tmp_path: Path) -> None:
    good = run_cli("validate", str(REPO / "examples" / "receivers"))
    assert good.returncode == 0, good.stdout + good.stderr
    broken = tmp_path / "broken.yaml"
    broken.write_text(
        "apiVersion: webhook-service.dev/v1\nkind: Receiver\nmetadata: {name: bad}\nspec:\n"
        "  driver: scaleService\n"
        "  scaleServiceConfig:\n"
        "    {projectId: 1a5, serviceId: 1s7, action: sideways, amount: 0, min: 5, max: 2}\n"
    )
    bad = run_cli("validate", str(broken))
    assert bad.returncode == 1
    lines = bad.stdout.strip().splitlines()
    assert any("broken.yaml[0]" in line and "spec.scaleServiceConfig.action" in line for line in lines), lines
    assert any("spec.scaleServiceConfig.amount" in line for line in lines), lines


def test_the_service_never_logs_a_token(service: Service) -> None:
    url = service.trigger_url("web-up")
    asyncio.run(post(url))
    asyncio.run(post(url.replace("key=", "key=x")))
    token = url.split("key=")[1].split("&")[0]
    service.stop()
    assert token not in service.output()
    assert token[-20:] not in service.output()
