"""How a label selector matches labels (scaleHost's hostSelector, serviceUpgrade's serviceSelector), and
that matching leaves the canonical selector text, hence existing target keys, as it was."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import pytest

from controller.cattle.client import CattleClient
from controller.drivers._selector import labels_match, parse_selector, selector_text
from controller.drivers.base import DriverContext
from controller.drivers.scale_host import DRIVER as SCALE_HOST
from controller.drivers.service_upgrade import ServiceUpgradeDriver
from controller.manifest import ReceiverSpec
from controller.sandbox.seed import SandboxSeed, SeedHost, SeedProject, SeedService
from controller.store.base import PendingIntent
from tests.sandbox_harness import Client, MakeClient, json_of
from tests.toolbox import FakeClock

PUSH = (Path(__file__).parent / "fixtures" / "registry" / "dockerhub-push.json").read_bytes()


@pytest.mark.parametrize(
    ("labels", "selector", "wanted"),
    [
        ({"app": "web"}, {"app": "web"}, True),
        ({"app": "web", "tier": "front"}, {"app": "web"}, True),
        ({"app": "web"}, {"app": "web", "tier": "front"}, False),
        ({"app": "api"}, {"app": "web"}, False),
        ({"App": "Web"}, {"app": "web"}, True),
        ({"app": "web"}, {"APP": "WEB"}, True),
        ({"Zone": "EU-West"}, {"zONE": "eu-west"}, True),
        ({"app": "web"}, {"app": ""}, True),
        ({"APP": "anything"}, {"app": ""}, True),
        ({"tier": "front"}, {"app": ""}, False),
        ({"app": ""}, {"app": "web"}, False),
        ({"app": "web", "App": "api"}, {"app": "api"}, True),
        ({}, {"app": "web"}, False),
        (None, {"app": "web"}, False),
    ],
)
def test_labels_match_a_selector(
    labels: dict[str, str] | None, selector: dict[str, str], wanted: bool
) -> None:
    assert labels_match(labels, selector) is wanted


def test_a_lower_case_selector_keeps_its_canonical_text() -> None:
    assert selector_text({"zone": "a", "role": "worker"}) == "role=worker,zone=a"


def test_a_selector_text_keeps_the_case_and_empty_values_it_was_written_with() -> None:
    selector = {"Role": "Worker", "gpu": ""}
    assert selector_text(selector) == "Role=Worker,gpu="
    assert parse_selector(selector_text(selector)) == selector


# -- against the sandbox: each driver selects with a selector written in another case


@pytest.fixture
def seed() -> SandboxSeed:
    return SandboxSeed(
        projects=(
            SeedProject(
                id="1a5",
                services=(
                    SeedService(id="1s7", name="web", stack_id="1st1", image="docker:acme/web:v1.4.1",
                                labels={"App": "Web"}),
                ),
                hosts=(
                    SeedHost(id="1h1", name="worker-1", labels={"Role": "Worker", "zone": "A"}),
                    SeedHost(id="1h2", name="worker-2", labels={"role": "worker", "zone": "b"}),
                    SeedHost(id="1h3", name="edge-1", labels={"role": "edge"}),
                ),
            ),
        )
    )  # fmt: skip


def context(client: Client) -> DriverContext:
    base_url = str(client.make_url("/v2-beta"))
    return DriverContext(
        cattle=CattleClient(client.session, base_url=base_url, access_key=None, secret_key=None)
    )


def receiver(driver: str, config: dict[str, Any]) -> ReceiverSpec:
    return cast(ReceiverSpec, {"driver": driver, f"{driver}Config": {"projectId": "1a5", **config}})


async def test_a_mixed_case_host_selector_selects_its_hosts(make_client: MakeClient) -> None:
    client = await make_client()
    spec = receiver(
        "scaleHost", {"hostSelector": {"ROLE": "worker", "Zone": ""}, "action": "up", "amount": 1}
    )
    target = SCALE_HOST.target(spec, "default")

    assert await SCALE_HOST.observe(target, context(client)) == 2


async def test_a_mixed_case_service_selector_selects_its_service(
    make_client: MakeClient, clock: FakeClock
) -> None:
    client = await make_client()

    async def let_time_pass(seconds: float) -> None:
        clock.now += max(seconds, 1.0)

    driver = ServiceUpgradeDriver(sleep=let_time_pass, clock=lambda: clock.now)
    spec = receiver(
        "serviceUpgrade", {"serviceSelector": {"app": "WEB"}, "tag": "v1.*", "payloadFormat": "dockerhub"}
    )
    decision = driver.decide(spec, PUSH, "application/json")
    assert decision.intent is not None
    intent = PendingIntent(seq=1, hit_id="h1", receiver="default/web", intent=decision.intent)

    [step] = await driver.apply_intents(driver.target(spec, "default"), [intent], context(client))

    assert step.after == 1
    _, web = await json_of(client, "GET", "/v2-beta/projects/1a5/services/1s7")
    assert (web["state"], web["launchConfig"]["imageUuid"]) == ("active", "docker:acme/web:v1.4.2")
