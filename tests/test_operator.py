"""Operator mode, end to end in one process: the real kopf operator, the informer, the listener and
the reconciler against the Kubernetes emulator (``kube`` fixture), scaling the Cattle sandbox and
emulated Deployments. Nothing of the operator is patched; time is real but every wait is bounded.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import kopf
import pytest
from aiohttp import web

from controller.drivers import load_drivers
from controller.kube.client import EVENTS, LEDGERS, RECEIVERS, SECRETS, KubeClient, KubeObject, Ref
from controller.kube.errors import KubeNotFound
from controller.metrics import Metrics
from controller.operator.app import Operator, informing, operator
from controller.operator.informer import ReceiverInformer
from controller.operator.keys import add_key, load_or_create_keyring
from controller.receiver_set import ReceiverSet
from controller.receivers.schema import ReceiverSchema
from controller.sandbox.app import SandboxOptions, run_sandbox
from controller.sandbox.seed import SandboxSeed
from controller.settings import Settings
from controller.store.kube import KubeStore, ledger_name
from controller.tokens import TokenVerifier
from controller.wiring import wire
from tests import toolbox
from tests.specs import SCALE_WEB_UP, receiver_object, receiver_spec

NS = "webhook-service"
APP_NS = "shop"

pytestmark = pytest.mark.e2e


async def until(check: Callable[[], Awaitable[Any]], within: float = 20.0, what: str = "condition") -> Any:
    """Poll an async check; an object not there yet (``KeyError``, ``LookupError``) is "not yet"."""
    return await toolbox.until(check, within, what, ignoring=(KeyError, LookupError))


def receiver(name: str, **spec: Any) -> KubeObject:
    return receiver_object(name, APP_NS, receiver_spec("scaleService", SCALE_WEB_UP, **spec))


class World:
    """The emulated cluster, the sandbox and a running operator, with the steps tests take."""

    def __init__(self, kube: Any, client: KubeClient, op: Operator, cattle_url: str) -> None:
        self.kube = kube
        self.client = client
        self.op = op
        self.cattle_url = cattle_url

    @property
    def listener(self) -> str:
        return f"http://127.0.0.1:{self.op.port}/v1-webhooks/endpoint"

    async def apply(self, obj: KubeObject) -> KubeObject:
        return await self.client.create(RECEIVERS.within(APP_NS), obj)

    async def receiver(self, name: str) -> KubeObject:
        return await self.client.get(RECEIVERS.named(name, APP_NS))

    async def patch(self, name: str, patch: dict[str, Any]) -> KubeObject:
        return await self.client.patch(RECEIVERS.named(name, APP_NS), patch)

    async def secret(self, name: str) -> dict[str, str]:
        obj = await self.client.get(SECRETS.named(f"{name}-trigger", APP_NS))
        return {k: base64.b64decode(v).decode() for k, v in obj["data"].items()}

    async def ready(self, name: str) -> dict[str, Any] | None:
        status = (await self.receiver(name)).get("status") or {}
        ready = next((c for c in status.get("conditions") or [] if c["type"] == "Ready"), None)
        return ready if ready is not None and ready["status"] == "True" else None

    async def hit(self, token: str, **headers: str) -> tuple[int, dict[str, Any]]:
        async with (
            aiohttp.ClientSession() as session,
            session.post(self.listener, params={"key": token}, headers=headers) as response,
        ):
            return response.status, await response.json()

    async def scale(self, service: str = "1s7") -> int:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{self.cattle_url}/projects/1a5/services/{service}") as response,
        ):
            return int((await response.json())["scale"])

    async def granted(self, name: str) -> str:
        """Wait until the receiver is Ready and every part agrees; its current token."""
        await until(lambda: self.ready(name), what=f"{name} Ready")
        token = (await until(lambda: self.secret(name), what=f"Secret {name}-trigger"))["token"]
        await until(lambda: self._accepts(name), what=f"{name} in the listener's receiver set")
        return str(token)

    async def _accepts(self, name: str) -> bool:
        active = self.op.receiver_set.get(f"{APP_NS}/{name}")
        status = (await self.receiver(name)).get("status") or {}
        return active is not None and active.jti == status.get("tokenId")


@pytest.fixture
def sandbox_seed() -> SandboxSeed | None:
    """The sandbox's world: its default one here; a module that reuses ``world`` may override this."""
    return None


