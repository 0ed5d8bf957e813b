"""The Kubernetes emulator (tests/kubeemu.py): the API-server semantics the operator and the store rely on.

Every test talks HTTP to the ``kube`` fixture through our own ``KubeClient``, as the product does;
raw aiohttp is used only where the client has no call for it (discovery, plain status codes).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator
from pathlib import Path
from typing import Any, cast

import aiohttp
import kopf
import pytest

from controller.kube.client import (
    DEPLOYMENTS,
    EVENTS,
    JSON_PATCH,
    LEDGERS,
    NAMESPACES,
    RECEIVERS,
    SECRETS,
    KubeClient,
    KubeObject,
    Ref,
)
from controller.kube.errors import KubeConflict, KubeInvalid, KubeNotFound, KubeUnavailable
from tests.kubeemu import SYSTEM_NAMESPACES, KubeEmulator

NS = "default"
PEERINGS = Ref("kopf.dev", "v1", "clusterkopfpeerings")


@pytest.fixture
async def client(kube: KubeEmulator) -> AsyncIterator[KubeClient]:
    async with aiohttp.ClientSession() as session:
        yield KubeClient(session, str(kube.url), {})


def ledger(name: str = "web", **state: Any) -> KubeObject:
    """An IntentLedger; ``state`` goes in its free-form ``ledger`` field, which the schema keeps whole."""
    return {
        "apiVersion": "webhook-service.dev/v1",
        "kind": "IntentLedger",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"target": "scaleService:1a5/1s7"},
        "ledger": state,
    }


def receiver(name: str = "web-up", **extra: Any) -> KubeObject:
    return {
        "apiVersion": "webhook-service.dev/v1",
        "kind": "Receiver",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"driver": "scaleService"},
        **extra,
    }


def deployment(name: str = "web", replicas: int = 2) -> KubeObject:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}}},
    }


def watching(client: KubeClient, since: str | None = None) -> contextlib.aclosing[AsyncGenerator[KubeObject]]:
    """A watch of the ledgers that is closed when the test leaves it (``KubeClient.watch`` is a generator)."""
    return contextlib.aclosing(
        cast(AsyncGenerator[KubeObject], client.watch(LEDGERS.within(NS), resource_version=since))
    )


async def take(stream: AsyncIterator[KubeObject], count: int) -> list[KubeObject]:
    return [await asyncio.wait_for(anext(stream), timeout=5) for _ in range(count)]


async def all_of(stream: AsyncIterator[KubeObject]) -> list[KubeObject]:
    """Every event until the server ends the watch."""
    return [event async for event in stream]


def uid_of(obj: KubeObject) -> dict[str, str]:
    return {"uid": obj["metadata"]["uid"]}


def names(objs: list[KubeObject]) -> list[str]:
    return sorted(o["metadata"]["name"] for o in objs)


async def ready(client: KubeClient, name: str) -> KubeObject:
    for _ in range(100):
        obj = await client.get(RECEIVERS.named(name, NS))
        if obj.get("status", {}).get("target"):
            break
        await asyncio.sleep(0.05)
    return obj


async def test_create_assigns_uid_resource_version_timestamp_and_generation(client: KubeClient) -> None:
    created = await client.create(LEDGERS.within(NS), ledger())
    meta = created["metadata"]
    assert len(meta["uid"]) == 36
    assert int(meta["resourceVersion"]) > 0
    assert meta["creationTimestamp"].endswith("Z")
    assert meta["generation"] == 1
    assert await client.get(LEDGERS.named("web", NS)) == created


async def test_resource_versions_increase_globally_across_resources(client: KubeClient) -> None:
    first = await client.create(LEDGERS.within(NS), ledger())
    second = await client.create(SECRETS.within(NS), {"metadata": {"name": "s"}, "data": {}})
    assert int(second["metadata"]["resourceVersion"]) > int(first["metadata"]["resourceVersion"])


async def test_create_with_generate_name_gets_a_generated_name(client: KubeClient) -> None:
    created = await client.create(SECRETS.within(NS), {"metadata": {"generateName": "token-"}})
    assert created["metadata"]["name"].startswith("token-")
    assert len(created["metadata"]["name"]) == len("token-") + 5


async def test_duplicate_create_is_409_already_exists(client: KubeClient) -> None:
    await client.create(LEDGERS.within(NS), ledger())
    with pytest.raises(KubeConflict) as info:
        await client.create(LEDGERS.within(NS), ledger())
    assert info.value.already_exists


async def test_patch_with_stale_resource_version_is_409_conflict_and_changes_nothing(
    client: KubeClient,
) -> None:
    created = await client.create(LEDGERS.within(NS), ledger(desired=1))
    current = await client.patch(LEDGERS.named("web", NS), {"ledger": {"desired": 2}})
    stale = {
        "metadata": {"resourceVersion": created["metadata"]["resourceVersion"]},
        "ledger": {"desired": 3},
    }
    with pytest.raises(KubeConflict) as info:
        await client.patch(LEDGERS.named("web", NS), stale)
    assert info.value.reason == "Conflict" and not info.value.already_exists
    assert "the object has been modified" in str(info.value)
    assert await client.get(LEDGERS.named("web", NS)) == current


async def test_patch_with_current_resource_version_succeeds(client: KubeClient) -> None:
    created = await client.create(LEDGERS.within(NS), ledger(desired=1))
    fresh = {
        "metadata": {"resourceVersion": created["metadata"]["resourceVersion"]},
        "ledger": {"desired": 3},
    }
    patched = await client.patch(LEDGERS.named("web", NS), fresh)
    assert patched["ledger"]["desired"] == 3


async def test_json_patch_with_failing_test_op_is_422_and_changes_nothing(client: KubeClient) -> None:
    created = await client.create(LEDGERS.within(NS), ledger())
    await client.patch(LEDGERS.named("web", NS), {"metadata": {"labels": {"a": "b"}}})
    ops = [
        {"op": "test", "path": "/metadata/resourceVersion", "value": created["metadata"]["resourceVersion"]},
        {"op": "add", "path": "/metadata/finalizers", "value": ["kopf.zalando.org/KopfFinalizerMarker"]},
    ]
    with pytest.raises(KubeInvalid):
        await client.patch(LEDGERS.named("web", NS), ops, content_type=JSON_PATCH)
    assert "finalizers" not in (await client.get(LEDGERS.named("web", NS)))["metadata"]


async def test_json_patch_applies_its_operations(client: KubeClient) -> None:
    await client.create(LEDGERS.within(NS), ledger())
    ops = [{"op": "add", "path": "/metadata/finalizers", "value": ["x"]}]
    patched = await client.patch(LEDGERS.named("web", NS), ops, content_type=JSON_PATCH)
    assert patched["metadata"]["finalizers"] == ["x"]


async def test_put_replaces_the_whole_object_and_bumps_resource_version(client: KubeClient) -> None:
    created = await client.create(LEDGERS.within(NS), ledger(desired=1, extra=True))
    body = ledger(desired=5)
    body["metadata"]["resourceVersion"] = created["metadata"]["resourceVersion"]
    replaced = await client.replace(LEDGERS.named("web", NS), body)
    assert replaced["ledger"] == {"desired": 5}
    assert replaced["metadata"]["uid"] == created["metadata"]["uid"]
    assert replaced["metadata"]["creationTimestamp"] == created["metadata"]["creationTimestamp"]
    assert int(replaced["metadata"]["resourceVersion"]) > int(created["metadata"]["resourceVersion"])


async def test_put_with_stale_resource_version_is_409_conflict(client: KubeClient) -> None:
    created = await client.create(LEDGERS.within(NS), ledger(desired=1))
    await client.patch(LEDGERS.named("web", NS), {"ledger": {"desired": 2}})
    body = ledger(desired=9)
    body["metadata"]["resourceVersion"] = created["metadata"]["resourceVersion"]
    with pytest.raises(KubeConflict):
        await client.replace(LEDGERS.named("web", NS), body)
    assert (await client.get(LEDGERS.named("web", NS)))["ledger"]["desired"] == 2


async def test_put_of_a_built_in_resource_without_resource_version_is_unconditional(
    client: KubeClient,
) -> None:
    await client.create(DEPLOYMENTS.within(NS), deployment(replicas=1))
    await client.patch(DEPLOYMENTS.named("web", NS), {"spec": {"replicas": 2}})
    replaced = await client.replace(DEPLOYMENTS.named("web", NS), deployment(replicas=9))
    assert replaced["spec"]["replicas"] == 9


async def test_put_of_a_custom_resource_without_resource_version_is_422_and_changes_nothing(
    client: KubeClient,
) -> None:
    created = await client.create(LEDGERS.within(NS), ledger(desired=1))
    with pytest.raises(KubeInvalid) as caught:
        await client.replace(LEDGERS.named("web", NS), ledger(desired=9))
    assert caught.value.status == 422 and "resourceVersion" in str(caught.value)
    assert await client.get(LEDGERS.named("web", NS)) == created


async def test_put_of_a_missing_object_is_404(client: KubeClient) -> None:
    with pytest.raises(KubeNotFound):
        await client.replace(LEDGERS.named("web", NS), ledger())


async def test_status_subresource_write_changes_only_status(client: KubeClient) -> None:
    created = await client.create(RECEIVERS.within(NS), receiver())
    patch = {"spec": {"driver": "scaleHost"}, "metadata": {"labels": {"a": "b"}}, "status": {"target": "t"}}
    patched = await client.patch(RECEIVERS.named("web-up", NS, subresource="status"), patch)
    assert patched["status"] == {"target": "t"}
    assert patched["spec"] == created["spec"]
    assert "labels" not in patched["metadata"]


async def test_main_resource_write_ignores_status(client: KubeClient) -> None:
    await client.create(RECEIVERS.within(NS), receiver())
    await client.patch(RECEIVERS.named("web-up", NS, subresource="status"), {"status": {"target": "t"}})
    patched = await client.patch(
        RECEIVERS.named("web-up", NS), {"spec": {"suspend": True}, "status": {"target": "other"}}
    )
    assert patched["spec"]["suspend"] is True
    assert patched["status"] == {"target": "t"}


async def test_create_drops_status_of_resources_with_status_subresource(client: KubeClient) -> None:
    created = await client.create(RECEIVERS.within(NS), receiver(status={"target": "t"}))
    assert "status" not in created


async def test_scale_get_answers_a_scale_of_the_workload(client: KubeClient) -> None:
    created = await client.create(DEPLOYMENTS.within(NS), deployment(replicas=3))
    scale = await client.get(DEPLOYMENTS.named("web", NS, subresource="scale"))
    assert scale["apiVersion"] == "autoscaling/v1" and scale["kind"] == "Scale"
    assert scale["metadata"]["uid"] == created["metadata"]["uid"]
    assert scale["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]
    assert scale["spec"] == {"replicas": 3}
    assert scale["status"] == {"replicas": 3, "selector": "app=web"}


async def test_scale_patch_sets_workload_replicas(client: KubeClient) -> None:
    created = await client.create(DEPLOYMENTS.within(NS), deployment(replicas=2))
    scale = await client.patch(DEPLOYMENTS.named("web", NS, subresource="scale"), {"spec": {"replicas": 5}})
    workload = await client.get(DEPLOYMENTS.named("web", NS))
    assert scale["spec"]["replicas"] == 5
    assert workload["spec"]["replicas"] == 5
    assert workload["metadata"]["generation"] == 2
    assert int(scale["metadata"]["resourceVersion"]) > int(created["metadata"]["resourceVersion"])


async def test_scale_patch_with_stale_resource_version_is_409_conflict(client: KubeClient) -> None:
    created = await client.create(DEPLOYMENTS.within(NS), deployment(replicas=2))
    await client.patch(DEPLOYMENTS.named("web", NS), {"metadata": {"labels": {"a": "b"}}})
    stale = {"metadata": {"resourceVersion": created["metadata"]["resourceVersion"]}, "spec": {"replicas": 5}}
    with pytest.raises(KubeConflict):
        await client.patch(DEPLOYMENTS.named("web", NS, subresource="scale"), stale)
    assert (await client.get(DEPLOYMENTS.named("web", NS)))["spec"]["replicas"] == 2


async def test_scale_of_a_resource_without_scale_subresource_is_404(client: KubeClient) -> None:
    await client.create(LEDGERS.within(NS), ledger())
    with pytest.raises(KubeNotFound):
        await client.get(LEDGERS.named("web", NS, subresource="scale"))


async def test_deleting_an_owner_deletes_its_dependents_cascading(client: KubeClient) -> None:
    owner = await client.create(RECEIVERS.within(NS), receiver())
    owner_ref = {"apiVersion": "webhook-service.dev/v1", "kind": "Receiver", "name": "web-up"}
    child = {"metadata": {"name": "web-up-trigger", "ownerReferences": [{**owner_ref, **uid_of(owner)}]}}
    secret = await client.create(SECRETS.within(NS), child)
    grandchild = {"metadata": {"name": "grandchild", "ownerReferences": [uid_of(secret)]}}
    await client.create(SECRETS.within(NS), grandchild)
    await client.create(SECRETS.within(NS), {"metadata": {"name": "unrelated"}})
    await client.delete(RECEIVERS.named("web-up", NS))
    assert [s["metadata"]["name"] for s in await client.list(SECRETS.within(NS))] == ["unrelated"]


async def test_dependent_with_another_live_owner_survives(client: KubeClient) -> None:
    first = await client.create(RECEIVERS.within(NS), receiver("a"))
    second = await client.create(RECEIVERS.within(NS), receiver("b"))
    child = {"metadata": {"name": "shared", "ownerReferences": [uid_of(first), uid_of(second)]}}
    await client.create(SECRETS.within(NS), child)
    await client.delete(RECEIVERS.named("a", NS))
    assert await client.get(SECRETS.named("shared", NS))


async def test_finalizers_hold_deletion_until_they_are_removed(client: KubeClient) -> None:
    await client.create(
        LEDGERS.within(NS), {**ledger(), "metadata": {**ledger()["metadata"], "finalizers": ["x"]}}
    )
    await client.delete(LEDGERS.named("web", NS))
    held = await client.get(LEDGERS.named("web", NS))
    assert held["metadata"]["deletionTimestamp"].endswith("Z")
    await client.patch(LEDGERS.named("web", NS), {"metadata": {"finalizers": None}})
    with pytest.raises(KubeNotFound):
        await client.get(LEDGERS.named("web", NS))


async def test_generation_bumps_on_spec_change_only(client: KubeClient) -> None:
    await client.create(RECEIVERS.within(NS), receiver())
    labelled = await client.patch(RECEIVERS.named("web-up", NS), {"metadata": {"labels": {"a": "b"}}})
    statused = await client.patch(
        RECEIVERS.named("web-up", NS, subresource="status"), {"status": {"target": "t"}}
    )
    respecced = await client.patch(RECEIVERS.named("web-up", NS), {"spec": {"driver": "scaleHost"}})
    assert [o["metadata"]["generation"] for o in (labelled, statused, respecced)] == [1, 1, 2]


async def test_write_that_changes_nothing_keeps_resource_version(client: KubeClient) -> None:
    created = await client.create(LEDGERS.within(NS), ledger(desired=1))
    patched = await client.patch(LEDGERS.named("web", NS), {"ledger": {"desired": 1}})
    assert patched["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]


async def test_label_selector_filters_list(client: KubeClient) -> None:
    for name, labels in [("a", {"app": "web", "tier": "x"}), ("b", {"app": "web"}), ("c", {"app": "db"})]:
        await client.create(SECRETS.within(NS), {"metadata": {"name": name, "labels": labels}})
    assert names(await client.list(SECRETS.within(NS), label_selector="app=web")) == ["a", "b"]
    assert names(await client.list(SECRETS.within(NS), label_selector="app==web,tier=x")) == ["a"]
    assert names(await client.list(SECRETS.within(NS), label_selector="app!=web")) == ["c"]
    assert names(await client.list(SECRETS.within(NS), label_selector="!tier")) == ["b", "c"]


async def test_label_selector_filters_watch(kube: KubeEmulator) -> None:
    async with aiohttp.ClientSession(str(kube.url)) as session:
        client = KubeClient(session, str(kube.url), {})
        await client.create(SECRETS.within(NS), {"metadata": {"name": "other", "labels": {"app": "db"}}})
        params = {"watch": "true", "labelSelector": "app=web"}
        async with session.get(SECRETS.within(NS).path(), params=params) as response:
            await client.create(SECRETS.within(NS), {"metadata": {"name": "mine", "labels": {"app": "web"}}})
            line = await asyncio.wait_for(response.content.readline(), timeout=5)
    assert b'"mine"' in line


async def test_field_selector_filters_list(kube: KubeEmulator, client: KubeClient) -> None:
    for name in ("a", "b"):
        await client.create(SECRETS.within(NS), {"metadata": {"name": name}})
    url = kube.url.with_path(SECRETS.path()).with_query(fieldSelector="metadata.name=b")
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        body = await response.json()
    assert names(body["items"]) == ["b"]


async def test_list_carries_the_current_resource_version(kube: KubeEmulator, client: KubeClient) -> None:
    created = await client.create(LEDGERS.within(NS), ledger())
    async with (
        aiohttp.ClientSession() as session,
        session.get(kube.url.with_path(LEDGERS.within(NS).path())) as r,
    ):
        body = await r.json()
    assert body["kind"] == "IntentLedgerList"
    assert body["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"] == kube.revision


async def test_watch_events_carry_the_new_resource_version(client: KubeClient) -> None:
    await client.create(LEDGERS.within(NS), ledger("seed"))
    async with watching(client) as stream:
        await take(stream, 1)  # the seed's ADDED: the watch is live now
        created = await client.create(LEDGERS.within(NS), ledger())
        patched = await client.patch(LEDGERS.named("web", NS), {"ledger": {"desired": 4}})
        await client.delete(LEDGERS.named("web", NS))
        events = await take(stream, 3)
    assert [e["type"] for e in events] == ["ADDED", "MODIFIED", "DELETED"]
    versions = [int(e["object"]["metadata"]["resourceVersion"]) for e in events]
    assert versions[:2] == [
        int(created["metadata"]["resourceVersion"]),
        int(patched["metadata"]["resourceVersion"]),
    ]
    assert versions[2] > versions[1]


async def test_watch_without_resource_version_starts_with_current_objects(client: KubeClient) -> None:
    await client.create(LEDGERS.within(NS), ledger("a"))
    async with watching(client) as stream:
        [event] = await take(stream, 1)
    assert event["type"] == "ADDED" and event["object"]["metadata"]["name"] == "a"


async def test_watch_from_a_resource_version_replays_only_later_events(client: KubeClient) -> None:
    first = await client.create(LEDGERS.within(NS), ledger("a"))
    await client.create(LEDGERS.within(NS), ledger("b"))
    since = first["metadata"]["resourceVersion"]
    async with watching(client, since) as stream:
        [event] = await take(stream, 1)
    assert event["type"] == "ADDED" and event["object"]["metadata"]["name"] == "b"


async def test_watch_ends_after_its_timeout_seconds(kube: KubeEmulator, client: KubeClient) -> None:
    kube.time_scale = 0.0001  # the client's timeoutSeconds=300 lasts 30 ms
    await client.create(LEDGERS.within(NS), ledger("a"))
    async with watching(client) as stream:
        events = await asyncio.wait_for(all_of(stream), timeout=5)
    assert [e["type"] for e in events] == ["ADDED"]


async def test_watch_from_a_compacted_version_gets_one_410_expired_error_and_ends(
    kube: KubeEmulator, client: KubeClient
) -> None:
    first = await client.create(LEDGERS.within(NS), ledger("a"))
    await client.create(LEDGERS.within(NS), ledger("b"))
    await kube.compact()
    async with watching(client, first["metadata"]["resourceVersion"]) as stream:
        [event] = await asyncio.wait_for(all_of(stream), timeout=5)
    assert event["type"] == "ERROR"
    assert (event["object"]["kind"], event["object"]["code"], event["object"]["reason"]) == (
        "Status",
        410,
        "Expired",
    )


async def test_watch_from_the_compaction_point_replays_later_events(
    kube: KubeEmulator, client: KubeClient
) -> None:
    await client.create(LEDGERS.within(NS), ledger("a"))
    point = kube.revision
    await kube.compact()
    await client.create(LEDGERS.within(NS), ledger("b"))
    async with watching(client, point) as stream:
        [event] = await take(stream, 1)
    assert event["type"] == "ADDED" and event["object"]["metadata"]["name"] == "b"


async def test_events_can_be_posted_and_listed(client: KubeClient) -> None:
    event = {
        "metadata": {"generateName": "web-up-"},
        "involvedObject": {"kind": "Receiver", "name": "web-up", "namespace": NS},
        "reason": "Scaled",
        "message": "scaled to 3",
        "type": "Normal",
    }
    await client.create(EVENTS.within(NS), event)
    [listed] = await client.list(EVENTS.within(NS))
    assert listed["reason"] == "Scaled" and listed["kind"] == "Event"


async def test_discovery_lists_kinds_scopes_subresources_and_verbs(kube: KubeEmulator) -> None:
    async with aiohttp.ClientSession() as session, session.get(kube.url / "apis/apps/v1") as response:
        listing = await response.json()
    resources = {r["name"]: r for r in listing["resources"]}
    assert set(resources) >= {"deployments", "deployments/status", "deployments/scale", "statefulsets"}
    assert resources["deployments"]["kind"] == "Deployment"
    assert resources["deployments"]["namespaced"] is True
    assert {"list", "watch", "patch", "update"} <= set(resources["deployments"]["verbs"])


async def test_cluster_kopf_peering_is_precreated(client: KubeClient) -> None:
    peering = await client.get(PEERINGS.named("webhook-service"))
    assert peering["kind"] == "ClusterKopfPeering" and peering["metadata"]["uid"]


async def test_objects_seeded_directly_get_server_metadata(kube: KubeEmulator, client: KubeClient) -> None:
    kube.objects["apps/v1/deployments", NS, "web"] = {"spec": {"replicas": 4}}
    fetched = await client.get(DEPLOYMENTS.named("web", NS))
    assert fetched["kind"] == "Deployment"
    assert fetched["metadata"]["name"] == "web" and fetched["metadata"]["namespace"] == NS
    assert fetched["metadata"]["uid"] and fetched["metadata"]["resourceVersion"]


async def test_namespaces_are_cluster_scoped_objects(client: KubeClient) -> None:
    await client.create(NAMESPACES, {"metadata": {"name": "team-a"}})
    assert (await client.get(NAMESPACES.named("team-a")))["kind"] == "Namespace"
    assert names(await client.list(NAMESPACES)) == sorted(["team-a", *SYSTEM_NAMESPACES])


async def test_a_create_in_a_missing_namespace_is_404_naming_the_namespace(client: KubeClient) -> None:
    with pytest.raises(KubeNotFound, match='namespaces "nowhere" not found'):
        await client.create(LEDGERS.within("nowhere"), {**ledger(), "metadata": {"name": "web"}})


async def test_a_created_namespace_takes_objects(client: KubeClient) -> None:
    await client.create(NAMESPACES, {"metadata": {"name": "team-a"}})
    created = await client.create(LEDGERS.within("team-a"), {**ledger(), "metadata": {"name": "web"}})
    assert created["metadata"]["namespace"] == "team-a"


async def test_the_system_namespaces_exist_from_the_start(client: KubeClient) -> None:
    for namespace in SYSTEM_NAMESPACES:
        await client.create(SECRETS.within(namespace), {"metadata": {"name": "s"}, "data": {}})
    assert len(await client.list(SECRETS)) == len(SYSTEM_NAMESPACES)


async def test_reaction_that_answers_a_write_leaves_the_state_untouched(
    kube: KubeEmulator, client: KubeClient
) -> None:
    await client.create(LEDGERS.within(NS), ledger(desired=1))
    kube["patch", kube.resource("webhook-service.dev/v1/intentledgers")] << 503
    with pytest.raises(KubeUnavailable):
        await client.patch(LEDGERS.named("web", NS), {"ledger": {"desired": 2}})
    assert kube.objects["webhook-service.dev/v1/intentledgers", NS, "web"]["ledger"]["desired"] == 1


async def test_sliced_reaction_answers_only_its_slice_of_requests(
    kube: KubeEmulator, client: KubeClient
) -> None:
    await client.create(LEDGERS.within(NS), ledger(desired=1))
    kube["patch"][:1] << 503
    with pytest.raises(KubeUnavailable):
        await client.patch(LEDGERS.named("web", NS), {"ledger": {"desired": 2}})
    patched = await client.patch(LEDGERS.named("web", NS), {"ledger": {"desired": 3}})
    assert patched["ledger"]["desired"] == 3


async def test_kubeconfig_logs_kopf_in_to_the_emulator(
    kubeconfig: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    info = kopf.login_with_kubeconfig(settings=kopf.OperatorSettings())
    assert info is not None
    client = KubeClient.from_connection(info)
    try:
        [peering] = await client.list(PEERINGS)
    finally:
        await client.close()
    assert peering["metadata"]["name"] == "webhook-service"


async def test_kopf_operator_handles_a_receiver_against_the_emulator(
    kubeconfig: Path, monkeypatch: pytest.MonkeyPatch, client: KubeClient
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    registry = kopf.OperatorRegistry()

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        return kopf.login_with_kubeconfig(**kwargs)

    @kopf.on.create("webhook-service.dev", "v1", "receivers", registry=registry)
    def created(patch: kopf.Patch, **_: Any) -> None:
        patch.status["target"] = "handled"

    # kopf.operator() waits 5 s on exit for every task started after it, such as the emulator's handler
    # of a keep-alive connection: let the test's client connect before the operator starts.
    await client.create(RECEIVERS.within(NS), receiver())
    stop = asyncio.Event()
    operator = asyncio.create_task(
        kopf.operator(registry=registry, clusterwide=True, peering_name="webhook-service", stop_flag=stop)
    )
    try:
        listed = await ready(client, "web-up")  # found by kopf's initial list
        await client.create(RECEIVERS.within(NS), receiver("web-down"))
        watched = await ready(client, "web-down")  # found by kopf's watch from the list's version
    finally:
        stop.set()
        await asyncio.wait_for(operator, timeout=10)
    assert listed["status"] == watched["status"] == {"target": "handled"}
    assert "kopf.zalando.org/last-handled-configuration" in watched["metadata"]["annotations"]
