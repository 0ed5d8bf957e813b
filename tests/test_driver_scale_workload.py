"""The scaleWorkload driver against the ``kube`` fixture (tests/kubeemu.py: a real /scale subresource).

Workloads and HPAs are created through the client, as the API server would see them; assertions
read them back the same way, so the tests don't depend on how the emulator stores objects.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, cast

import aiohttp
import pytest

from controller.cattle.client import CattleClient
from controller.drivers import load_drivers
from controller.drivers.base import DriverContext, TargetRefused
from controller.drivers.contract import Driver
from controller.drivers.scale_workload import DRIVER, hpa_conflict
from controller.kube.client import DEPLOYMENTS, HPAS, STATEFULSETS, KubeClient, Ref
from controller.manifest import ReceiverSpec
from controller.model import Problem, ScaleIntent, Target
from tests.kubeemu import KubeEmulator

NS = "shop"


@pytest.fixture
async def api(kube: KubeEmulator) -> AsyncIterator[KubeClient]:
    kube.add_namespaces(NS)
    async with aiohttp.ClientSession() as session:
        yield KubeClient(session, str(kube.url), {})


@pytest.fixture
async def ctx(api: KubeClient) -> AsyncIterator[DriverContext]:
    async with aiohttp.ClientSession() as session:
        # Never called: scaleWorkload talks to Kubernetes only.
        cattle = CattleClient(
            session, base_url="http://cattle.invalid/v2-beta", access_key=None, secret_key=None
        )
        yield DriverContext(cattle=cattle, kube=api)


def spec(kind: str = "Deployment", name: str = "web", **config: Any) -> ReceiverSpec:
    body = {"kind": kind, "name": name, "action": "up", "amount": 2, "min": 1, "max": 10, **config}
    return cast(ReceiverSpec, {"driver": "scaleWorkload", "scaleWorkloadConfig": body})


def workload_target(kind: str = "Deployment", name: str = "web") -> Target:
    return DRIVER.target(spec(kind, name), NS)


async def create_workload(api: KubeClient, collection: Ref, kind: str, name: str, replicas: int) -> None:
    body = {
        "apiVersion": "apps/v1",
        "kind": kind,
        "metadata": {"name": name, "namespace": NS},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}}},
    }
    await api.create(collection.within(NS), body)


async def create_hpa(api: KubeClient, name: str, kind: str, target_name: str) -> None:
    body = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": kind, "name": target_name},
            "minReplicas": 1,
            "maxReplicas": 5,
        },
    }
    await api.create(HPAS.within(NS), body)


async def stored_replicas(api: KubeClient, collection: Ref, name: str) -> int:
    workload = await api.get(collection.named(name, NS))
    return int(workload["spec"]["replicas"])


def test_target_key_round_trips() -> None:
    target = workload_target("StatefulSet", "db")

    assert target.key == f"{NS}/StatefulSet/db"
    assert target.id == f"scaleWorkload:{NS}/StatefulSet/db"
    assert target.project_id is None
    assert dict(target.claims) == {"namespace": NS, "kind": "StatefulSet", "name": "db"}
    assert DRIVER.target_from_key(target.key) == target


def test_malformed_key_is_refused() -> None:
    with pytest.raises(TargetRefused, match="malformed"):
        DRIVER.target_from_key("shop/web")


def test_max_below_min_is_a_problem() -> None:
    problems = DRIVER.check(spec(min=5, max=3))

    assert problems == [Problem("spec.scaleWorkloadConfig.max", "max (3) must be >= min (5)")]


def test_max_equal_to_min_is_fine() -> None:
    assert DRIVER.check(spec(min=3, max=3)) == []


def test_intent_carries_the_step_and_its_bounds() -> None:
    intent = DRIVER.intent(spec(action="down", amount=3, min=2, max=8))

    assert intent == ScaleIntent(action="down", amount=3, min=2, max=8)


async def test_observe_reads_replicas(api: KubeClient, ctx: DriverContext) -> None:
    await create_workload(api, DEPLOYMENTS, "Deployment", "web", replicas=3)

    assert await DRIVER.observe(workload_target(), ctx) == 3


async def test_apply_sets_replicas(api: KubeClient, ctx: DriverContext) -> None:
    await create_workload(api, DEPLOYMENTS, "Deployment", "web", replicas=3)

    assert await DRIVER.apply(workload_target(), 7, ctx) == 7
    assert await stored_replicas(api, DEPLOYMENTS, "web") == 7


async def test_apply_writes_only_the_scale_subresource(
    kube: KubeEmulator, api: KubeClient, ctx: DriverContext
) -> None:
    await create_workload(api, DEPLOYMENTS, "Deployment", "web", replicas=3)

    await DRIVER.apply(workload_target(), 5, ctx)

    patched = [request.url.path for request in kube["patch"]]
    assert patched == [f"/apis/apps/v1/namespaces/{NS}/deployments/web/scale"]
    assert not list(kube["put"])


async def test_apply_does_not_wait_for_pods(api: KubeClient, ctx: DriverContext) -> None:
    await create_workload(api, DEPLOYMENTS, "Deployment", "web", replicas=3)
    await api.patch(DEPLOYMENTS.named("web", NS, subresource="status"), {"status": {"replicas": 3}})

    assert await DRIVER.apply(workload_target(), 6, ctx) == 6  # no pod became ready, still recorded
    scale = await api.get(DEPLOYMENTS.named("web", NS, subresource="scale"))
    assert (scale["spec"]["replicas"], scale["status"]["replicas"]) == (6, 3)


async def test_apply_can_scale_to_zero(api: KubeClient, ctx: DriverContext) -> None:
    await create_workload(api, DEPLOYMENTS, "Deployment", "web", replicas=3)

    assert await DRIVER.apply(workload_target(), 0, ctx) == 0
    assert await stored_replicas(api, DEPLOYMENTS, "web") == 0


async def test_hpa_on_the_workload_refuses_observe(api: KubeClient, ctx: DriverContext) -> None:
    await create_workload(api, DEPLOYMENTS, "Deployment", "web", replicas=3)
    await create_hpa(api, "web-hpa", "Deployment", "web")

    with pytest.raises(TargetRefused) as refused:
        await DRIVER.observe(workload_target(), ctx)

    assert str(refused.value) == (
        f"Deployment {NS}/web is managed by HorizontalPodAutoscaler web-hpa; "
        "a receiver and an HPA would fight over its replicas"
    )


async def test_hpa_created_after_observe_refuses_apply(api: KubeClient, ctx: DriverContext) -> None:
    await create_workload(api, DEPLOYMENTS, "Deployment", "web", replicas=3)
    assert await DRIVER.observe(workload_target(), ctx) == 3
    await create_hpa(api, "web-hpa", "Deployment", "web")

    with pytest.raises(TargetRefused, match="HorizontalPodAutoscaler web-hpa"):
        await DRIVER.apply(workload_target(), 5, ctx)

    assert await stored_replicas(api, DEPLOYMENTS, "web") == 3


async def test_hpa_for_another_workload_does_not_refuse(api: KubeClient, ctx: DriverContext) -> None:
    await create_workload(api, DEPLOYMENTS, "Deployment", "web", replicas=3)
    await create_hpa(api, "api-hpa", "Deployment", "api")
    await create_hpa(api, "web-sts-hpa", "StatefulSet", "web")

    assert await hpa_conflict(api, NS, "Deployment", "web") is None
    assert await DRIVER.apply(workload_target(), 4, ctx) == 4


async def test_hpa_without_api_version_still_counts(api: KubeClient) -> None:
    body = {
        "metadata": {"name": "web-hpa", "namespace": NS},
        "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "maxReplicas": 5},
    }
    await api.create(HPAS.within(NS), body)

    assert await hpa_conflict(api, NS, "Deployment", "web") is not None


async def test_missing_workload_refuses(ctx: DriverContext) -> None:
    with pytest.raises(TargetRefused, match=f"Deployment {NS}/ghost not found"):
        await DRIVER.observe(workload_target(name="ghost"), ctx)


async def test_kind_without_a_scale_driver_refuses(ctx: DriverContext) -> None:
    with pytest.raises(TargetRefused, match="kind 'CronJob' is not one of Deployment, StatefulSet"):
        await DRIVER.observe(DRIVER.target_from_key(f"{NS}/CronJob/nightly"), ctx)


async def test_standalone_mode_refuses(api: KubeClient, ctx: DriverContext) -> None:
    standalone = DriverContext(cattle=ctx.cattle, kube=None)

    with pytest.raises(
        TargetRefused, match=r"needs the Kubernetes operator mode \(webhook-service operator\)"
    ):
        await DRIVER.observe(workload_target(), standalone)


async def test_statefulset_scales_too(api: KubeClient, ctx: DriverContext) -> None:
    await create_workload(api, STATEFULSETS, "StatefulSet", "db", replicas=1)
    target = workload_target("StatefulSet", "db")

    assert await DRIVER.observe(target, ctx) == 1
    assert await DRIVER.apply(target, 3, ctx) == 3
    assert await stored_replicas(api, STATEFULSETS, "db") == 3


def test_load_drivers_includes_scale_workload() -> None:
    driver: Driver = DRIVER  # mypy checks the Protocol here

    assert load_drivers()["scaleWorkload"] is driver
