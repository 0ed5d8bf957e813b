"""The sandbox's generic objects: seeded in Rancher's shape, listed like Cattle's other collections."""

from __future__ import annotations

import pytest

from controller.cattle.client import CattleClient
from controller.sandbox.seed import SandboxSeed, SeedError, parse_seed
from tests import rancher_objects
from tests.sandbox_harness import Client, MakeClient, json_of

COLLECTION = "/v2-beta/projects/1a5/genericobjects"


@pytest.fixture
def seed() -> SandboxSeed:
    return parse_seed(
        {
            "projects": [
                {
                    "id": "1a5",
                    "genericObjects": [
                        *rancher_objects.ALL,
                        {"id": "1go99", "name": "other", "kind": "somethingElse", "key": "k"},
                    ],
                },
                {"id": "1a6", "genericObjects": [{**rancher_objects.SCALE_HOST, "name": "elsewhere"}]},
            ]
        }
    )


def cattle(client: Client) -> CattleClient:
    return CattleClient(
        client.session, base_url=str(client.make_url("/v2-beta")), access_key=None, secret_key=None
    )


async def test_a_seeded_generic_object_is_served_in_rancher_shape(make_client: MakeClient) -> None:
    client = await make_client()
    status, body = await json_of(client, "GET", COLLECTION)
    assert (status, body["resourceType"]) == (200, "genericObject")
    first = body["data"][0]
    assert {k: first[k] for k in ("name", "kind", "key", "resourceData")} == rancher_objects.SCALE_SERVICE
    assert (first["type"], first["state"], first["accountId"]) == ("genericObject", "active", "1a5")
    assert first["id"].startswith("1go") and first["uuid"]


async def test_kind_filters_the_collection(make_client: MakeClient) -> None:
    client = await make_client()
    _, body = await json_of(client, "GET", f"{COLLECTION}?kind=webhookReceiver")
    assert [g["name"] for g in body["data"]] == [g["name"] for g in rancher_objects.ALL]


async def test_key_finds_exactly_one_receiver(make_client: MakeClient) -> None:
    client = await make_client()
    _, body = await json_of(client, "GET", f"{COLLECTION}?key={rancher_objects.FORWARD_KEY}")
    assert [g["name"] for g in body["data"]] == ["relay"]


async def test_generic_objects_belong_to_their_project(make_client: MakeClient) -> None:
    client = await make_client()
    _, body = await json_of(client, "GET", "/v2-beta/projects/1a6/genericobjects")
    assert [g["name"] for g in body["data"]] == ["elsewhere"]


async def test_the_collection_pages_and_the_client_follows_every_page(make_client: MakeClient) -> None:
    client = await make_client()
    _, first = await json_of(client, "GET", f"{COLLECTION}?kind=webhookReceiver&limit=2")
    assert (len(first["data"]), first["pagination"]["partial"]) == (2, True)
    listed = await cattle(client).list_generic_objects("1a5", kind="webhookReceiver", limit="2")
    assert [g["key"] for g in listed] == [g["key"] for g in rancher_objects.ALL]


async def test_the_client_lists_every_project(make_client: MakeClient) -> None:
    client = await make_client()
    assert [p["id"] for p in await cattle(client).list_projects()] == ["1a5", "1a6"]


def test_a_generic_object_without_a_key_is_a_seed_error() -> None:
    with pytest.raises(SeedError, match=r"genericObjects\[0\]\.key"):
        parse_seed(
            {"projects": [{"id": "1a5", "genericObjects": [{"name": "x", "kind": "webhookReceiver"}]}]}
        )


def test_two_generic_objects_with_one_id_are_a_seed_error() -> None:
    twice = {"id": "1go1", "name": "x", "kind": "webhookReceiver", "key": "k"}
    with pytest.raises(SeedError, match="duplicate generic object"):
        parse_seed({"projects": [{"id": "1a5", "genericObjects": [twice, twice]}]})