@pytest.fixture
async def cattle(sandbox_seed: SandboxSeed | None) -> AsyncIterator[str]:
    runner: web.AppRunner = await run_sandbox("127.0.0.1", 0, sandbox_seed, SandboxOptions(transition_ms=10))
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/v2-beta"
    finally:
        await runner.cleanup()


def operator_settings(cattle: str) -> Settings:
    return Settings(
        listen_host="127.0.0.1",
        listen_port=0,
        public_url="http://webhook.example:8085",
        cattle_url=cattle,
        namespace=NS,
        resync_interval=2.0,
        key_refresh_interval=0.2,
        identity="test-replica",
        backoff_base=0.05,
        backoff_cap=0.5,
    )


@pytest.fixture
async def world(kube: Any, cattle: str) -> AsyncIterator[World]:
    kube.add_namespaces(NS, APP_NS)
    info = kopf.ConnectionInfo(server=str(kube.url).rstrip("/"))
    settings = operator_settings(cattle)
    client = KubeClient.from_connection(info)
    try:
        async with operator(settings, info) as op:
            yield World(kube, client, op, cattle)
    finally:
        await client.close()


async def test_an_applied_receiver_gets_a_secret_with_a_working_url_and_is_ready(world: World) -> None:
    await world.apply(receiver("web-up"))
    token = await world.granted("web-up")
    secret = await world.secret("web-up")
    assert secret["url"].startswith("http://webhook.example:8085/v1-webhooks/endpoint?key=")
    assert token in secret["url"] and "projectId=1a5" in secret["url"]
    status = (await world.receiver("web-up"))["status"]
    assert "url" not in status and token not in str(status)
    assert status["secretName"] == "web-up-trigger" and status["target"] == "scaleService:1a5/1s7"
    code, body = await world.hit(token)
    assert (code, body["outcome"]) == (200, "accepted")


async def test_the_trigger_secret_is_owned_by_its_receiver(world: World) -> None:
    created = await world.apply(receiver("web-up"))
    await world.granted("web-up")
    secret = await world.client.get(SECRETS.named("web-up-trigger", APP_NS))
    [owner] = secret["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"], owner["uid"]) == ("Receiver", "web-up", created["metadata"]["uid"])


async def test_a_hit_is_stored_in_the_api_and_scales_the_cattle_service(world: World) -> None:
    await world.apply(receiver("web-up"))
    token = await world.granted("web-up")
    before = await world.scale()
    code, body = await world.hit(token, **{"Idempotency-Key": "alert-1"})
    assert code == 200
    ledger = await world.client.get(LEDGERS.named(ledger_name("scaleService:1a5/1s7"), NS))
    assert ledger["ledger"]["receivers"][f"{APP_NS}/web-up"]["lastHit"]["hit"] == body["hit"]
    await until(lambda: _equals(world.scale(), before + 1), what="Cattle scaled up by one")
    status = await until(lambda: _status_with(world, "web-up", "scale"), what="status shows the scale")
    assert status["lastHit"]["hit"] == body["hit"]


async def test_editing_the_amount_keeps_the_url(world: World) -> None:
    await world.apply(receiver("web-up"))
    token = await world.granted("web-up")
    await world.patch("web-up", {"spec": {"scaleServiceConfig": {"amount": 3}}})
    await until(lambda: _observed(world, "web-up", 2), what="the edit handled")
    assert (await world.secret("web-up"))["token"] == token
    code, _ = await world.hit(token)
    assert code == 200


async def test_bumping_the_token_generation_changes_the_url_and_the_old_one_gets_403(world: World) -> None:
    await world.apply(receiver("web-up"))
    old = await world.granted("web-up")
    await world.patch("web-up", {"metadata": {"annotations": {"webhook-service.dev/token-generation": "2"}}})
    new = await until(lambda: _new_token(world, "web-up", old), what="a new token")
    await until(lambda: _accepts_token(world, new), what="the new token accepted")
    code, body = await world.hit(old)
    assert (code, body["code"]) == (403, "token_superseded")


