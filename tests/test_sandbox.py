"""The Cattle sandbox: answers like Cattle over HTTP, and through the real CattleClient."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from pytest_aiohttp import AiohttpClient

from controller.cattle.client import CattleClient, basic_auth
from controller.cattle.errors import (
    CattleAnswerTooLarge,
    CattleBusy,
    CattleNotFound,
    CattleUnauthorized,
    CattleUnavailable,
)
from controller.sandbox.app import SANDBOX_STATE, SandboxOptions, make_sandbox_app, run_sandbox
from controller.sandbox.seed import SandboxSeed, SeedError, SeedService, load_seed, parse_seed
from tests.sandbox_harness import Client, MakeClient, json_of
from tests.toolbox import FakeClock
from tests.upstream import upstream_app

SERVICE = "/v2-beta/projects/1a5/services/1s7"
EXAMPLE_SEED = Path(__file__).parent.parent / "examples" / "sandbox-seed.yaml"


@pytest.fixture
def seed() -> SandboxSeed:
    return parse_seed(
        {
            "projects": [
                {
                    "id": "1a5",
                    "name": "Default",
                    "services": [
                        {
                            "id": "1s7",
                            "name": "web",
                            "stackId": "1st1",
                            "scale": 1,
                            "image": "docker:nginx:1.13",
                        },
                        {"id": "1s8", "name": "worker", "stackId": "1st1", "scale": 2},
                    ],
                },
                {"id": "1a9", "name": "Other", "services": [{"id": "1s20", "name": "db", "stackId": "1st4"}]},
            ]
        }
    )


def cattle(client: Client, *, access_key: str | None = None, secret_key: str | None = None) -> CattleClient:
    base = str(client.make_url("/v2-beta"))
    return CattleClient(client.session, base_url=base, access_key=access_key, secret_key=secret_key)


# -- resources


async def test_service_carries_cattle_fields_and_absolute_project_scoped_self_link(
    make_client: MakeClient,
) -> None:
    client = await make_client()

    status, body = await json_of(client, "GET", SERVICE)

    assert status == 200
    assert body["type"] == body["kind"] == "service"
    assert body["accountId"] == "1a5"
    assert body["launchConfig"]["imageUuid"] == "docker:nginx:1.13"
    assert body["links"]["self"] == str(client.make_url(SERVICE))
    assert body["transitioningMessage"] is None
    assert body["created"] == "2023-11-14T22:13:20Z"
    assert body["createdTS"] == 1_700_000_000_000
    assert set(body["actions"]) == {"update", "deactivate", "upgrade", "restart", "remove"}


async def test_v1_names_the_stack_an_environment(make_client: MakeClient) -> None:
    client = await make_client()

    _, body = await json_of(client, "GET", "/v1/projects/1a5/services/1s7")

    assert body["environmentId"] == "1st1"
    assert "stackId" not in body
    assert body["links"]["self"].endswith("/v1/projects/1a5/services/1s7")


async def test_unscoped_service_path_uses_the_project_header(make_client: MakeClient) -> None:
    client = await make_client()

    status, body = await json_of(client, "GET", "/v2-beta/services/1s20", headers={"X-API-Project-Id": "1a9"})

    assert (status, body["name"]) == (200, "db")


async def test_every_answer_carries_schemas_account_and_sandbox_headers(make_client: MakeClient) -> None:
    client = await make_client()

    async with client.get("/v2-beta/projects/1a5/services/nope") as response:
        assert response.status == 404
        assert response.headers["X-API-Schemas"] == str(client.make_url("/v2-beta/schemas"))
        assert response.headers["X-API-Account-Id"] == "1a5"
        assert response.headers["X-Sandbox"] == "true"


async def test_api_root_links_to_projects(make_client: MakeClient) -> None:
    client = await make_client()

    _, body = await json_of(client, "GET", "/v2-beta")

    assert body["links"]["projects"] == str(client.make_url("/v2-beta/projects"))


async def test_projects_collection_lists_every_project(make_client: MakeClient) -> None:
    client = await make_client()

    _, body = await json_of(client, "GET", "/v2-beta/projects")

    assert [p["id"] for p in body["data"]] == ["1a5", "1a9"]


# -- errors


async def test_unknown_project_is_404_with_cattle_error_body(make_client: MakeClient) -> None:
    client = await make_client()

    status, body = await json_of(client, "GET", "/v2-beta/projects/1a77/services/1s7")

    assert status == 404
    assert (body["type"], body["status"], body["code"]) == ("error", 404, "NotFound")


async def test_service_of_another_project_is_404(make_client: MakeClient) -> None:
    client = await make_client()

    status, _ = await json_of(client, "GET", "/v2-beta/projects/1a5/services/1s20")

    assert status == 404


async def test_missing_auth_is_401_with_basic_challenge(make_client: MakeClient) -> None:
    client = await make_client(access_key="ak", secret_key="sk")

    async with client.get(SERVICE) as response:
        assert response.status == 401
        assert response.headers["WWW-Authenticate"].startswith('Basic realm="Enter API access key')


async def test_no_challenge_header_suppresses_www_authenticate(make_client: MakeClient) -> None:
    client = await make_client(access_key="ak", secret_key="sk")

    async with client.get(SERVICE, headers={"X-API-No-Challenge": "true"}) as response:
        assert response.status == 401
        assert "WWW-Authenticate" not in response.headers


async def test_right_basic_auth_is_accepted(make_client: MakeClient) -> None:
    client = await make_client(access_key="ak", secret_key="sk")

    status, _ = await json_of(client, "GET", SERVICE, headers={"Authorization": basic_auth("ak", "sk")})

    assert status == 200


async def test_put_of_bad_json_is_400_invalid_body_content(make_client: MakeClient) -> None:
    client = await make_client()

    status, body = await json_of(client, "PUT", SERVICE, data=b"{nope")

    assert (status, body["code"]) == (400, "InvalidBodyContent")


@pytest.mark.parametrize(
    ("scale", "code"), [(-1, "MinLimitExceeded"), ("3", "InvalidFormat"), (True, "InvalidFormat")]
)
async def test_put_of_invalid_scale_is_422(make_client: MakeClient, scale: object, code: str) -> None:
    client = await make_client()

    status, body = await json_of(client, "PUT", SERVICE, json={"scale": scale})

    assert (status, body["code"], body["fieldName"]) == (422, code, "scale")


async def test_put_while_restarting_is_409(make_client: MakeClient) -> None:
    client = await make_client()
    client.app[SANDBOX_STATE].set_state("1a5", "1s7", "restarting")

    status, body = await json_of(client, "PUT", SERVICE, json={"scale": 3})

    assert (status, body["code"]) == (409, "Conflict")
    assert client.app[SANDBOX_STATE].service("1a5", "1s7").scale == 1


async def test_unknown_route_answers_cattle_404(make_client: MakeClient) -> None:
    client = await make_client()

    status, body = await json_of(client, "GET", "/v2-beta/nothing-here")

    assert (status, body["type"]) == (404, "error")


# -- updates and transitions


async def test_put_answers_whole_resource_updating_active(make_client: MakeClient) -> None:
    client = await make_client()

    status, body = await json_of(client, "PUT", SERVICE, json={"scale": 3})

    assert status == 200
    assert (body["state"], body["transitioning"], body["scale"], body["currentScale"]) == (
        "updating-active", "yes", 3, 1,
    )  # fmt: skip
    assert body["name"] == "web"


async def test_scale_update_settles_active_after_transition_time(
    make_client: MakeClient, clock: FakeClock
) -> None:
    client = await make_client(transition_ms=500)
    await json_of(client, "PUT", SERVICE, json={"scale": 3})

    clock.now += 0.499
    _, during = await json_of(client, "GET", SERVICE)
    clock.now += 0.001
    _, after = await json_of(client, "GET", SERVICE)

    assert during["state"] == "updating-active"
    assert (after["state"], after["transitioning"], after["currentScale"]) == ("active", "no", 3)


async def test_put_drops_keys_that_are_not_updatable(make_client: MakeClient) -> None:
    client = await make_client()

    _, body = await json_of(client, "PUT", SERVICE, json={"scale": 2, "kind": "dnsService", "id": "1s99"})

    assert (body["id"], body["kind"], body["scale"]) == ("1s7", "service", 2)


async def test_put_while_upgrading_is_accepted_and_stays_upgrading(make_client: MakeClient) -> None:
    client = await make_client()
    client.app[SANDBOX_STATE].set_state("1a5", "1s7", "upgrading")

    status, body = await json_of(client, "PUT", SERVICE, json={"scale": 4})

    assert (status, body["state"], body["scale"]) == (200, "upgrading", 4)


# -- collections


async def test_list_filters_by_name(make_client: MakeClient) -> None:
    client = await make_client()

    _, body = await json_of(client, "GET", "/v2-beta/projects/1a5/services?name=worker")

    assert [s["id"] for s in body["data"]] == ["1s8"]
    assert body["filters"] == {"name": [{"modifier": "eq", "value": "worker"}]}


async def test_list_filters_with_ne_modifier_and_ignores_unknown_filters(make_client: MakeClient) -> None:
    client = await make_client()

    _, body = await json_of(client, "GET", "/v2-beta/projects/1a5/services?name_ne=web&bogus=1")

    assert [s["id"] for s in body["data"]] == ["1s8"]


async def test_list_hides_removed_services(make_client: MakeClient) -> None:
    client = await make_client()
    client.app[SANDBOX_STATE].set_state("1a5", "1s8", "removed")

    _, body = await json_of(client, "GET", "/v2-beta/projects/1a5/services")

    assert [s["id"] for s in body["data"]] == ["1s7"]


async def test_list_pages_with_marker_and_absolute_next(make_client: MakeClient) -> None:
    client = await make_client()

    _, first = await json_of(client, "GET", "/v2-beta/projects/1a5/services?limit=1")
    async with client.session.get(first["pagination"]["next"]) as response:  # absolute: not via make_url
        second = await response.json()

    assert first["pagination"]["partial"] is True
    assert first["pagination"]["next"] == str(
        client.make_url("/v2-beta/projects/1a5/services?limit=1&marker=m1")
    )
    assert [s["id"] for s in first["data"] + second["data"]] == ["1s7", "1s8"]
    assert (second["pagination"]["next"], second["pagination"]["partial"]) == (None, False)


# -- through the real client


async def test_client_reads_and_scales_through_the_sandbox(make_client: MakeClient, clock: FakeClock) -> None:
    client = await make_client(access_key="ak", secret_key="sk", transition_ms=100)
    api = cattle(client, access_key="ak", secret_key="sk")

    put = await api.set_service_scale("1a5", "1s7", 5)
    clock.now += 0.1
    got = await api.get_service("1a5", "1s7")

    assert put["state"] == "updating-active"
    assert (got["state"], got["scale"], got["currentScale"]) == ("active", 5, 5)
    assert client.app[SANDBOX_STATE].service("1a5", "1s7").scale == 5


async def test_client_lists_more_than_a_page_of_services(make_client: MakeClient) -> None:
    client = await make_client()
    state = client.app[SANDBOX_STATE]
    for n in range(100, 250):
        state.add_service("1a5", SeedService(id=f"1s{n}", name=f"svc{n}", stack_id="1st1"))

    services = await cattle(client).list_services("1a5")

    assert len(services) == 152
    assert len({s["id"] for s in services}) == 152


async def test_default_page_holds_one_hundred_services(make_client: MakeClient) -> None:
    client = await make_client()
    for n in range(100, 250):
        client.app[SANDBOX_STATE].add_service(
            "1a5", SeedService(id=f"1s{n}", name=f"svc{n}", stack_id="1st1")
        )

    _, body = await json_of(client, "GET", "/v2-beta/projects/1a5/services")

    assert (len(body["data"]), body["pagination"]["limit"], body["pagination"]["partial"]) == (100, 100, True)


async def test_client_gets_not_found_for_unknown_service(make_client: MakeClient) -> None:
    client = await make_client()

    with pytest.raises(CattleNotFound):
        await cattle(client).get_service("1a5", "1s404")


async def test_client_with_wrong_secret_is_unauthorized(make_client: MakeClient) -> None:
    client = await make_client(access_key="ak", secret_key="sk")

    with pytest.raises(CattleUnauthorized) as caught:
        await cattle(client, access_key="ak", secret_key="wrong").get_service("1a5", "1s7")

    assert caught.value.status == 401


async def test_client_is_busy_when_service_restarts(make_client: MakeClient) -> None:
    client = await make_client()
    client.app[SANDBOX_STATE].set_state("1a5", "1s7", "restarting")

    with pytest.raises(CattleBusy) as caught:
        await cattle(client).set_service_scale("1a5", "1s7", 2)

    assert (caught.value.status, caught.value.code) == (409, "Conflict")


async def test_fail_rate_one_makes_every_request_unavailable(make_client: MakeClient) -> None:
    client = await make_client(fail_rate=1.0, seed=1)

    with pytest.raises(CattleUnavailable) as caught:
        await cattle(client).get_service("1a5", "1s7")

    assert (caught.value.status, caught.value.code) == (503, "ServiceUnavailable")


async def test_fail_rate_with_a_seed_repeats_the_same_failures(make_client: MakeClient) -> None:
    async def statuses() -> list[int]:
        client = await make_client(fail_rate=0.5, seed=42)
        out = []
        for _ in range(20):
            async with client.get(SERVICE) as response:
                out.append(response.status)
        return out

    first, second = await statuses(), await statuses()

    assert first == second
    assert set(first) == {200, 503}


# -- seed and start-up


def test_example_seed_loads() -> None:
    seed = load_seed(EXAMPLE_SEED)

    (project,) = seed.projects
    assert (project.id, project.name) == ("1a5", "Default")
    assert [(s.id, s.name, s.scale) for s in project.services] == [
        ("1s7", "web", 1),
        ("1s8", "worker", 2),
        ("1s9", "builder", 1),
    ]
    assert project.services[0].image == "docker:nginx:1.13"
    assert project.services[0].labels == {"app": "web"}


def test_no_seed_starts_the_example_world(clock: FakeClock) -> None:
    app = make_sandbox_app(None, SandboxOptions(), clock=clock)
    example = make_sandbox_app(load_seed(EXAMPLE_SEED), SandboxOptions(), clock=clock)

    assert app[SANDBOX_STATE].projects == example[SANDBOX_STATE].projects


def test_seed_reports_every_problem_with_its_path(tmp_path: Path) -> None:
    path = tmp_path / "seed.yaml"
    path.write_text("projects:\n  - id: 1a5\n    services:\n      - {id: 1s7, name: web, scale: -1}\n"
                    "      - {id: 1s7, name: web2}\n")  # fmt: skip

    with pytest.raises(SeedError) as caught:
        load_seed(path)

    assert "projects[0].services[0].scale" in str(caught.value)
    assert "duplicate service in project 1a5 id '1s7'" in str(caught.value)


async def test_run_sandbox_listens_on_loopback_and_logs_the_banner(
    seed: SandboxSeed, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="controller.sandbox.app")
    runner = await run_sandbox("127.0.0.1", 0, seed, SandboxOptions())
    try:
        host, port = runner.addresses[0][:2]
        assert host == "127.0.0.1"
        assert port > 0
    finally:
        await runner.cleanup()

    assert any(
        r.levelno == logging.WARNING
        and "SANDBOX: this is an emulated Cattle API, not Rancher" in r.getMessage()
        for r in caplog.records
    )


# -- Cattle's service proxy (forwardPost)


PROXY = "/r/projects/1a5/web:8080"


async def test_proxy_answers_as_an_echo_upstream_without_an_upstream(make_client: MakeClient) -> None:
    client = await make_client()
    async with client.post(
        f"{PROXY}/hooks/in?a=1&a=2", data=b"hello", headers={"Content-Type": "text/plain"}
    ) as response:
        assert response.status == 200
        echo = await response.json()
    headers = echo.pop("headers")  # what the test client sends besides varies with aiohttp's version
    assert ["Content-Type", "text/plain"] in headers
    assert echo == {
        "method": "POST",
        "path": "/hooks/in",
        "query": [["a", "1"], ["a", "2"]],
        "contentType": "text/plain",
        "body": "hello",
    }


async def test_proxy_forwards_to_a_seeded_upstream(
    aiohttp_client: AiohttpClient, aiohttp_server: Any, clock: FakeClock
) -> None:
    upstream = await aiohttp_server(upstream_app())
    seed = parse_seed(
        {
            "projects": [
                {
                    "id": "1a5",
                    "services": [{"id": "1s7", "name": "web", "upstream": str(upstream.make_url(""))}],
                }
            ]
        }
    )
    client = await aiohttp_client(make_sandbox_app(seed, SandboxOptions(), clock=clock))
    async with client.post(f"{PROXY}/x?b=2", data=b"{}", headers={"Content-Type": "application/json"}) as r:
        assert r.status == 200
        seen = await r.json()
    assert (seen["upstream"], seen["path"], seen["query"]) == (True, "/x", [["b", "2"]])
    assert (seen["contentType"], seen["body"]) == ("application/json", "{}")
    async with client.post(f"{PROXY}/status/201") as r:
        assert (r.status, await r.text()) == (201, "upstream says 201")


async def test_proxy_to_an_unknown_service_name_is_404(make_client: MakeClient) -> None:
    client = await make_client()
    status, body = await json_of(client, "POST", "/r/projects/1a5/nope:8080/")
    assert (status, body["code"]) == (404, "NotFound")


@pytest.mark.parametrize("endpoint", ["web:0", "web:65536", "web:http", "web"])
async def test_proxy_port_outside_1_to_65535_is_422(make_client: MakeClient, endpoint: str) -> None:
    client = await make_client()
    status, body = await json_of(client, "POST", f"/r/projects/1a5/{endpoint}/")
    assert (status, body["code"]) == (422, "InvalidOption")


async def test_proxy_requires_the_same_auth_as_the_api(make_client: MakeClient) -> None:
    client = await make_client(access_key="ak", secret_key="sk")
    assert (await json_of(client, "POST", f"{PROXY}/"))[0] == 401
    via = cattle(client, access_key="ak", secret_key="sk")
    status, body, content_type = await via.proxy_post(
        "1a5", "web", 8080, "/p", [("q", "1")], b"data", "text/plain", timeout=5, max_bytes=1024
    )
    assert (status, content_type) == (200, "application/json; charset=utf-8")
    assert json.loads(body)["query"] == [["q", "1"]]


async def test_proxy_post_refuses_an_answer_over_max_bytes(make_client: MakeClient) -> None:
    client = await make_client()
    with pytest.raises(CattleAnswerTooLarge):
        await cattle(client).proxy_post("1a5", "web", 8080, "/", [], b"y" * 500, "", timeout=5, max_bytes=100)


async def test_proxy_post_to_nothing_listening_is_unavailable() -> None:
    async with aiohttp.ClientSession() as session:
        client = CattleClient(
            session, base_url="http://127.0.0.1:9/v2-beta", access_key=None, secret_key=None
        )
        with pytest.raises(CattleUnavailable):
            await client.proxy_post("1a5", "web", 80, "/", [], b"", "", timeout=2, max_bytes=100)


def test_a_seed_upstream_must_be_an_http_url() -> None:
    with pytest.raises(SeedError, match="upstream"):
        parse_seed(
            {"projects": [{"id": "1a5", "services": [{"id": "1s7", "name": "w", "upstream": "ftp://x"}]}]}
        )
