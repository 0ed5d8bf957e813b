"""The serviceUpgrade driver: its rules, what it reads from a push body, and how it drives an upgrade.

The Cattle side is a small fake (``FakeCattle``) with just the methods the driver uses, moving a
service through Cattle's upgrade states one step per read; the end-to-end test against the sandbox
and the real client lives with the lead's tests.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import pytest

from controller.cattle.client import CattleClient
from controller.cattle.shapes import CattleService
from controller.drivers import load_drivers
from controller.drivers.base import ConfirmTimeout, DriverContext, TargetRefused
from controller.drivers.contract import BodyReader, Decision, IntentApplier, MalformedBody
from controller.drivers.service_upgrade import (
    DRIVER,
    HIT_LABEL,
    PULL_IMAGE_LABEL,
    ServiceUpgradeDriver,
    rancher_interval_to_millis,
)
from controller.manifest import ReceiverSpec
from controller.model import Problem
from controller.store.base import FoldStep, PendingIntent

FIXTURES = Path(__file__).parent / "fixtures" / "registry"
SELECTOR = {"app": "web", "tier": "front"}
NEW = "docker:acme/web:v1.4.2"
UPGRADED_BY_H1 = {PULL_IMAGE_LABEL: "always", HIT_LABEL: "h1"}  # the labels hit h1's upgrade adds


def spec(**config: Any) -> ReceiverSpec:
    base: dict[str, Any] = {
        "projectId": "1a5",
        "serviceSelector": dict(SELECTOR),
        "tag": "v1.*",
        "payloadFormat": "dockerhub",
    }
    return cast(ReceiverSpec, {"driver": "serviceUpgrade", "serviceUpgradeConfig": {**base, **config}})


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def service(
    service_id: str,
    image: str = "docker:acme/web:v1.3",
    labels: dict[str, str] | None = None,
    sidekicks: list[dict[str, Any]] | None = None,
    state: str = "active",
    upgraded_by: str | None = None,
) -> dict[str, Any]:
    """A service as Cattle shows it; ``upgraded_by`` names the hit whose upgrade wrote its launch config."""
    labels = dict(SELECTOR) if labels is None else labels
    if upgraded_by is not None:
        labels = {**labels, PULL_IMAGE_LABEL: "always", HIT_LABEL: upgraded_by}
    return {
        "id": service_id,
        "name": f"svc-{service_id}",
        "type": "service",
        "state": state,
        "transitioning": "no",
        "launchConfig": {
            "imageUuid": image,
            "labels": labels,
            "version": "0",
            "ports": ["80:80/tcp"],
        },
        "secondaryLaunchConfigs": sidekicks or [],
        "actions": {},
    }


@dataclass
class FakeCattle:
    """Cattle's upgrade states, one step per read: upgrading -> upgraded, finishing-upgrade -> active."""

    services: dict[str, dict[str, Any]]
    fail: set[str] = field(default_factory=set)  # services whose upgrade fails (transitioning: error)
    calls: list[tuple[str, str]] = field(default_factory=list)
    strategies: dict[str, dict[str, Any]] = field(default_factory=dict)

    async def list_services(self, project_id: str) -> list[CattleService]:
        assert project_id == "1a5"
        return [cast(CattleService, copy.deepcopy(s)) for s in self.services.values()]

    async def get_service(self, project_id: str, service_id: str) -> CattleService:
        s = self.services[service_id]
        if s["state"] == "upgrading" and service_id in self.fail:
            s.update(
                transitioning="error", transitioningMessage="image pull failed", actions={"rollback": "x"}
            )
        elif s["state"] == "upgrading":
            s.update(state="upgraded", transitioning="no")
        elif s["state"] in ("finishing-upgrade", "rolling-back"):
            s.update(state="active", transitioning="no")
        return cast(CattleService, copy.deepcopy(s))

    async def upgrade_service(
        self, project_id: str, service_id: str, strategy: dict[str, Any]
    ) -> CattleService:
        self.calls.append(("upgrade", service_id))
        self.strategies[service_id] = strategy
        s = self.services[service_id]
        assert s["state"] == "active", "Cattle refuses an upgrade outside active/inactive"
        if "launchConfig" in strategy:
            s["launchConfig"] = strategy["launchConfig"]
        by_name = {c["name"]: c for c in strategy.get("secondaryLaunchConfigs", [])}
        s["secondaryLaunchConfigs"] = [by_name.get(c["name"], c) for c in s["secondaryLaunchConfigs"]]
        s.update(state="upgrading", transitioning="yes")
        return cast(CattleService, copy.deepcopy(s))

    async def finish_upgrade(self, project_id: str, service_id: str) -> CattleService:
        self.calls.append(("finishupgrade", service_id))
        s = self.services[service_id]
        assert s["state"] == "upgraded"
        s.update(state="finishing-upgrade", transitioning="yes")
        return cast(CattleService, copy.deepcopy(s))

    async def rollback_service(self, project_id: str, service_id: str) -> CattleService:
        self.calls.append(("rollback", service_id))
        self.services[service_id].update(state="rolling-back", transitioning="yes")
        return cast(CattleService, copy.deepcopy(self.services[service_id]))