async def test_a_granted_receiver_carries_no_finalizer(world: World) -> None:
    await world.apply(receiver("web-up"))
    await world.granted("web-up")
    assert not (await world.receiver("web-up"))["metadata"].get("finalizers")


async def test_deleting_a_receiver_removes_it_at_once_with_its_secret_and_revokes_its_token(
    world: World,
) -> None:
    await world.apply(receiver("web-up"))
    token = await world.granted("web-up")
    await world.client.delete(RECEIVERS.named("web-up", APP_NS))
    assert await _gone(world, "web-up")  # no finalizer to wait for
    with pytest.raises(KubeNotFound):
        await world.secret("web-up")  # garbage-collected through its owner reference
    await until(lambda: _revoked(world, token), what="the token revoked")


async def test_a_finalizer_left_by_an_earlier_version_is_removed(world: World) -> None:
    obj = receiver("web-up")
    obj["metadata"]["finalizers"] = ["webhook-service.dev/revoke-token"]
    await world.apply(obj)
    await world.granted("web-up")
    await until(lambda: _no_finalizers(world, "web-up"), what="the old finalizer removed")


def foreign_secret(name: str) -> KubeObject:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": APP_NS, "labels": {"owner": "someone-else"}},
        "data": {"token": base64.b64encode(b"theirs").decode()},
    }


async def _taken(world: World, name: str) -> dict[str, Any] | None:
    status = (await world.receiver(name)).get("status") or {}
    issued = next((c for c in status.get("conditions") or [] if c["type"] == "TokenIssued"), None)
    return status if issued is not None and issued["reason"] == "SecretNameTaken" else None


async def test_a_receiver_whose_secret_name_is_taken_gets_no_token_a_condition_and_an_event(
    world: World,
) -> None:
    theirs = await world.client.create(SECRETS.within(APP_NS), foreign_secret("web-up-trigger"))
    await world.apply(receiver("web-up"))
    status = await until(lambda: _taken(world, "web-up"), what="TokenIssued=False SecretNameTaken")
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "SecretNameTaken")
    assert status.get("tokenId") is None and "web-up-trigger" in ready["message"]
    [event] = await until(lambda: _events(world, "web-up", "SecretNameTaken"), what="a Warning Event")
    assert event["type"] == "Warning"
    assert world.op.receiver_set.get(f"{APP_NS}/web-up") is None
    assert await world.client.get(SECRETS.named("web-up-trigger", APP_NS)) == theirs


async def test_a_foreign_secret_is_left_untouched_through_update_and_delete_of_the_receiver(
    world: World,
) -> None:
    theirs = await world.client.create(SECRETS.within(APP_NS), foreign_secret("web-up-trigger"))
    await world.apply(receiver("web-up"))
    await until(lambda: _taken(world, "web-up"), what="the name reported taken")
    await world.patch("web-up", {"spec": {"scaleServiceConfig": {"amount": 3}}})
    await until(lambda: _observed(world, "web-up", 2), what="the update handled")
    await world.client.delete(RECEIVERS.named("web-up", APP_NS))
    assert await _gone(world, "web-up")
    assert await world.client.get(SECRETS.named("web-up-trigger", APP_NS)) == theirs


async def test_a_receiver_gets_its_token_once_a_taken_secret_name_is_freed(world: World) -> None:
    await world.client.create(SECRETS.within(APP_NS), foreign_secret("web-up-trigger"))
    await world.apply(receiver("web-up"))
    await until(lambda: _taken(world, "web-up"), what="the name reported taken")
    await world.client.delete(SECRETS.named("web-up-trigger", APP_NS))
    await world.granted("web-up")  # by the next resync, with no change to the Receiver


async def test_an_invalid_spec_is_not_ready_with_a_reason_and_an_event(world: World) -> None:
    bad = receiver("web-up")
    bad["spec"]["scaleServiceConfig"].update(min=5, max=2)
    await world.apply(bad)

    async def not_ready() -> dict[str, Any] | None:
        status = (await world.receiver("web-up")).get("status") or {}
        ready = next((c for c in status.get("conditions") or [] if c["type"] == "Ready"), None)
        return ready if ready is not None and ready["status"] == "False" else None

    ready = await until(not_ready, what="Ready=False")
    assert ready["reason"] == "InvalidSpec" and "max (2) must be >= min (5)" in ready["message"]
    events = await until(lambda: _events(world, "web-up", "InvalidSpec"), what="an InvalidSpec Event")
    assert events[0]["type"] == "Warning"
    assert world.op.receiver_set.get(f"{APP_NS}/web-up") is None


