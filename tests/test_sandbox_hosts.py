"""The sandbox's hosts: listing, cloning a machine-driver host (from its config or its host template),
provisioning over time, evacuation, and injected create failures — over HTTP as Cattle answers them."""

from __future__ import annotations

from typing import Any

import pytest
from pytest_aiohttp import AiohttpClient

from controller.sandbox.app import SANDBOX_STATE, SandboxOptions, make_sandbox_app
from controller.sandbox.seed import SandboxSeed, SeedError, parse_seed
from tests.sandbox_harness import START, MakeClient, client_factory, json_of
from tests.toolbox import FakeClock

HOSTS = "/v2-beta/projects/1a5/hosts"
EVENTS = "/v2-beta/projects/1a5/externalhostevents"
CLONE = {"hostname": "worker-4", "labels": {"role": "worker"}, "digitaloceanConfig": {"size": "2gb"}}


@pytest.fixture
def seed() -> SandboxSeed:
    do = {"driver": "digitalocean", "digitaloceanConfig": {"region": "nyc3", "size": "2gb"}}
    return parse_seed({"projects": [{"id": "1a5", "hosts": [
        {"id": "1h1", "name": "worker-1", "labels": {"role": "worker"}, **do},
        {"id": "1h2", "name": "worker-2", "labels": {"role": "worker"}, "agentState": "disconnected", **do},
        {"id": "1h3", "name": "edge-1", "hostname": "edge-1.example.com", "labels": {"role": "edge"}},
    ]}]})  # fmt: skip


@pytest.fixture
def make_client(aiohttp_client: AiohttpClient, seed: SandboxSeed, clock: FakeClock) -> MakeClient:
    return client_factory(aiohttp_client, seed, clock, transition_ms=600)


async def test_hosts_carry_driver_config_labels_and_the_agent_state(make_client: MakeClient) -> None:
    client = await make_client()

    status, body = await json_of(client, "GET", HOSTS)

    assert status == 200 and body["resourceType"] == "host"
    one, two, custom = body["data"]
    assert (one["state"], one["driver"], one["digitaloceanConfig"]) == (
        "active",
        "digitalocean",
        {"region": "nyc3", "size": "2gb"},
    )
    assert (two["state"], two["agentState"]) == ("disconnected", "disconnected")
    assert custom["driver"] is None and "digitaloceanConfig" not in custom
    assert custom["hostname"] == "edge-1.example.com"
    assert one["createdTS"] < two["createdTS"] < custom["createdTS"] < START * 1000


async def test_hosts_page_with_marker(make_client: MakeClient) -> None:
    client = await make_client()

    _, first = await json_of(client, "GET", HOSTS + "?limit=2")
    _, second = await json_of(client, "GET", HOSTS + "?limit=2&marker=m2")

    assert [h["id"] for h in first["data"]] == ["1h1", "1h2"] and first["pagination"]["partial"]
    assert [h["id"] for h in second["data"]] == ["1h3"] and second["pagination"]["next"] is None


async def test_created_host_walks_to_active_over_the_transition_time(
    make_client: MakeClient, clock: FakeClock
) -> None:
    client = await make_client()

    status, body = await json_of(client, "POST", HOSTS, json=CLONE)
    seen = [body["state"]]
    for step in range(1, 7):
        clock.now = START + step / 10 + 1e-6
        seen.append((await json_of(client, "GET", f"{HOSTS}/{body['id']}"))[1]["state"])

    assert status == 201 and body["id"] == "1h4" and body["transitioning"] == "yes"
    assert seen == [
        "requested",
        "registering",
        "inactive",
        "provisioning",
        "provisioned",
        "activating",
        "active",
    ]
    _, done = await json_of(client, "GET", f"{HOSTS}/1h4")
    assert (done["transitioning"], done["labels"], done["driver"]) == (
        "no",
        {"role": "worker"},
        "digitalocean",
    )


@pytest.mark.parametrize(
    "body",
    [
        {"hostname": "x"},
        {"hostname": "x", "digitaloceanConfig": {}, "amazonec2Config": {}},
        {"hostname": "x", "digitaloceanConfig": {}, "hostTemplateId": "1ht1"},
    ],
    ids=["no config", "two configs", "a config and a template"],
)
async def test_create_needs_exactly_one_driver_config(make_client: MakeClient, body: dict[str, Any]) -> None:
    client = await make_client()
    status, error = await json_of(client, "POST", HOSTS, json=body)
    assert (status, error["code"]) == (422, "DriverConfigExactlyOneRequired")


async def test_create_refuses_an_existing_hostname(make_client: MakeClient) -> None:
    client = await make_client()
    status, error = await json_of(client, "POST", HOSTS, json={**CLONE, "hostname": "worker-2"})
    assert (status, error["code"]) == (422, "NotUnique")