async def no_sleep(_: float) -> None:
    return None


def driver(**changes: Any) -> ServiceUpgradeDriver:
    return ServiceUpgradeDriver(sleep=no_sleep, **changes)


def ctx(cattle: FakeCattle) -> DriverContext:
    return DriverContext(cattle=cast(CattleClient, cattle))


def pending(*images: str) -> list[PendingIntent]:
    return [
        PendingIntent(
            seq=i,
            hit_id=f"h{i}",
            receiver="default/upgrade",
            intent={
                "registry": "docker.io",
                "repository": "acme/web",
                "tag": image.rpartition(":")[2],
                "image": image,
                "strategy": {"batchSize": 2, "intervalMillis": 500, "startFirst": True},
            },
        )
        for i, image in enumerate(images, start=1)
    ]


async def upgrade(cattle: FakeCattle, *images: str, **changes: Any) -> list[FoldStep]:
    d = driver(**changes)
    return await d.apply_intents(
        d.target(spec(), "default"), pending(*images or ("acme/web:v1.4.2",)), ctx(cattle)
    )


# -- the receiver


def test_the_driver_is_loaded_and_reads_bodies_and_applies_intents() -> None:
    loaded = load_drivers()["serviceUpgrade"]
    assert isinstance(loaded, BodyReader)
    assert isinstance(loaded, IntentApplier)


def test_a_valid_spec_has_no_problems() -> None:
    assert DRIVER.check(spec(batchSize=2, intervalMillis=100, tag="regex:v1\\.[0-9]+")) == []


@pytest.mark.parametrize(
    ("config", "path"),
    [
        ({"batchSize": 0}, "spec.serviceUpgradeConfig.batchSize"),
        ({"intervalMillis": 99}, "spec.serviceUpgradeConfig.intervalMillis"),
        ({"tag": "regex:v1.(["}, "spec.serviceUpgradeConfig.tag"),
        ({"payloadFormat": "quay"}, "spec.serviceUpgradeConfig.payloadFormat"),
        ({"serviceSelector": {}}, "spec.serviceUpgradeConfig.serviceSelector"),
        ({"addressType": "registry-public"}, "spec.serviceUpgradeConfig.addressType"),
    ],
)
def test_each_rule_names_its_field(config: dict[str, Any], path: str) -> None:
    [problem] = DRIVER.check(spec(**config))
    assert problem.path == path


def test_a_regex_that_does_not_compile_says_why() -> None:
    [problem] = DRIVER.check(spec(tag="regex:("))
    assert problem == Problem("spec.serviceUpgradeConfig.tag", problem.message)
    assert "not a valid regular expression" in problem.message


def test_the_target_key_is_the_project_and_the_canonical_selector() -> None:
    target = DRIVER.target(spec(serviceSelector={"tier": "front", "app": "web"}), "default")
    assert target.id == "serviceUpgrade:1a5/app=web,tier=front"
    assert dict(target.claims) == {"projectId": "1a5", "serviceSelector": "app=web,tier=front"}
    assert DRIVER.target_from_key(target.key) == target


def test_it_is_no_scale_its_intents_come_from_the_body() -> None:
    drivers = load_drivers()
    assert "serviceUpgrade" in drivers.readers and "serviceUpgrade" in drivers.appliers
    assert "serviceUpgrade" not in drivers.scalers


# -- the body


@pytest.mark.parametrize(
    ("payload_format", "name", "image", "registry"),
    [
        ("dockerhub", "dockerhub-push.json", "acme/web:v1.4.2", "docker.io"),
        ("alicloud", "alicloud-push.json", "registry.cn-hangzhou.aliyuncs.com/acme/web:v1.4.2",
         "registry.cn-hangzhou.aliyuncs.com"),
        ("azure", "azure-push.json", "acme.azurecr.io/acme/web:v1.4.2", "acme.azurecr.io"),
        ("registry", "registry-v2-envelope.json", "registry.acme.example:5000/acme/web:v1.4.2",
         "registry.acme.example:5000"),
    ],
)  # fmt: skip
def test_each_format_gives_the_pushed_image(
    payload_format: str, name: str, image: str, registry: str
) -> None:
    decision = DRIVER.decide(spec(payloadFormat=payload_format), fixture(name), "application/json")
    assert decision == Decision(
        "act",
        None,
        {
            "registry": registry,
            "repository": "acme/web",
            "tag": "v1.4.2",
            "image": image,
            "strategy": {"batchSize": 1, "intervalMillis": 2000, "startFirst": False},
        },
    )