async def test_scale_workload_scales_a_deployment_through_its_scale_subresource(world: World) -> None:
    world.kube.objects["apps/v1/deployments", APP_NS, "api"] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "api", "namespace": APP_NS, "uid": "dep-uid", "resourceVersion": "1"},
        "spec": {"replicas": 2},
    }
    workload = {"kind": "Deployment", "name": "api", "action": "up", "amount": 2, "min": 1, "max": 3}
    obj = receiver("api-up", scaleWorkloadConfig=workload)
    obj["spec"]["driver"] = "scaleWorkload"
    del obj["spec"]["scaleServiceConfig"]
    await world.apply(obj)
    token = await world.granted("api-up")
    code, _ = await world.hit(token)
    assert code == 200

    async def replicas() -> int:
        return int(world.kube.objects["apps/v1/deployments", APP_NS, "api"]["spec"]["replicas"])

    await until(lambda: _equals(replicas(), 3), what="replicas clamped to max 3")


async def test_a_forward_post_receiver_is_ready_and_forwards_through_the_shared_cattle(world: World) -> None:
    obj = receiver("relay", forwardPostConfig={"projectId": "1a5", "serviceName": "web", "port": 80})
    obj["spec"]["driver"] = "forwardPost"
    del obj["spec"]["scaleServiceConfig"]
    await world.apply(obj)
    token = await world.granted("relay")
    status = (await world.receiver("relay"))["status"]
    assert (status["target"], status["action"]) == (
        "forwardPost:1a5/web:80",
        "forward each hit (synchronous pass-through)",
    )
    code, echo = await world.hit(token)
    assert (code, echo["method"], echo["path"]) == (200, "POST", "/")


async def test_a_workload_managed_by_an_hpa_is_not_ready_and_refuses_hits(world: World) -> None:
    world.kube.objects["apps/v1/deployments", APP_NS, "api"] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "api", "namespace": APP_NS, "uid": "dep-uid", "resourceVersion": "1"},
        "spec": {"replicas": 2},
    }
    world.kube.objects["autoscaling/v2/horizontalpodautoscalers", APP_NS, "api"] = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "api", "namespace": APP_NS, "uid": "hpa-uid", "resourceVersion": "1"},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "api"}},
    }
    workload = {"kind": "Deployment", "name": "api", "action": "up", "amount": 1, "min": 1, "max": 5}
    obj = receiver("api-up", scaleWorkloadConfig=workload)
    obj["spec"]["driver"] = "scaleWorkload"
    del obj["spec"]["scaleServiceConfig"]
    await world.apply(obj)

    async def refused() -> dict[str, Any] | None:
        active = world.op.receiver_set.get(f"{APP_NS}/api-up")
        return None if active is None or active.refusal is None else {"refusal": active.refusal}

    await until(refused, what="the receiver refusing hits")
    status = (await world.receiver("api-up"))["status"]
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "HorizontalPodAutoscalerConflict")
    token = (await world.secret("api-up"))["token"]
    code, body = await world.hit(token)
    assert (code, body["code"]) == (409, "receiver_not_ready")
    assert "HorizontalPodAutoscaler api" in body["message"]


class Replica:
    """A second replica's listener: its own client, store, informer and keys read from the API."""

    def __init__(self, url: str, receiver_set: ReceiverSet) -> None:
        self.url = url
        self.receiver_set = receiver_set


@contextlib.asynccontextmanager
async def second_listener(world: World) -> AsyncIterator[Replica]:
    client = KubeClient.from_connection(kopf.ConnectionInfo(server=str(world.kube.url).rstrip("/")))
    receiver_set = ReceiverSet()
    drivers = load_drivers()
    informer = ReceiverInformer(client, receiver_set, drivers, ReceiverSchema.load())
    wiring = wire(
        world.op.settings,
        store=KubeStore(client, NS),
        receiver_set=receiver_set,
        verifier=TokenVerifier(await load_or_create_keyring(client, NS)),
        drivers=drivers,
        metrics=Metrics(),
        kube=client,
        wake=lambda _target: None,
        startup=[informing(informer)],
    )
    try:
        async with wiring.serving() as runner:
            port = runner.addresses[0][1]
            yield Replica(f"http://127.0.0.1:{port}/v1-webhooks/endpoint", receiver_set)
    finally:
        await client.close()


