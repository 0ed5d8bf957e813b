"""The scaleHost driver against the Cattle sandbox (hosts that provision and evacuate over time), through
the real client; the partial-failure and concurrency tests go through the real reconciler and store."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any, cast

import aiohttp
import pytest

from controller.backoff import Backoff
from controller.cattle.client import CattleClient
from controller.cattle.errors import CattleBusy
from controller.cattle.shapes import CattleHost
from controller.drivers import load_drivers
from controller.drivers.base import ConfirmTimeout, DriverContext, TargetRefused
from controller.drivers.scale_host import (
    DRIVER,
    clone_body,
    clone_template,
    delete_option,
    name_prefix,
    next_names,
)
from controller.manifest import ReceiverSpec
from controller.metrics import Metrics
from controller.model import Problem, Receiver, ScaleIntent, Target
from controller.reconciler import Reconciler
from controller.sandbox.app import SANDBOX_STATE, SandboxOptions, run_sandbox
from controller.sandbox.seed import SandboxSeed, SeedHost, SeedProject
from controller.sandbox.state import SandboxHost, SandboxState
from controller.store.base import HitRequest
from controller.store.sqlite import SqliteStore

DO = {"image": "ubuntu-16-04-x64", "region": "nyc3", "size": "2gb"}
SEED = SandboxSeed(projects=(SeedProject(id="1a5", hosts=(
    SeedHost(id="1h1", name="worker-1", labels={"role": "worker", "zone": "a", "io.rancher.host.os": "linux"},
             driver="do", config=DO),
    SeedHost(id="1h2", name="worker-2", labels={"role": "worker", "zone": "a"}, driver="do", config=DO),
    SeedHost(id="1h3", name="worker-3", labels={"role": "worker", "zone": "b"}, driver="do",
             config={**DO, "region": "ams3"}),
    SeedHost(id="1h4", name="edge-1", labels={"role": "edge"}),
    SeedHost(id="1h5", name="edge-2", labels={"role": "edge"}),
    SeedHost(id="1h6", name="worker-7", labels={"role": "batch"}),  # another group, same name prefix
)),))  # fmt: skip


@dataclass
class World:
    sandbox: SandboxState
    ctx: DriverContext

    def hosts(self) -> list[SandboxHost]:
        return list(self.sandbox.project("1a5").hosts.values())

    def leaving(self) -> list[str]:
        """Evacuated hosts: apply returns once they left the group, maybe before Cattle removed them."""
        return [h.name for h in self.hosts() if h.state in ("removing", "removed")]

    def names(self, *states: str) -> list[str]:
        return sorted(h.name for h in self.sandbox.hosts("1a5") if not states or h.state in states)


MakeWorld = Callable[..., Awaitable[World]]


@pytest.fixture
async def make_world() -> AsyncIterator[MakeWorld]:
    runners: list[Any] = []
    async with aiohttp.ClientSession() as session:

        async def make(seed: SandboxSeed = SEED, confirm_timeout: float = 5, **options: Any) -> World:
            options.setdefault("transition_ms", 30)
            runner = await run_sandbox("127.0.0.1", 0, seed, SandboxOptions(**options))
            runners.append(runner)
            port = runner.addresses[0][1]
            cattle = CattleClient(
                session, base_url=f"http://127.0.0.1:{port}/v2-beta", access_key=None, secret_key=None
            )
            ctx = DriverContext(
                cattle=cattle, confirm_timeout=confirm_timeout, poll_interval=0.01, poll_max=0.05
            )
            return World(runner.app[SANDBOX_STATE], ctx)

        yield make
    for runner in runners:
        await runner.cleanup()


def spec(selector: dict[str, str], action: str = "up", **config: Any) -> ReceiverSpec:
    body = {"projectId": "1a5", "hostSelector": selector, "action": action, "amount": 1, "min": 0, "max": 10}
    return cast(ReceiverSpec, {"driver": "scaleHost", "scaleHostConfig": {**body, **config}})


def group(selector: dict[str, str], action: str = "up", **config: Any) -> Target:
    return DRIVER.target(spec(selector, action, **config), "default")


WORKERS = {"role": "worker"}


def receiver(receiver_spec: ReceiverSpec, name: str = "workers-down") -> Receiver:
    return Receiver(
        namespace="default",
        name=name,
        driver="scaleHost",
        spec=receiver_spec,
        target=DRIVER.target(receiver_spec, "default"),
    )


def test_the_first_down_receiver_by_name_decides_the_delete_option() -> None:
    up = receiver(spec(WORKERS, "up"), "a-up")
    least = receiver(spec(WORKERS, "down", deleteOption="leastRecent"), "b-down")
    most = receiver(spec(WORKERS, "down", deleteOption="mostRecent"), "c-down")
    assert delete_option([most, up, least]) == "leastRecent"
    assert delete_option([up]) == "mostRecent"
    assert delete_option([]) == "mostRecent"


# -- spec and target


def test_the_driver_is_loaded_by_name() -> None:
    assert load_drivers()["scaleHost"] is DRIVER


def test_max_below_min_is_a_problem() -> None:
    problems = DRIVER.check(spec(WORKERS, min=5, max=2))
    assert problems == [Problem("spec.scaleHostConfig.max", "max (2) must be >= min (5)")]


def test_delete_option_only_for_action_down() -> None:
    assert DRIVER.check(spec(WORKERS, "up", deleteOption="leastRecent")) == [
        Problem("spec.scaleHostConfig.deleteOption", "only for action down")
    ]
    assert DRIVER.check(spec(WORKERS, "down", deleteOption="leastRecent")) == []


def test_target_key_is_the_project_and_the_sorted_selector() -> None:
    target = group({"zone": "a", "role": "worker"})
    assert target.id == "scaleHost:1a5/role=worker,zone=a"
    assert dict(target.claims) == {"projectId": "1a5", "hostSelector": "role=worker,zone=a"}


def test_target_key_round_trips_odd_labels_and_a_secret() -> None:
    with_secret = cast(
        ReceiverSpec, {**spec({"a,b": "x=y@z", "tier": "web"}), "cattleSecretRef": {"name": "cattle"}}
    )
    target = DRIVER.target(with_secret, "shop")
    assert target.claims["cattleSecretRef"] == "shop/cattle"
    assert DRIVER.target_from_key(target.key) == target


def test_up_and_down_receivers_of_a_group_share_one_target() -> None:
    assert group(WORKERS, "up").id == group(WORKERS, "down", deleteOption="leastRecent").id


# -- observe and apply


async def test_group_is_the_hosts_matching_every_selector_pair(make_world: MakeWorld) -> None:
    world = await make_world()
    assert await DRIVER.observe(group(WORKERS), world.ctx) == 3
    assert await DRIVER.observe(group({"role": "worker", "zone": "a"}), world.ctx) == 2
    assert await DRIVER.observe(group({"role": "worker", "zone": "c"}), world.ctx) == 0


async def test_up_clones_config_and_labels_of_the_oldest_driver_host_with_continued_names(
    make_world: MakeWorld,
) -> None:
    world = await make_world()

    size = await DRIVER.apply(group(WORKERS), 5, world.ctx)

    assert size == 5
    new = {h.name: h for h in world.hosts() if h.id not in {"1h1", "1h2", "1h3", "1h4", "1h5", "1h6"}}
    assert sorted(new) == ["worker-8", "worker-9"]  # after worker-7, though it's in another group
    for host in new.values():  # a clone of worker-1, the oldest member, without its agent's labels
        assert (host.state, host.driver, host.config) == ("active", "do", DO)
        assert host.labels == {"role": "worker", "zone": "a"}
        assert host.hostname == host.name


async def test_up_names_clones_as_rancher_did_without_domain_and_with_the_padding(
    make_world: MakeWorld,
) -> None:
    nodes = SandboxSeed(projects=(SeedProject(id="1a5", hosts=tuple(
        SeedHost(id=f"1h{n}", name=f"node{n:02d}.example.com", labels={"role": "node"}, driver="do",
                 config=DO)
        for n in (8, 9)
    )),))  # fmt: skip
    world = await make_world(nodes)

    assert await DRIVER.apply(group({"role": "node"}), 4, world.ctx) == 4

    assert world.names() == ["node08.example.com", "node09.example.com", "node10", "node11"]


async def test_up_clones_a_host_made_from_a_template_through_its_template(make_world: MakeWorld) -> None:
    templated = SandboxSeed(projects=(SeedProject(id="1a5", hosts=(
        SeedHost(id="1h1", name="gpu-1", labels={"role": "gpu"}, driver="amazonec2", host_template_id="1ht1"),
        SeedHost(id="1h2", name="gpu-2", labels={"role": "gpu"}, driver="amazonec2", config={"region": "x"}),
    )),))  # fmt: skip
    world = await make_world(templated)

    assert await DRIVER.apply(group({"role": "gpu"}), 3, world.ctx) == 3

    clone = world.sandbox.host("1a5", "1h3")
    assert (clone.name, clone.driver, clone.host_template_id, clone.config) == (
        "gpu-3",
        "amazonec2",
        "1ht1",
        None,
    )


async def test_apply_of_the_current_size_changes_nothing(make_world: MakeWorld) -> None:
    world = await make_world()
    assert await DRIVER.apply(group(WORKERS), 3, world.ctx) == 3
    assert len(world.hosts()) == 6


async def test_a_group_of_custom_hosts_cannot_grow(make_world: MakeWorld) -> None:
    world = await make_world()
    with pytest.raises(TargetRefused, match="has no machine-driver host to clone"):
        await DRIVER.apply(group({"role": "edge"}), 3, world.ctx)
    assert len(world.hosts()) == 6


async def test_a_custom_group_can_shrink(make_world: MakeWorld) -> None:
    world = await make_world()
    assert await DRIVER.apply(group({"role": "edge"}, "down"), 1, world.ctx) == 1
    assert world.leaving() == ["edge-2"]


async def test_down_removes_unhealthy_hosts_first_then_the_most_recent(make_world: MakeWorld) -> None:
    world = await make_world()
    world.sandbox.host("1a5", "1h1").agent_state = "disconnected"

    assert await DRIVER.apply(group(WORKERS, "down"), 1, world.ctx) == 1

    assert world.leaving() == ["worker-1", "worker-3"]


async def test_down_with_least_recent_removes_the_oldest_after_the_unhealthy(make_world: MakeWorld) -> None:
    world = await make_world()
    world.sandbox.host("1a5", "1h3").state = "inactive"

    down = receiver(spec(WORKERS, "down", deleteOption="leastRecent"))
    ctx = replace(world.ctx, receivers_of=lambda target_id: [down] if target_id == down.target.id else [])

    assert await DRIVER.apply(down.target, 1, ctx) == 1

    assert world.leaving() == ["worker-1", "worker-3"]


async def test_apply_times_out_when_hosts_take_longer_than_confirm_timeout(make_world: MakeWorld) -> None:
    world = await make_world(transition_ms=5_000, confirm_timeout=0.1)
    with pytest.raises(ConfirmTimeout, match="did not reach 4 hosts"):
        await DRIVER.apply(group(WORKERS), 4, world.ctx)


async def test_a_refused_create_propagates_as_its_cattle_error(make_world: MakeWorld) -> None:
    world = await make_world(fail_host_create={1}, fail_host_create_status=422)
    with pytest.raises(CattleBusy):
        await DRIVER.apply(group(WORKERS), 4, world.ctx)


# -- which host is cloned, and the names of the clones


def host(host_id: str, name: str, created: int, **fields: Any) -> CattleHost:
    return cast(CattleHost, {"id": host_id, "name": name, "hostname": name, "createdTS": created, **fields})


def test_the_oldest_clonable_member_is_the_template_whatever_its_health() -> None:
    members = [
        host("1h7", "w-3", 3000, driver="do", doConfig=DO),
        host("1h2", "w-1", 1000, driver="do", doConfig=DO, state="disconnected"),
        host("1h1", "custom", 500),  # no driver: not clonable
        host("1h5", "w-2", 2000, hostTemplateId="1ht1", driver="do", doConfig=None),
    ]
    template = clone_template(members)
    assert template is not None and template["id"] == "1h2"


def test_a_host_made_from_a_template_is_created_through_the_template_alone() -> None:
    template = host("1h5", "w-2", 2000, hostTemplateId="1ht1", driver="do", doConfig=None, labels={"a": "b"})
    assert clone_body(template, "w-3") == {
        "hostname": "w-3",
        "name": "w-3",
        "labels": {"a": "b"},
        "hostTemplateId": "1ht1",
    }


@pytest.mark.parametrize(
    ("template", "others", "expected"),
    [
        ("node01", [], ["node02", "node03"]),
        ("node09", [], ["node10", "node11"]),
        ("node99", [], ["node100", "node101"]),
        ("node01.example.com", [], ["node02", "node03"]),
        ("node01", ["node05.example.com", "nodes7", "gpu09"], ["node06", "node07"]),
        ("web", [], ["web2", "web3"]),
        ("worker-1", ["worker-007"], ["worker-008", "worker-009"]),
    ],
)
def test_clones_are_numbered_on_from_the_highest_with_its_zero_padding_and_no_domain(
    template: str, others: list[str], expected: list[str]
) -> None:
    hosts = [host("1h1", template, 1000), *(host(f"1h{i}", n, 2000) for i, n in enumerate(others, 2))]
    assert next_names(hosts, name_prefix(hosts[0]), 2) == expected


# -- through the reconciler


async def accept(store: SqliteStore, target: Target, intent: ScaleIntent, n: int = 1) -> None:
    for _ in range(n):
        await store.record_hit(HitRequest(
            receiver="default/workers", receiver_uid="u1", target_id=target.id, disposition="act",
            reason=None, intent=intent.to_json(), idempotency_key=None, dedupe_key=None, dedupe_window=0,
            cooldown=0, received_at=1_800_000_000.0,
        ))  # fmt: skip


def reconciler(store: SqliteStore, ctx: DriverContext, sleeps: list[float]) -> Reconciler:
    async def sleep(delay: float) -> None:
        sleeps.append(delay)
        await asyncio.sleep(0)

    return Reconciler(
        store=store, drivers=load_drivers(), ctx=ctx, metrics=Metrics(), backoff=Backoff(base=0.01, cap=0.01),
        resync_interval=3600, sleep=sleep,
    )  # fmt: skip


@pytest.mark.parametrize("status", [500, 422])
async def test_a_partial_failure_is_retried_and_creates_only_the_missing_hosts(
    make_world: MakeWorld, store: SqliteStore, status: int
) -> None:
    # The third of five creates fails; the retry comes while the first two are still provisioning.
    world = await make_world(fail_host_create={3}, fail_host_create_status=status, transition_ms=300)
    target, sleeps = group(WORKERS), list[float]()
    loop = reconciler(store, world.ctx, sleeps)
    await accept(store, target, ScaleIntent("up", 5, 0, 10))

    loop.wake(target.id)
    await loop.idle()

    assert len(sleeps) == 1  # one retry
    assert world.names("active") == [
        "edge-1", "edge-2", "worker-1", "worker-10", "worker-11", "worker-12", "worker-2", "worker-3",
        "worker-7", "worker-8", "worker-9",
    ]  # fmt: skip
    state = await store.get_target(target.id)
    assert state is not None and (state.desired, state.observed, state.converged) == (8, 8, True)


async def test_concurrent_up_hits_fold_to_the_exact_size(make_world: MakeWorld, store: SqliteStore) -> None:
    world = await make_world()
    target, sleeps = group(WORKERS), list[float]()
    loop = reconciler(store, world.ctx, sleeps)

    for _ in range(4):  # each wake lands while the previous pass may still be creating hosts
        await accept(store, target, ScaleIntent("up", 2, 0, 10))
        loop.wake(target.id)
        await asyncio.sleep(0.01)
    await loop.idle()

    assert await DRIVER.observe(target, world.ctx) == 10  # 3 + 4 * 2, clamped at max 10
    assert len(world.names("active")) == 13 and sleeps == []
