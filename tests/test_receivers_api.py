"""The receivers API in Rancher's shape, through the run mode's own wiring (``folder_service``): the
managed folder, the watcher and the embedded sandbox, seeded as ``make run`` seeds it (with an owner's,
a restricted user's and a read-only user's API keys)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web
from aiohttp.test_utils import TestClient

from controller.cattle.client import basic_auth
from controller.drivers import load_drivers
from controller.listener.receivers_api import depth
from controller.metrics import Metrics
from controller.rancher.keys import NAME_ANNOTATION
from controller.receiver_set import ReceiverSet
from controller.receivers.api_store import manifest, receiver_id_for, write_manifest
from controller.receivers.loader import load_paths
from controller.receivers.sync import ReceiverSync
from controller.receivers.watcher import ReceiverWatcher
from controller.service import folder_service
from controller.settings import Settings
from controller.store.sqlite import SqliteStore
from controller.tokens import KeyRing

Client = TestClient[web.Request, web.Application]
AiohttpClient = Callable[..., Awaitable[Client]]

RECEIVERS = "/v1-webhooks/receivers"
EXAMPLE_SEED = Path(__file__).parent.parent / "examples" / "sandbox-seed.yaml"
PIPELINE_CONFIG = {
    "projectId": "1a5",
    "serviceName": "pipeline-server",
    "port": "60080",
    "path": "/v1/webhook",
}
FORWARD_SPEC = {
    "driver": "forwardPost",
    "forwardPostConfig": {**PIPELINE_CONFIG, "port": 60080},
}  # as written
PIPELINE = {"name": "pipeline-webhook", "driver": "forwardPost", "forwardPostConfig": PIPELINE_CONFIG}
SCALE_UP = {
    "name": "Scale up web",
    "driver": "scaleService",
    "scaleServiceConfig": {
        "serviceId": "1s7",
        "action": "up",
        "amount": 1,
        "min": 1,
        "max": 5,
        "type": "scaleService",
    },
}


def key(role: str) -> dict[str, str]:
    return {"Authorization": basic_auth(f"{role}-access", f"{role}-secret")}


OWNER, READONLY, RESTRICTED = key("owner"), key("readonly"), key("restricted")


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    (tmp_path / "receivers").mkdir()
    return Settings(
        receivers_dir=tmp_path / "receivers",
        state_dir=tmp_path / "state",
        max_body_bytes=4096,
        sandbox_seed=EXAMPLE_SEED,
    )


@pytest.fixture
async def client(settings: Settings, aiohttp_client: AiohttpClient) -> AsyncIterator[Client]:
    yield await aiohttp_client(folder_service(settings, ReceiverSet()).app)


async def call(
    client: Client,
    method: str,
    path: str,
    *,
    headers: dict[str, str] | None = None,
    body: Any = None,
    **params: str,
) -> tuple[int, Any]:
    query = {"projectId": "1a5", **params}
    data = None if body is None else json.dumps(body)
    sent = (
        {"Content-Type": "application/json", **(headers or {})} if body is not None else dict(headers or {})
    )
    async with client.request(method, path, params=query, headers=sent, data=data) as response:
        return response.status, (await response.json() if response.status != 204 else None)


async def create(client: Client, body: Any, headers: dict[str, str] = OWNER) -> tuple[int, Any]:
    return await call(client, "POST", RECEIVERS, headers=headers, body=body)


# -- the version root and the schemas


async def test_the_version_root_links_receivers_and_schemas_with_the_project(client: Client) -> None:
    status, body = await call(client, "GET", "/v1-webhooks")
    base = str(client.make_url("/v1-webhooks"))
    assert status == 200
    assert body["type"] == "apiVersion"
    assert body["links"] == {
        "receivers": f"{base}/receivers?projectId=1a5",
        "schemas": f"{base}/schemas?projectId=1a5",
        "self": f"{base}?projectId=1a5",
    }


async def test_the_version_root_without_a_project_is_400_in_rancher_error_body(client: Client) -> None:
    async with client.get("/v1-webhooks/") as response:
        body = await response.json()
    assert response.status == 400
    assert {k: body[k] for k in ("type", "statusCode", "status", "message")} == {
        "type": "error",
        "statusCode": 400,
        "status": "Server Error",
        "message": "projectId must be supplied as query parameter",
    }


async def test_the_receiver_schema_offers_create_and_delete_and_names_every_driver(client: Client) -> None:
    status, body = await call(client, "GET", "/v1-webhooks/schemas/receiver")
    assert status == 200
    assert (body["collectionMethods"], body["resourceMethods"]) == (["GET", "POST"], ["GET", "DELETE"])
    assert set(body["resourceFields"]["driver"]["options"]) == set(load_drivers())
    assert body["resourceFields"]["forwardPostConfig"]["type"] == "forwardPost"


async def test_the_schemas_collection_holds_each_drivers_config_schema(client: Client) -> None:
    status, body = await call(client, "GET", "/v1-webhooks/schemas")
    ids = {schema["id"] for schema in body["data"]}
    assert status == 200
    assert {"receiver", "apiVersion", "schema", "error", *load_drivers()} <= ids


async def test_an_unknown_schema_is_404(client: Client) -> None:
    status, body = await call(client, "GET", "/v1-webhooks/schemas/nothing")
    assert (status, body["type"], body["statusCode"]) == (404, "error", 404)


# -- create


async def test_the_pipelines_create_answers_an_active_receiver_with_a_trigger_url(client: Client) -> None:
    status, body = await create(client, PIPELINE)
    assert status == 200
    assert (body["id"], body["type"], body["name"], body["driver"], body["state"]) == (
        "pipeline-webhook",
        "receiver",
        "pipeline-webhook",
        "forwardPost",
        "active",
    )
    assert body["forwardPostConfig"]["port"] == 60080
    assert body["url"].startswith("http://127.0.0.1:8085/v1-webhooks/endpoint?key=")
    assert body["url"].endswith("&projectId=1a5")
    assert body["links"]["self"] == str(client.make_url(f"{RECEIVERS}/pipeline-webhook?projectId=1a5"))


async def test_a_created_receiver_is_a_manifest_in_the_managed_folder_that_validates(
    client: Client, settings: Settings
) -> None:
    await create(client, SCALE_UP)
    path = settings.api_receivers_path / "1a5" / f"{receiver_id_for('Scale up web')}.yaml"
    document = yaml.safe_load(path.read_text())
    assert document["metadata"]["annotations"][NAME_ANNOTATION] == "Scale up web"
    assert document["spec"]["scaleServiceConfig"]["projectId"] == "1a5"
    receivers, problems = load_paths([settings.api_receivers_path], load_drivers())
    assert ([r.key for r in receivers], problems) == ([f"1a5/{receiver_id_for('Scale up web')}"], [])


async def test_a_free_text_name_gets_a_dns_safe_id_and_keeps_its_name(client: Client) -> None:
    status, body = await create(client, SCALE_UP)
    assert status == 200
    assert body["name"] == "Scale up web"
    assert body["id"].startswith("scale-up-web-")


async def test_the_trigger_url_of_a_created_receiver_acts(client: Client) -> None:
    _, body = await create(client, SCALE_UP)
    async with client.post(body["url"].removeprefix("http://127.0.0.1:8085")) as hit:
        assert (hit.status, (await hit.json())["outcome"]) == (200, "accepted")


async def test_a_name_already_in_the_project_is_400(client: Client) -> None:
    await create(client, PIPELINE)
    status, body = await create(client, PIPELINE)
    assert (status, body["message"]) == (
        400,
        "Cannot have duplicate webhook name, webhook pipeline-webhook already exists",
    )


async def test_create_without_json_content_type_is_400(client: Client) -> None:
    async with client.post(
        RECEIVERS, params={"projectId": "1a5"}, headers=OWNER, data=json.dumps(PIPELINE)
    ) as r:
        body = await r.json()
    assert (r.status, body["message"]) == (
        400,
        "Content-Type must be supplied as header. Only application/json is supported",
    )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"driver": "forwardPost"}, "Name not provided"),
        ({"name": "x"}, "Driver not provided"),
        ({"name": "x", "driver": "nothing"}, "Invalid driver nothing"),
        (
            {"name": "x", "driver": "forwardPost"},
            "Invalid driver forwardPost: forwardPostConfig not provided",
        ),
    ],
)
async def test_a_create_body_missing_what_rancher_requires_is_400(
    client: Client, body: dict[str, Any], message: str
) -> None:
    status, answer = await create(client, body)
    assert (status, answer["message"]) == (400, message)


async def test_a_config_the_driver_refuses_is_400_naming_the_field(client: Client) -> None:
    config = {**SCALE_UP["scaleServiceConfig"], "min": 9, "max": 2}  # type: ignore[dict-item]
    status, body = await create(client, {**SCALE_UP, "scaleServiceConfig": config})
    assert status == 400
    assert "spec.scaleServiceConfig" in body["message"]


async def test_a_config_for_another_project_is_400(client: Client) -> None:
    config = {**PIPELINE["forwardPostConfig"], "projectId": "1a9"}  # type: ignore[dict-item]
    status, _ = await create(client, {**PIPELINE, "forwardPostConfig": config})
    assert status == 400


async def test_a_body_nested_deeper_than_a_manifest_may_be_is_400(client: Client) -> None:
    nested: Any = "x"
    for _ in range(40):
        nested = [nested]
    status, body = await create(client, {**PIPELINE, "extra": nested})
    assert (status, body["message"]) == (400, "Bad request body: nested deeper than 32")


async def test_a_body_over_the_limit_is_413(client: Client) -> None:
    status, body = await create(client, {**PIPELINE, "padding": "x" * 5000})
    assert (status, body["type"]) == (413, "error")


def test_depth_counts_containers_not_scalars() -> None:
    assert (depth(1), depth({}), depth({"a": [1]}), depth([[[]]])) == (0, 1, 2, 3)


# -- who may do what


async def test_an_unknown_key_is_401_with_a_basic_challenge(client: Client) -> None:
    headers = {"Authorization": basic_auth("owner-access", "wrong")}
    async with client.get(RECEIVERS, params={"projectId": "1a5"}, headers=headers) as response:
        body = await response.json()
    assert (response.status, body["statusCode"], body["status"]) == (401, 401, "Server Error")
    assert response.headers["WWW-Authenticate"].startswith("Basic realm=")


@pytest.mark.parametrize("headers", [READONLY, RESTRICTED])
async def test_a_readonly_or_restricted_key_may_not_create(client: Client, headers: dict[str, str]) -> None:
    status, body = await create(client, PIPELINE, headers)
    assert (status, body["message"]) == (405, "user doesn't have the access to create webhook")


async def test_a_readonly_key_may_not_delete(client: Client) -> None:
    await create(client, PIPELINE)
    status, body = await call(client, "DELETE", f"{RECEIVERS}/pipeline-webhook", headers=READONLY)
    assert (status, body["message"]) == (405, "user doesn't have the access to delete webhook")
    status, _ = await call(client, "GET", f"{RECEIVERS}/pipeline-webhook", headers=OWNER)
    assert status == 200


async def test_a_readonly_key_lists_and_gets_receivers_without_their_url(client: Client) -> None:
    await create(client, PIPELINE)
    _, listed = await call(client, "GET", RECEIVERS, headers=READONLY)
    _, got = await call(client, "GET", f"{RECEIVERS}/pipeline-webhook", headers=READONLY)
    assert [r["id"] for r in listed["data"]] == ["pipeline-webhook"]
    assert "url" not in listed["data"][0]
    assert "url" not in got
    assert got["state"] == "active"


async def test_an_owner_key_lists_receivers_with_their_url(client: Client) -> None:
    await create(client, PIPELINE)
    status, listed = await call(client, "GET", RECEIVERS, headers=OWNER)
    assert (status, listed["type"], listed["resourceType"]) == (200, "collection", "receiver")
    assert listed["data"][0]["url"].startswith("http://127.0.0.1:8085/v1-webhooks/endpoint?key=")


async def test_an_unknown_project_is_404(client: Client) -> None:
    status, _ = await call(client, "GET", RECEIVERS, headers=OWNER, projectId="1a99")
    assert status == 404


# -- get and delete


async def test_an_unknown_receiver_is_404(client: Client) -> None:
    status, body = await call(client, "GET", f"{RECEIVERS}/nothing/", headers=OWNER)
    assert (status, body["message"]) == (404, "Webhook not found")


async def test_delete_answers_204_and_revokes_the_url_at_once(client: Client, settings: Settings) -> None:
    _, body = await create(client, SCALE_UP)
    status, _ = await call(client, "DELETE", f"{RECEIVERS}/{body['id']}", headers=OWNER)
    assert status == 204
    assert not list((settings.api_receivers_path / "1a5").glob("*.yaml"))
    async with client.post(body["url"].removeprefix("http://127.0.0.1:8085")) as hit:
        assert hit.status in (401, 403)
    status, _ = await call(client, "GET", f"{RECEIVERS}/{body['id']}", headers=OWNER)
    assert status == 404


# -- the managed folder is watched with the receivers folder


def watcher_over(tmp_path: Path, store: SqliteStore, receiver_set: ReceiverSet) -> ReceiverWatcher:
    keyring = KeyRing.load_or_create(tmp_path / "keys")
    sync = ReceiverSync(store=store, keyring=keyring, receiver_set=receiver_set, metrics=Metrics())
    return ReceiverWatcher(
        directory=tmp_path / "receivers",
        also=[tmp_path / "managed"],
        drivers=load_drivers(),
        sync=sync,
        store=store,
        metrics=Metrics(),
        interval=1.0,
    )


async def test_the_watcher_loads_the_managed_folder_with_the_receivers_folder(
    tmp_path: Path, store: SqliteStore
) -> None:
    (tmp_path / "receivers").mkdir()
    write_manifest(tmp_path / "managed", "1a5", "web-up", "web up", FORWARD_SPEC)
    receiver_set = ReceiverSet()

    await watcher_over(tmp_path, store, receiver_set).scan_once()

    assert receiver_set.keys() == {"1a5/web-up"}


async def test_a_name_in_both_folders_is_reported_as_a_duplicate(tmp_path: Path, store: SqliteStore) -> None:
    path = write_manifest(tmp_path / "managed", "1a5", "web-up", "web-up", FORWARD_SPEC)
    (tmp_path / "receivers").mkdir()
    (tmp_path / "receivers" / "web-up.yaml").write_text(path.read_text())
    receiver_set = ReceiverSet()

    await watcher_over(tmp_path, store, receiver_set).scan_once()

    problems = await store.list_problems()
    assert receiver_set.keys() == {"1a5/web-up"}
    assert [p.message for p in problems] == [
        f"receiver 1a5/web-up is already declared in {min(path, tmp_path / 'receivers' / 'web-up.yaml')}"
    ]


async def test_a_hand_written_receiver_of_the_same_name_makes_a_create_400(
    client: Client, settings: Settings
) -> None:
    document = manifest(
        "1a5",
        "pipeline-webhook",
        "pipeline-webhook",
        FORWARD_SPEC,
    )
    (settings.receivers_dir / "hand.yaml").write_text(yaml.safe_dump(document))
    status, _ = await create(client, PIPELINE)
    assert status == 400


async def test_without_a_cattle_to_ask_requests_on_receivers_are_503(
    settings: Settings, aiohttp_client: AiohttpClient
) -> None:
    app = folder_service(dataclasses.replace(settings, cattle_url=""), ReceiverSet()).app
    status, body = await call(await aiohttp_client(app), "GET", RECEIVERS, headers=OWNER)
    assert (status, body["message"]) == (503, "No Cattle is configured (--cattle-url) to check API keys with")