async def _registered(replica: Replica, name: str) -> bool:
    return replica.receiver_set.get(f"{APP_NS}/{name}") is not None


async def _equals(value: Awaitable[int], expected: int) -> bool:
    return await value == expected


async def _status_with(world: World, name: str, field: str) -> dict[str, Any] | None:
    status = (await world.receiver(name)).get("status") or {}
    return status if field in status and status[field].get("observed") is not None else None


async def _observed(world: World, name: str, generation: int) -> bool:
    return bool(((await world.receiver(name)).get("status") or {}).get("observedGeneration") == generation)


async def _new_token(world: World, name: str, old: str) -> str | None:
    token = (await world.secret(name))["token"]
    return token if token != old else None


async def _accepts_token(world: World, token: str) -> bool:
    code, _ = await world.hit(token, **{"Idempotency-Key": "probe"})
    return code == 200


async def _gone(world: World, name: str) -> bool:
    try:
        await world.receiver(name)
    except KubeNotFound:
        return True
    return False


async def _revoked(world: World, token: str) -> bool:
    code, body = await world.hit(token)
    return (code, body.get("code")) == (403, "token_revoked")


async def _no_finalizers(world: World, name: str) -> bool:
    return not (await world.receiver(name))["metadata"].get("finalizers")


async def _events(world: World, name: str, reason: str) -> list[KubeObject]:
    events = await world.client.list(EVENTS.within(APP_NS))
    return [copy.deepcopy(e) for e in events if e["involvedObject"]["name"] == name and e["reason"] == reason]


async def test_two_listeners_writing_intents_for_one_receiver_concurrently_lose_none(world: World) -> None:
    obj = receiver("web-up")
    obj["spec"]["scaleServiceConfig"]["max"] = 1000
    await world.apply(obj)
    token = await world.granted("web-up")
    before = await world.scale()
    async with second_listener(world) as other:
        await until(lambda: _registered(other, "web-up"), what="the second listener's receiver set")
        urls = [world.listener, other.url]
        per_listener = 25

        async def fire(session: aiohttp.ClientSession, url: str, i: int) -> int:
            headers = {"Idempotency-Key": f"{url}-{i}"}
            async with session.post(url, params={"key": token}, headers=headers) as response:
                return response.status

        async with aiohttp.ClientSession() as session:
            codes = await asyncio.gather(
                *(fire(session, url, i) for url in urls for i in range(per_listener))
            )
    assert codes.count(200) == 2 * per_listener
    await until(
        lambda: _equals(world.scale(), before + 2 * per_listener), within=60, what="every hit applied"
    )


async def test_a_receiver_with_cattle_secret_ref_scales_through_that_cattle(world: World) -> None:
    await world.client.create(
        SECRETS.within(APP_NS),
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "rancher", "namespace": APP_NS},
            "data": {
                key: base64.b64encode(value.encode()).decode()
                for key, value in {"url": world.cattle_url, "accessKey": "a", "secretKey": "s"}.items()
            },
        },
    )
    await world.apply(receiver("web-up", cattleSecretRef={"name": "rancher"}))
    token = await world.granted("web-up")
    status = (await world.receiver("web-up"))["status"]
    assert status["target"] == f"scaleService:1a5/1s7@{APP_NS}/rancher"
    before = await world.scale()
    code, _ = await world.hit(token)
    assert code == 200
    await until(lambda: _equals(world.scale(), before + 1), what="Cattle scaled through the Secret's URL")


