"""The sandbox's API keys and roles: who is let in, the schemas each role is served, what it may change."""

from __future__ import annotations

from typing import Any

import pytest
from pytest_aiohttp import AiohttpClient

from controller.cattle.client import CattleClient, basic_auth
from controller.cattle.errors import CattleUnauthorized
from controller.sandbox.app import SandboxOptions, make_sandbox_app
from controller.sandbox.seed import SandboxSeed, SeedError, parse_seed
from tests.sandbox_harness import Client, MakeClient, json_of

SERVICE = "/v2-beta/projects/1a5/services/1s7"
KEYS = [
    {"accessKey": "owner-access", "secretKey": "owner-secret", "role": "owner"},
    {"accessKey": "restricted-access", "secretKey": "restricted-secret", "role": "restricted"},
    {"accessKey": "readonly-access", "secretKey": "readonly-secret", "role": "readonly"},
]


@pytest.fixture
def seed() -> SandboxSeed:
    return parse_seed(
        {
            "projects": [{"id": "1a5", "services": [{"id": "1s7", "name": "web", "stackId": "1st1"}]}],
            "keys": KEYS,
        }
    )


def as_key(role: str) -> dict[str, str]:
    return {"Authorization": basic_auth(f"{role}-access", f"{role}-secret")}


async def methods_of(client: Client, schema_id: str, role: str | None) -> tuple[list[str], list[str]]:
    """The methods of one schema the role's key is served (``None``: a request without credentials)."""
    headers = as_key(role) if role else {}
    status, body = await json_of(client, "GET", "/v2-beta/projects/1a5/schemas", headers=headers)
    assert status == 200
    schema: dict[str, Any] = next(s for s in body["data"] if s["id"] == schema_id)
    return schema["collectionMethods"], schema["resourceMethods"]


async def test_an_owner_key_is_served_schemas_that_offer_creating_and_changing_services_and_hosts(
    make_client: MakeClient,
) -> None:
    client = await make_client()
    assert await methods_of(client, "service", "owner") == (["GET", "POST"], ["GET", "PUT", "DELETE"])
    assert await methods_of(client, "host", "owner") == (["GET", "POST"], ["GET", "PUT", "DELETE"])


async def test_a_readonly_key_is_served_schemas_without_create_or_put_on_service(
    make_client: MakeClient,
) -> None:
    client = await make_client()
    assert await methods_of(client, "service", "readonly") == (["GET"], ["GET"])


async def test_a_restricted_key_may_change_services_but_not_hosts(make_client: MakeClient) -> None:
    client = await make_client()
    assert await methods_of(client, "service", "restricted") == (["GET", "POST"], ["GET", "PUT", "DELETE"])
    assert await methods_of(client, "host", "restricted") == (["GET"], ["GET"])


async def test_an_unknown_key_is_refused_401_with_cattles_challenge(make_client: MakeClient) -> None:
    client = await make_client()
    headers = {"Authorization": basic_auth("owner-access", "wrong-secret")}
    async with client.get(SERVICE, headers=headers) as response:
        assert response.status == 401
        assert response.headers["WWW-Authenticate"].startswith("Basic realm=")


async def test_a_readonly_key_reads_but_its_put_of_a_scale_is_refused_405(make_client: MakeClient) -> None:
    client = await make_client()
    status, _ = await json_of(client, "GET", SERVICE, headers=as_key("readonly"))
    assert status == 200
    status, body = await json_of(client, "PUT", SERVICE, json={"scale": 3}, headers=as_key("readonly"))
    assert (status, body["code"]) == (405, "MethodNotAllowed")
    _, service = await json_of(client, "GET", SERVICE)
    assert service["scale"] == 1


async def test_an_owner_key_may_put_a_scale(make_client: MakeClient) -> None:
    client = await make_client()
    status, body = await json_of(client, "PUT", SERVICE, json={"scale": 3}, headers=as_key("owner"))
    assert (status, body["scale"]) == (200, 3)


async def test_without_credentials_the_caller_is_an_owner_while_no_options_key_is_set(
    make_client: MakeClient,
) -> None:
    client = await make_client()
    assert await methods_of(client, "service", None) == (["GET", "POST"], ["GET", "PUT", "DELETE"])


async def test_the_options_key_is_required_when_set_and_seeded_keys_still_work(
    make_client: MakeClient,
) -> None:
    client = await make_client(access_key="svc", secret_key="svc-secret")
    status, _ = await json_of(client, "GET", SERVICE)
    assert status == 401
    status, _ = await json_of(client, "GET", SERVICE, headers=as_key("readonly"))
    assert status == 200


async def test_project_schemas_of_an_unknown_project_are_404(make_client: MakeClient) -> None:
    client = await make_client()
    status, _ = await json_of(client, "GET", "/v2-beta/projects/1a99/schemas", headers=as_key("owner"))
    assert status == 404


def test_a_seed_key_with_an_unknown_role_is_a_seed_problem() -> None:
    with pytest.raises(SeedError, match=r"keys\[0\]\.role"):
        parse_seed({"projects": [], "keys": [{"accessKey": "a", "secretKey": "b", "role": "admin"}]})


def test_a_seed_key_declared_twice_is_a_seed_problem() -> None:
    key = {"accessKey": "a", "secretKey": "b"}
    with pytest.raises(SeedError, match="duplicate API key"):
        parse_seed({"projects": [], "keys": [key, key]})


# -- through the real CattleClient: what the receivers API asks before it creates or deletes


def cattle_as(client: Client, access_key: str, secret_key: str) -> CattleClient:
    base = str(client.make_url("/v2-beta"))
    return CattleClient(client.session, base_url=base, access_key=access_key, secret_key=secret_key)


@pytest.mark.parametrize(("role", "may"), [("owner", True), ("restricted", False), ("readonly", False)])
async def test_may_change_project_follows_the_schemas_served_to_the_key(
    make_client: MakeClient, role: str, may: bool
) -> None:
    client = await make_client()
    assert await cattle_as(client, f"{role}-access", f"{role}-secret").may_change_project("1a5") is may


async def test_may_change_project_with_an_unknown_key_raises_unauthorized(make_client: MakeClient) -> None:
    client = await make_client()
    with pytest.raises(CattleUnauthorized) as raised:
        await cattle_as(client, "nobody", "nothing").may_change_project("1a5")
    assert raised.value.status == 401


async def test_without_seeded_keys_any_credentials_are_let_in(aiohttp_client: AiohttpClient) -> None:
    client = await aiohttp_client(make_sandbox_app(None, SandboxOptions()))
    status, _ = await json_of(client, "GET", SERVICE, headers=as_key("anyone"))
    assert status == 200
