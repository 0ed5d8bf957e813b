"""The receivers API in operator mode: Rancher's requests against the real operator (``World`` of
tests/test_operator.py: kopf, the informer and the listener against the Kubernetes emulator), whose
Cattle sandbox holds the example seed's API keys. A receiver the API creates is a Receiver object in
the Namespace labelled with its project id; the answer's URL works when it arrives and stops working
when a delete is answered.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from yarl import URL

from controller.drivers import load_drivers
from controller.kube.client import NAMESPACES, RECEIVERS, SECRETS, KubeClient
from controller.kube.errors import KubeNotFound
from controller.model import ActiveReceiver
from controller.operator.api_receivers import (
    CREATED_BY,
    CREATED_BY_LABEL,
    PROJECT_LABEL,
    KubeApiReceivers,
    receiver_object,
)
from controller.operator.informer import active_from_object
from controller.operator.trigger_secrets import secret_body
from controller.rancher.keys import NAME_ANNOTATION
from controller.receiver_set import ReceiverSet
from controller.receivers.api_store import NotSettled
from controller.receivers.schema import ReceiverSchema
from controller.sandbox.seed import SandboxSeed, load_seed
from tests import test_operator
from tests.kubeemu import KubeEmulator
from tests.test_operator import APP_NS, World, _equals, _gone, receiver, until
from tests.test_receivers_api import EXAMPLE_SEED, OWNER, READONLY, SCALE_UP

pytestmark = pytest.mark.e2e

cattle, world = test_operator.cattle, test_operator.world  # reused: pytest finds fixtures by these names

# What the Rancher Pipeline POSTs (its port is a string), to a service of the example seed.
PIPELINE = {
    "name": "pipeline-webhook",
    "driver": "forwardPost",
    "forwardPostConfig": {"projectId": "1a5", "serviceName": "web", "port": "80", "path": "/v1/webhook"},
}


@pytest.fixture
def sandbox_seed() -> SandboxSeed:
    return load_seed(EXAMPLE_SEED)


async def label(client: KubeClient, namespace: str, project_id: str = "1a5") -> None:
    """Label the Namespace for the project, creating it when the cluster does not have it yet."""
    labels = {PROJECT_LABEL: project_id}
    try:
        await client.patch(NAMESPACES.named(namespace), {"metadata": {"labels": labels}})
    except KubeNotFound:
        metadata = {"name": namespace, "labels": labels}
        await client.create(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": metadata})


async def call(
    world: World, method: str, path: str = "", *, headers: dict[str, str] = OWNER, body: Any = None
) -> tuple[int, Any]:
    url = f"http://127.0.0.1:{world.op.port}/v1-webhooks/receivers{path}"
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, url, headers=headers, json=body, params={"projectId": "1a5"}) as answer,
    ):
        return answer.status, (None if answer.status == 204 else await answer.json())


async def trigger(world: World, url: str) -> tuple[int, Any]:
    """POST to a trigger URL the API answered with, at this test's listener."""
    local = URL(url).with_host("127.0.0.1").with_port(world.op.port)
    async with aiohttp.ClientSession() as session, session.post(local, json={"ref": "main"}) as answer:
        return answer.status, await answer.json()


async def test_the_pipelines_create_is_a_receiver_in_the_labelled_namespace_whose_url_forwards(
    world: World,
) -> None:
    await label(world.client, APP_NS)
    status, created = await call(world, "POST", body=PIPELINE)
    assert (status, created["id"], created["state"]) == (200, "pipeline-webhook", "active")
    obj = await world.receiver("pipeline-webhook")
    assert obj["metadata"]["labels"] == {CREATED_BY_LABEL: CREATED_BY, PROJECT_LABEL: "1a5"}
    assert obj["metadata"]["annotations"][NAME_ANNOTATION] == "pipeline-webhook"
    assert obj["spec"]["forwardPostConfig"]["port"] == 80
    assert created["url"] == (await world.secret("pipeline-webhook"))["url"]
    status, echoed = await trigger(world, created["url"])
    assert (status, echoed["path"], echoed["body"]) == (200, "/v1/webhook", '{"ref": "main"}')


async def test_a_created_scale_service_receivers_url_scales_the_service(world: World) -> None:
    await label(world.client, APP_NS)
    before = await world.scale()
    status, created = await call(world, "POST", body=SCALE_UP)
    assert (status, created["name"], created["state"]) == (200, "Scale up web", "active")
    status, answer = await trigger(world, created["url"])
    assert (status, answer["outcome"]) == (200, "accepted")
    await until(lambda: _equals(world.scale(), before + 1), what="the service scaled up")