async def test_evacuate_with_delete_removes_the_host_and_hides_it(
    make_client: MakeClient, clock: FakeClock
) -> None:
    client = await make_client()
    event = {"eventType": "host.evacuate", "hostId": "1h1", "deleteHost": True}

    status, body = await json_of(client, "POST", EVENTS, json=event)
    removing = (await json_of(client, "GET", f"{HOSTS}/1h1"))[1]["state"]
    clock.now += 1
    _, listed = await json_of(client, "GET", HOSTS)
    _, gone = await json_of(client, "GET", f"{HOSTS}/1h1")

    assert (status, body["type"], body["hostId"]) == (201, "externalHostEvent", "1h1")
    assert removing == "removing"
    assert [h["id"] for h in listed["data"]] == ["1h2", "1h3"]
    assert gone["state"] == "removed"


async def test_evacuate_of_an_unknown_host_is_422(make_client: MakeClient) -> None:
    client = await make_client()
    status, error = await json_of(
        client, "POST", EVENTS, json={"eventType": "host.evacuate", "hostId": "1h99"}
    )
    assert (status, error["code"]) == (422, "InvalidReference")


@pytest.mark.parametrize("fail_status", [500, 422])
async def test_the_chosen_host_create_fails_once(make_client: MakeClient, fail_status: int) -> None:
    client = await make_client(fail_host_create={2}, fail_host_create_status=fail_status)

    statuses = [
        (await json_of(client, "POST", HOSTS, json={**CLONE, "hostname": f"worker-{n}"}))[0]
        for n in (4, 5, 5)
    ]

    assert statuses == [201, fail_status, 201]
    assert [h.name for h in client.app[SANDBOX_STATE].hosts("1a5")][-2:] == ["worker-4", "worker-5"]


@pytest.fixture
def make_templated_client(aiohttp_client: AiohttpClient, clock: FakeClock) -> MakeClient:
    """A sandbox whose one host was made from host template 1ht1 (an amazonec2 one)."""
    seed = parse_seed({"projects": [{"id": "1a5", "hosts": [
        {"id": "1h1", "name": "gpu-1", "labels": {"role": "gpu"}, "driver": "amazonec2",
         "hostTemplateId": "1ht1"},
    ]}]})  # fmt: skip
    return client_factory(aiohttp_client, seed, clock, transition_ms=600)


async def test_a_host_made_from_a_template_shows_the_template_and_no_config(
    make_templated_client: MakeClient,
) -> None:
    client = await make_templated_client()
    _, host = await json_of(client, "GET", f"{HOSTS}/1h1")
    assert (host["driver"], host["hostTemplateId"], host["amazonec2Config"]) == ("amazonec2", "1ht1", None)


async def test_create_through_a_known_host_template_makes_a_host_of_its_driver(
    make_templated_client: MakeClient, clock: FakeClock
) -> None:
    client = await make_templated_client()
    clone = {"hostname": "gpu-2", "labels": {"role": "gpu"}, "hostTemplateId": "1ht1"}

    status, created = await json_of(client, "POST", HOSTS, json=clone)
    clock.now += 1
    _, done = await json_of(client, "GET", f"{HOSTS}/{created['id']}")

    assert (status, created["state"]) == (201, "requested")
    assert (done["state"], done["driver"], done["hostTemplateId"]) == ("active", "amazonec2", "1ht1")


async def test_create_through_an_unknown_host_template_is_422(make_templated_client: MakeClient) -> None:
    client = await make_templated_client()
    status, error = await json_of(client, "POST", HOSTS, json={"hostname": "gpu-2", "hostTemplateId": "1ht9"})
    assert (status, error["code"], error["fieldName"]) == (422, "InvalidReference", "hostTemplateId")


def test_seed_host_from_a_template_has_no_driver_config() -> None:
    with pytest.raises(SeedError, match=r"projects\[0\].hosts\[0\].amazonec2Config"):
        parse_seed({"projects": [{"id": "1a5", "hosts": [
            {"id": "1h1", "name": "w", "driver": "amazonec2", "hostTemplateId": "1ht1",
             "amazonec2Config": {}},
        ]}]})  # fmt: skip


def test_seed_host_with_a_driver_needs_its_config() -> None:
    with pytest.raises(SeedError, match=r"projects\[0\].hosts\[0\].digitaloceanConfig"):
        parse_seed(
            {"projects": [{"id": "1a5", "hosts": [{"id": "1h1", "name": "w", "driver": "digitalocean"}]}]}
        )


def test_default_world_has_a_worker_group_and_a_custom_host(clock: FakeClock) -> None:
    state = make_sandbox_app(None, SandboxOptions(), clock=clock)[SANDBOX_STATE]
    hosts = state.hosts("1a5")
    assert [(h.name, h.labels["role"], h.driver) for h in hosts] == [
        ("worker-1", "worker", "digitalocean"), ("worker-2", "worker", "digitalocean"),
        ("worker-3", "worker", "digitalocean"), ("edge-1", "edge", None),
    ]  # fmt: skip