async def test_a_missing_cattle_secret_fails_the_hit_and_says_so_in_status(world: World) -> None:
    await world.apply(receiver("web-up", cattleSecretRef={"name": "absent"}))
    token = await world.granted("web-up")
    code, _ = await world.hit(token)
    assert code == 200

    async def unreachable() -> dict[str, Any] | None:
        status = (await world.receiver("web-up")).get("status") or {}
        reachable = next((c for c in status.get("conditions") or [] if c["type"] == "TargetReachable"), None)
        return reachable if reachable is not None and reachable["status"] == "False" else None

    condition = await until(unreachable, what="TargetReachable=False")
    assert f"Secret {APP_NS}/absent does not exist" in condition["message"]
    assert (await world.receiver("web-up"))["status"]["lastHit"]["error"] == condition["message"]
    [event] = await until(lambda: _events(world, "web-up", "HitFailed"), what="a HitFailed Event")
    assert event["type"] == "Warning" and condition["message"] in event["message"]


async def test_a_rotated_key_signs_new_tokens_while_existing_urls_keep_working(world: World) -> None:
    await world.apply(receiver("web-up"))
    old = await world.granted("web-up")
    old_kid = (await world.receiver("web-up"))["status"]["tokenKid"]
    new_kid = await add_key(world.client, NS)
    assert new_kid > old_kid
    await asyncio.sleep(0.6)  # a few key refresh intervals: every part now holds both keys
    code, _ = await world.hit(old)
    assert code == 200
    await world.patch("web-up", {"metadata": {"annotations": {"webhook-service.dev/token-generation": "2"}}})
    new = await until(lambda: _new_token(world, "web-up", old), what="a new token")
    await until(lambda: _accepts_token(world, new), what="the new token accepted")
    assert (await world.receiver("web-up"))["status"]["tokenKid"] == new_kid


async def test_an_unreachable_target_makes_the_receiver_not_ready_yet_its_hits_are_still_accepted(
    world: World,
) -> None:
    await world.apply(receiver("web-up", cattleSecretRef={"name": "absent"}))
    token = await world.granted("web-up")
    code, _ = await world.hit(token)
    assert code == 200

    async def not_ready() -> dict[str, Any] | None:
        status = (await world.receiver("web-up")).get("status") or {}
        ready = next((c for c in status.get("conditions") or [] if c["type"] == "Ready"), None)
        return ready if ready is not None and ready["status"] == "False" else None

    ready = await until(not_ready, what="Ready=False")
    assert ready["reason"] == "TargetError" and f"Secret {APP_NS}/absent" in ready["message"]
    code, _ = await world.hit(token, **{"Idempotency-Key": "second"})
    assert code == 200


async def delete_namespace_contents(world: World, namespace: str) -> None:
    """What the API server's namespace deletion does: delete every object in it, each as by a DELETE."""
    for (resource, object_namespace, name), obj in list(world.kube.objects.items()):
        if object_namespace == namespace and not obj.deleted:
            ref = Ref(resource.group, resource.version, resource.plural).named(name, namespace)
            with contextlib.suppress(KubeNotFound):
                await world.client.delete(ref)


async def test_an_uninstall_that_stops_the_operator_first_leaves_nothing_hanging(
    kube: Any, cattle: str
) -> None:
    """``kubectl delete -k manifests/``: the operator's Deployment goes first; then the CRDs (which
    delete every Receiver and IntentLedger) and the namespaces, Receivers' included, with no operator
    left to remove a finalizer."""
    kube.add_namespaces(NS, APP_NS)
    info = kopf.ConnectionInfo(server=str(kube.url).rstrip("/"))
    client = KubeClient.from_connection(info)
    try:
        async with operator(operator_settings(cattle), info) as op:
            world = World(kube, client, op, cattle)
            await world.apply(receiver("web-up"))
            await world.apply(receiver("web-down"))
            token = await world.granted("web-up")
            await world.granted("web-down")
            code, _ = await world.hit(token)
            assert code == 200
            await until(lambda: client.list(LEDGERS.within(NS)), what="a ledger written")
        for collection in (RECEIVERS, LEDGERS):
            for obj in await client.list(collection):
                await client.delete(collection.named(obj["metadata"]["name"], obj["metadata"]["namespace"]))
        for namespace in (APP_NS, NS):
            await delete_namespace_contents(world, namespace)
        left = [key for key, obj in kube.objects.items() if key[1] in (APP_NS, NS) and not obj.deleted]
        assert left == []
    finally:
        await client.close()