async def test_list_and_get_show_the_apis_receivers_with_their_url_and_no_hand_applied_one(
    world: World,
) -> None:
    await label(world.client, APP_NS)
    await world.apply(receiver("by-hand"))
    _, created = await call(world, "POST", body=PIPELINE)
    status, listed = await call(world, "GET")
    assert status == 200
    assert [(r["id"], r["url"]) for r in listed["data"]] == [("pipeline-webhook", created["url"])]
    status, got = await call(world, "GET", "/pipeline-webhook")
    assert (status, got["url"], got["forwardPostConfig"]["serviceName"]) == (200, created["url"], "web")
    status, _ = await call(world, "GET", "/by-hand")
    assert status == 404


async def test_delete_removes_the_receiver_and_its_url_stops_working_before_the_answer(world: World) -> None:
    await label(world.client, APP_NS)
    _, created = await call(world, "POST", body=SCALE_UP)
    status, _ = await call(world, "DELETE", f"/{created['id']}")
    assert status == 204
    assert (await trigger(world, created["url"]))[0] in (401, 403)
    await until(lambda: _gone(world, created["id"]), what="the Receiver gone")
    status, _ = await call(world, "GET", f"/{created['id']}")
    assert status == 404


async def test_a_project_no_namespace_is_labelled_for_is_400_saying_how_to_label_one(world: World) -> None:
    status, body = await call(world, "POST", body=PIPELINE)
    assert (status, body["type"], body["message"]) == (
        400,
        "error",
        f"project 1a5 maps to no namespace (label a Namespace {PROJECT_LABEL}=1a5)",
    )
    assert (await call(world, "GET"))[0] == 400


async def test_a_project_labelled_on_two_namespaces_is_400_naming_them(world: World) -> None:
    await label(world.client, APP_NS)
    await label(world.client, "other")
    status, body = await call(world, "POST", body=PIPELINE)
    assert (status, body["message"]) == (
        400,
        f"project 1a5 maps to 2 namespaces (other, {APP_NS}); label only one {PROJECT_LABEL}=1a5",
    )


async def test_a_readonly_key_may_not_create_or_delete_and_sees_no_url(world: World) -> None:
    await label(world.client, APP_NS)
    status, refused = await call(world, "POST", headers=READONLY, body=PIPELINE)
    assert (status, refused["statusCode"]) == (405, 405)
    _, created = await call(world, "POST", body=PIPELINE)
    status, _ = await call(world, "DELETE", f"/{created['id']}", headers=READONLY)
    assert status == 405
    _, got = await call(world, "GET", f"/{created['id']}", headers=READONLY)
    assert (got["state"], "url" in got) == ("active", False)


# -- the store's own waits, with no operator to activate or drop a receiver


@pytest.fixture
async def client(kube: KubeEmulator) -> AsyncIterator[KubeClient]:
    """A client of the emulator, with the application namespace labelled for project 1a5."""
    async with aiohttp.ClientSession() as session:
        client = KubeClient(session, str(kube.url).rstrip("/"), {})
        await label(client, APP_NS)
        yield client


async def test_a_receiver_not_active_in_time_is_deleted_again(client: KubeClient) -> None:
    store = KubeApiReceivers(client, ReceiverSet(), settle_timeout=0)
    with pytest.raises(NotSettled):
        await store.write("1a5", "web-up", "web-up", receiver("web-up")["spec"])
    with pytest.raises(KubeNotFound):
        await client.get(RECEIVERS.named("web-up", APP_NS))


async def test_a_delete_is_not_settled_while_the_receiver_set_still_holds_the_receiver(
    client: KubeClient,
) -> None:
    receiver_set = ReceiverSet()
    receiver_set.put(await created_active(client, token_id="t1"))
    store = KubeApiReceivers(client, receiver_set, settle_timeout=0)
    [stored] = await store.in_project("1a5")
    with pytest.raises(NotSettled):
        await store.remove(stored)


async def test_the_url_is_shown_only_while_its_secret_holds_the_accepted_token(client: KubeClient) -> None:
    active = await created_active(client, token_id="t1")
    store = KubeApiReceivers(client, ReceiverSet())
    [stored] = await store.in_project("1a5")
    url = "http://webhook.example:8085/v1-webhooks/endpoint?key=new&projectId=1a5"
    secret = secret_body(active.receiver, active.uid, "new", "t2", "k1", url)  # re-minted, not yet accepted
    await client.create(SECRETS.within(APP_NS), secret)
    assert await store.url(stored, active) is None
    assert await store.url(stored, dataclasses.replace(active, jti="t2")) == url


async def created_active(client: KubeClient, *, token_id: str) -> ActiveReceiver:
    """An API-created Receiver in the emulator, as the informer shows it once its token is issued."""
    obj = receiver_object("1a5", APP_NS, "web-up", "web-up", receiver("web-up")["spec"])
    created = await client.create(RECEIVERS.within(APP_NS), obj)
    issued = {**created, "status": {"tokenId": token_id}}
    active = active_from_object(issued, load_drivers(), ReceiverSchema.load())
    assert active is not None
    return active