@pytest.mark.parametrize("address_type", ["registry", "registry-internal", "registry-vpc"])
def test_an_alibaba_push_names_the_endpoint_of_the_receivers_address_type(address_type: str) -> None:
    config = spec(payloadFormat="alicloud", addressType=address_type)
    decision = DRIVER.decide(config, fixture("alicloud-push.json"), "application/json")
    assert decision.intent is not None
    assert decision.intent["image"] == f"{address_type}.cn-hangzhou.aliyuncs.com/acme/web:v1.4.2"


@pytest.mark.parametrize(("rancher", "millis"), [(2, 2000), (1, 1000), (30, 30000)])
def test_a_rancher_interval_counts_seconds_and_ours_milliseconds(rancher: int, millis: int) -> None:
    assert rancher_interval_to_millis(rancher) == millis


@pytest.mark.parametrize("tag", ["v1.4.2", "v1.*", "regex:v1\\.[0-9]+\\.[0-9]+"])
def test_exact_glob_and_regex_tags_match(tag: str) -> None:
    assert (
        DRIVER.decide(spec(tag=tag), fixture("dockerhub-push.json"), "application/json").disposition == "act"
    )


def test_a_push_of_another_tag_is_ignored_with_the_reason() -> None:
    body = json.loads(fixture("dockerhub-push.json"))
    body["push_data"]["tag"] = "v2.0"
    decision = DRIVER.decide(spec(), json.dumps(body).encode(), "application/json")
    assert decision == Decision("ignored", "tag v2.0 does not match v1.*")


def test_a_registry_envelope_without_a_tag_push_is_ignored() -> None:
    decision = DRIVER.decide(spec(payloadFormat="registry"), b'{"events": []}', "application/json")
    assert decision.disposition == "ignored"
    assert decision.reason == "the registry body reports no tag push"


def test_a_body_of_another_format_names_the_missing_field() -> None:
    with pytest.raises(MalformedBody) as raised:
        DRIVER.decide(spec(), fixture("azure-push.json"), "application/json")
    assert raised.value.field == "push_data.tag"


def test_a_body_that_is_not_json_is_malformed() -> None:
    with pytest.raises(MalformedBody) as raised:
        DRIVER.decide(spec(), b"pushed!", "text/plain")
    assert raised.value.field == "body"


# -- the upgrade


async def test_selected_services_are_upgraded_finished_and_counted() -> None:
    cattle = FakeCattle({"1s1": service("1s1"), "1s2": service("1s2")})
    steps = await upgrade(cattle)
    assert steps == [FoldStep(1, "h1", before=0, after=2, clamped=False)]
    assert cattle.calls == [
        ("upgrade", "1s1"), ("finishupgrade", "1s1"), ("upgrade", "1s2"), ("finishupgrade", "1s2"),
    ]  # fmt: skip
    assert {s["state"] for s in cattle.services.values()} == {"active"}
    assert cattle.services["1s1"]["launchConfig"]["imageUuid"] == NEW


async def test_the_strategy_carries_the_full_new_launch_config() -> None:
    cattle = FakeCattle({"1s1": service("1s1")})
    await upgrade(cattle)
    assert cattle.strategies["1s1"] == {
        "batchSize": 2,
        "intervalMillis": 500,
        "startFirst": True,
        "launchConfig": {"imageUuid": NEW, "labels": {**SELECTOR, **UPGRADED_BY_H1}, "ports": ["80:80/tcp"]},
    }


async def test_services_missing_a_selector_label_are_left_alone() -> None:
    cattle = FakeCattle({"1s1": service("1s1", labels={"app": "web"}), "1s2": service("1s2", labels={})})
    assert (await upgrade(cattle))[-1].after == 0
    assert cattle.calls == []


async def test_a_selector_selects_whatever_the_case_of_the_labels() -> None:
    cattle = FakeCattle({"1s1": service("1s1", labels={"App": "WEB", "TIER": "Front"})})
    assert (await upgrade(cattle))[-1].after == 1


async def test_a_selected_service_of_another_repository_is_left_alone() -> None:
    cattle = FakeCattle({"1s1": service("1s1", image="docker:acme/api:v1.3"), "1s2": service("1s2")})
    assert (await upgrade(cattle))[-1].after == 1
    assert ("upgrade", "1s1") not in cattle.calls


async def test_a_sidekick_selects_its_service_and_only_it_is_upgraded() -> None:
    sidekick = {"name": "web", "imageUuid": "docker:acme/web:v1.3", "labels": dict(SELECTOR)}
    main = service("1s1", image="docker:nginx:1.25", labels={}, sidekicks=[sidekick])
    cattle = FakeCattle({"1s1": main})
    await upgrade(cattle)
    strategy = cattle.strategies["1s1"]
    assert "launchConfig" not in strategy
    assert strategy["secondaryLaunchConfigs"] == [
        {**sidekick, "imageUuid": NEW, "labels": {**SELECTOR, **UPGRADED_BY_H1}}
    ]
    assert cattle.services["1s1"]["launchConfig"]["imageUuid"] == "docker:nginx:1.25"


async def test_a_service_this_hit_already_upgraded_is_finished_not_upgraded_again() -> None:
    cattle = FakeCattle({"1s1": service("1s1", image=NEW, state="upgraded", upgraded_by="h1")})
    steps = await upgrade(cattle)
    assert cattle.calls == [("finishupgrade", "1s1")]
    assert steps[-1].after == 1


async def test_a_service_still_upgrading_for_this_hit_is_waited_for() -> None:
    cattle = FakeCattle({"1s1": service("1s1", image=NEW, state="upgrading", upgraded_by="h1")})
    await upgrade(cattle)
    assert cattle.calls == [("finishupgrade", "1s1")]


async def test_a_service_at_rest_after_this_hits_upgrade_is_left_as_it_is() -> None:
    cattle = FakeCattle({"1s1": service("1s1", image=NEW, upgraded_by="h1")})
    assert (await upgrade(cattle))[-1].after == 1
    assert cattle.calls == []


async def test_a_re_push_of_the_image_a_service_runs_redeploys_it_pulling_the_image() -> None:
    cattle = FakeCattle({"1s1": service("1s1", image=NEW)})
    assert (await upgrade(cattle))[-1].after == 1
    assert cattle.calls == [("upgrade", "1s1"), ("finishupgrade", "1s1")]
    assert cattle.strategies["1s1"]["launchConfig"]["labels"][PULL_IMAGE_LABEL] == "always"


async def test_a_service_an_earlier_hit_upgraded_is_upgraded_again_for_a_new_hit() -> None:
    cattle = FakeCattle({"1s1": service("1s1", image=NEW, upgraded_by="h0")})
    await upgrade(cattle)
    assert cattle.calls == [("upgrade", "1s1"), ("finishupgrade", "1s1")]
    assert cattle.services["1s1"]["launchConfig"]["labels"][HIT_LABEL] == "h1"


async def test_an_older_upgrade_left_upgraded_is_finished_before_the_new_one() -> None:
    cattle = FakeCattle({"1s1": service("1s1", image="docker:acme/web:v1.4.1", state="upgraded")})
    await upgrade(cattle)
    assert cattle.calls == [("finishupgrade", "1s1"), ("upgrade", "1s1"), ("finishupgrade", "1s1")]


async def test_older_intents_are_superseded_by_the_newest() -> None:
    cattle = FakeCattle({"1s1": service("1s1")})
    steps = await upgrade(cattle, "acme/web:v1.4.1", "acme/web:v1.4.2")
    assert [(s.hit_id, s.after) for s in steps] == [("h1", 0), ("h2", 1)]
    assert cattle.calls.count(("upgrade", "1s1")) == 1
    assert cattle.services["1s1"]["launchConfig"]["imageUuid"] == NEW


async def test_a_failed_upgrade_is_rolled_back_and_refused() -> None:
    cattle = FakeCattle({"1s1": service("1s1")}, fail={"1s1"})
    with pytest.raises(TargetRefused, match="image pull failed; rollback started"):
        await upgrade(cattle)
    assert cattle.calls == [("upgrade", "1s1"), ("rollback", "1s1")]


async def test_an_upgrade_past_the_deadline_is_a_retryable_timeout() -> None:
    now = iter(range(100))
    cattle = FakeCattle({"1s1": service("1s1")})
    with pytest.raises(ConfirmTimeout, match="the next pass continues it"):
        await upgrade(cattle, deadline=0.5, clock=lambda: float(next(now)))
    assert cattle.calls == [("upgrade", "1s1")]
    # The next pass finds it upgrading with the new image and carries on without starting again.
    await upgrade(cattle)
    assert cattle.calls == [("upgrade", "1s1"), ("finishupgrade", "1s1")]


async def test_a_cancelled_upgrade_is_refused() -> None:
    cattle = FakeCattle({"1s1": service("1s1", image=NEW, state="canceled-upgrade")})
    with pytest.raises(TargetRefused, match="canceled-upgrade"):
        await upgrade(cattle)
