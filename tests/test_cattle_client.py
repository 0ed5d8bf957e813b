"""CattleClient against canned answers (aioresponses): URLs, auth, pagination, and the error mapping."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest
from aioresponses import aioresponses
from prometheus_client import CollectorRegistry
from yarl import URL

from controller.cattle.client import CattleClient, parse_retry_after
from controller.cattle.errors import (
    CattleBusy,
    CattleNotFound,
    CattleProtocolError,
    CattleRequestError,
    CattleUnauthorized,
    CattleUnavailable,
)
from controller.metrics import Metrics

BASE = "http://rancher.test:8080/v2-beta"
SERVICE_URL = f"{BASE}/projects/1a5/services/1s7"
NOW = 1_700_000_000.0


def service_body(scale: int = 1, **extra: Any) -> dict[str, Any]:
    return {"id": "1s7", "type": "service", "state": "active", "scale": scale, "transitioning": "no", **extra}


def page(ids: list[str], next_link: str | None) -> dict[str, Any]:
    return {
        "type": "collection",
        "resourceType": "service",
        "data": [service_body(id=i) for i in ids],
        "pagination": {"next": next_link, "limit": len(ids), "partial": next_link is not None},
    }


def error_body(status: int, code: str, message: str) -> dict[str, Any]:
    return {"id": "e1", "type": "error", "status": status, "code": code, "message": message, "detail": None}


class _SentWriter:
    """Stands in for the request writer of an already-sent request (all ClientResponse reads of it)."""

    output_size = 0


class _Response(aiohttp.ClientResponse):
    # aioresponses 0.7.9 builds ClientResponse without the stream_writer argument aiohttp 3.14 requires.
    def __init__(self, method: str, url: URL, **kwargs: Any) -> None:
        kwargs.setdefault("stream_writer", _SentWriter())
        super().__init__(method, url, **kwargs)


class _Mocked(aioresponses):
    def add(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("response_class", _Response)
        super().add(*args, **kwargs)


@pytest.fixture
def mocked() -> Iterator[aioresponses]:
    with _Mocked() as m:
        yield m


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
def metrics() -> Metrics:
    return Metrics(CollectorRegistry())


@pytest.fixture
def client(session: aiohttp.ClientSession, metrics: Metrics) -> CattleClient:
    return CattleClient(
        session, base_url=BASE + "/", access_key="ak", secret_key="sk", metrics=metrics, clock=lambda: NOW
    )


def only_call(mocked: aioresponses, method: str, url: str) -> dict[str, Any]:
    calls = mocked.requests[(method, URL(url))]
    assert len(calls) == 1
    kwargs: dict[str, Any] = calls[0].kwargs
    return kwargs


async def test_get_service_uses_project_scoped_url_basic_auth_and_no_challenge(
    mocked: aioresponses, client: CattleClient
) -> None:
    mocked.get(SERVICE_URL, payload=service_body(scale=3))

    got = await client.get_service("1a5", "1s7")

    assert got["scale"] == 3
    kwargs = only_call(mocked, "GET", SERVICE_URL)
    assert kwargs["headers"]["Authorization"] == "Basic YWs6c2s="  # base64("ak:sk")
    assert kwargs["headers"]["X-API-No-Challenge"] == "true"
    assert kwargs["headers"]["Accept"] == "application/json"


async def test_no_keys_sends_no_auth(mocked: aioresponses, session: aiohttp.ClientSession) -> None:
    anonymous = CattleClient(session, base_url=BASE, access_key=None, secret_key=None)
    mocked.get(SERVICE_URL, payload=service_body())

    await anonymous.get_service("1a5", "1s7")

    assert "Authorization" not in only_call(mocked, "GET", SERVICE_URL)["headers"]


async def test_set_service_scale_puts_only_the_scale(mocked: aioresponses, client: CattleClient) -> None:
    mocked.put(SERVICE_URL, payload=service_body(scale=4, state="updating-active", transitioning="yes"))

    got = await client.set_service_scale("1a5", "1s7", 4)

    assert got["state"] == "updating-active"
    assert only_call(mocked, "PUT", SERVICE_URL)["json"] == {"scale": 4}


async def test_get_project_returns_the_project(mocked: aioresponses, client: CattleClient) -> None:
    mocked.get(f"{BASE}/projects/1a5", payload={"id": "1a5", "type": "project", "name": "Default"})

    assert (await client.get_project("1a5"))["name"] == "Default"


async def test_list_services_follows_pagination_across_three_pages(
    mocked: aioresponses, client: CattleClient
) -> None:
    first = f"{BASE}/projects/1a5/services?name=web"
    second = f"{BASE}/projects/1a5/services?marker=m2&name=web"
    third = f"{BASE}/projects/1a5/services?marker=m4&name=web"
    mocked.get(first, payload=page(["1s1", "1s2"], second))
    mocked.get(second, payload=page(["1s3", "1s4"], third))
    mocked.get(third, payload=page(["1s5"], None))

    got = await client.list_services("1a5", name="web")

    assert [s["id"] for s in got] == ["1s1", "1s2", "1s3", "1s4", "1s5"]


async def test_list_services_keeps_our_host_when_next_names_another(
    mocked: aioresponses, client: CattleClient
) -> None:
    mocked.get(f"{BASE}/projects/1a5/services", payload=page(["1s1"], "http://evil.test/x?marker=m1"))
    mocked.get(f"{BASE}/projects/1a5/services?marker=m1", payload=page(["1s2"], None))

    got = await client.list_services("1a5")

    assert [s["id"] for s in got] == ["1s1", "1s2"]


async def test_list_services_refuses_a_next_link_that_repeats(
    mocked: aioresponses, client: CattleClient
) -> None:
    loop_link = f"{BASE}/projects/1a5/services?marker=m1"
    mocked.get(f"{BASE}/projects/1a5/services", payload=page(["1s1"], loop_link))
    mocked.get(loop_link, payload=page(["1s2"], loop_link), repeat=True)

    with pytest.raises(CattleProtocolError):
        await client.list_services("1a5")


async def test_v1_base_url_builds_v1_paths(mocked: aioresponses, session: aiohttp.ClientSession) -> None:
    v1 = CattleClient(session, base_url="http://rancher.test:8080/v1", access_key=None, secret_key=None)
    mocked.get("http://rancher.test:8080/v1/projects/1a5/services/1s7", payload=service_body(scale=2))

    assert (await v1.get_service("1a5", "1s7"))["scale"] == 2


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        (500, "InternalServerError", CattleUnavailable),
        (503, "ServiceUnavailable", CattleUnavailable),
        (409, "Conflict", CattleBusy),
        (422, "InvalidState", CattleBusy),
        (401, "Unauthorized", CattleUnauthorized),
        (403, "Forbidden", CattleUnauthorized),
        (404, "NotFound", CattleNotFound),
        (400, "InvalidBodyContent", CattleRequestError),
        (405, "MethodNotAllowed", CattleRequestError),
    ],
)
async def test_error_status_maps_to_its_cattle_error(
    mocked: aioresponses, client: CattleClient, status: int, code: str, expected: type[Exception]
) -> None:
    mocked.get(SERVICE_URL, status=status, payload=error_body(status, code, "it went wrong"))

    with pytest.raises(expected) as caught:
        await client.get_service("1a5", "1s7")

    assert (caught.value.status, caught.value.code) == (status, code)  # type: ignore[attr-defined]
    assert "it went wrong" in str(caught.value)


async def test_retry_after_seconds_is_carried(mocked: aioresponses, client: CattleClient) -> None:
    mocked.put(SERVICE_URL, status=503, payload=error_body(503, "ServiceUnavailable", "busy"),
               headers={"Retry-After": "7"})  # fmt: skip

    with pytest.raises(CattleUnavailable) as caught:
        await client.set_service_scale("1a5", "1s7", 2)

    assert caught.value.retry_after == 7.0


async def test_retry_after_http_date_is_seconds_from_the_clock(
    mocked: aioresponses, client: CattleClient
) -> None:
    mocked.put(SERVICE_URL, status=409, payload=error_body(409, "Conflict", "busy"),
               headers={"Retry-After": "Tue, 14 Nov 2023 22:13:50 GMT"})  # fmt: skip

    with pytest.raises(CattleBusy) as caught:
        await client.set_service_scale("1a5", "1s7", 2)

    assert caught.value.retry_after == 30.0  # NOW is 22:13:20 GMT


def test_unparseable_retry_after_is_none() -> None:
    assert parse_retry_after("soon", now=NOW) is None


async def test_long_error_bodies_are_truncated(mocked: aioresponses, client: CattleClient) -> None:
    mocked.get(SERVICE_URL, status=502, body="<html>" + "x" * 5000)

    with pytest.raises(CattleUnavailable) as caught:
        await client.get_service("1a5", "1s7")

    assert len(str(caught.value)) < 700


async def test_timeout_is_unavailable_with_status_zero(mocked: aioresponses, client: CattleClient) -> None:
    mocked.get(SERVICE_URL, exception=TimeoutError())

    with pytest.raises(CattleUnavailable) as caught:
        await client.get_service("1a5", "1s7")

    assert caught.value.status == 0
    assert isinstance(caught.value.__cause__, TimeoutError)


async def test_connection_error_is_unavailable(mocked: aioresponses, client: CattleClient) -> None:
    mocked.get(SERVICE_URL, exception=aiohttp.ClientConnectionError("refused"))

    with pytest.raises(CattleUnavailable) as caught:
        await client.get_service("1a5", "1s7")

    assert isinstance(caught.value.__cause__, aiohttp.ClientConnectionError)


async def test_non_json_answer_is_a_protocol_error(mocked: aioresponses, client: CattleClient) -> None:
    mocked.get(SERVICE_URL, status=200, body="<html>login</html>", content_type="text/html")

    with pytest.raises(CattleProtocolError):
        await client.get_service("1a5", "1s7")


async def test_json_that_is_not_a_resource_is_a_protocol_error(
    mocked: aioresponses, client: CattleClient
) -> None:
    mocked.get(SERVICE_URL, payload=[1, 2, 3])

    with pytest.raises(CattleProtocolError):
        await client.get_service("1a5", "1s7")


async def test_non_integer_scale_is_a_protocol_error(mocked: aioresponses, client: CattleClient) -> None:
    mocked.get(SERVICE_URL, payload=service_body(scale="3"))  # type: ignore[arg-type]

    with pytest.raises(CattleProtocolError):
        await client.get_service("1a5", "1s7")


async def test_requests_are_counted_by_method_and_status(
    mocked: aioresponses, client: CattleClient, metrics: Metrics
) -> None:
    mocked.get(SERVICE_URL, payload=service_body())
    mocked.get(SERVICE_URL, exception=TimeoutError())

    await client.get_service("1a5", "1s7")
    with pytest.raises(CattleUnavailable):
        await client.get_service("1a5", "1s7")

    sample = metrics.registry.get_sample_value
    assert sample("webhook_cattle_requests_total", {"method": "GET", "code": "200"}) == 1.0
    assert sample("webhook_cattle_requests_total", {"method": "GET", "code": "0"}) == 1.0


# -- hosts

HOSTS_URL = f"{BASE}/projects/1a5/hosts"


def host_body(host_id: str, **extra: Any) -> dict[str, Any]:
    return {"id": host_id, "type": "host", "state": "active", "labels": {"role": "worker"}, **extra}


async def test_list_hosts_follows_pagination(mocked: aioresponses, client: CattleClient) -> None:
    second = f"{HOSTS_URL}?marker=m2"
    mocked.get(HOSTS_URL, payload={**page([], second), "data": [host_body("1h1"), host_body("1h2")]})
    mocked.get(second, payload={**page([], None), "data": [host_body("1h3")]})

    got = await client.list_hosts("1a5")

    assert [h["id"] for h in got] == ["1h1", "1h2", "1h3"]


async def test_get_host_uses_the_project_scoped_url(mocked: aioresponses, client: CattleClient) -> None:
    mocked.get(f"{HOSTS_URL}/1h3", payload=host_body("1h3", agentState="disconnected"))

    assert (await client.get_host("1a5", "1h3"))["agentState"] == "disconnected"


async def test_create_host_posts_the_body_and_returns_the_requested_host(
    mocked: aioresponses, client: CattleClient
) -> None:
    body = {"hostname": "worker-4", "labels": {"role": "worker"}, "digitaloceanConfig": {"size": "2gb"}}
    mocked.post(HOSTS_URL, status=201, payload=host_body("1h9", state="requested", transitioning="yes"))

    got = await client.create_host("1a5", body)

    assert (got["id"], got["state"]) == ("1h9", "requested")
    assert only_call(mocked, "POST", HOSTS_URL)["json"] == body


async def test_evacuate_host_posts_a_host_evacuate_event_that_deletes_it(
    mocked: aioresponses, client: CattleClient
) -> None:
    url = f"{BASE}/projects/1a5/externalhostevents"
    mocked.post(url, status=201, payload={"id": "1ee1", "type": "externalHostEvent"})

    await client.evacuate_host("1a5", "1h3")

    assert only_call(mocked, "POST", url)["json"] == {
        "eventType": "host.evacuate",
        "hostId": "1h3",
        "deleteHost": True,
    }


async def test_a_refused_host_create_is_busy_with_cattles_code(
    mocked: aioresponses, client: CattleClient
) -> None:
    mocked.post(
        HOSTS_URL, status=422, payload=error_body(422, "DriverConfigExactlyOneRequired", "one config")
    )

    with pytest.raises(CattleBusy, match="DriverConfigExactlyOneRequired"):
        await client.create_host("1a5", {"hostname": "x"})


async def test_host_with_malformed_labels_is_a_protocol_error(
    mocked: aioresponses, client: CattleClient
) -> None:
    mocked.get(f"{HOSTS_URL}/1h3", payload=host_body("1h3", labels=["role=worker"]))

    with pytest.raises(CattleProtocolError, match="malformed labels"):
        await client.get_host("1a5", "1h3")


# -- in-service upgrades


async def test_upgrade_service_posts_the_in_service_strategy_to_the_upgrade_action(
    mocked: aioresponses, client: CattleClient
) -> None:
    url = f"{SERVICE_URL}/?action=upgrade"
    strategy = {
        "batchSize": 1,
        "intervalMillis": 2000,
        "startFirst": False,
        "launchConfig": {"imageUuid": "x"},
    }
    mocked.post(url, status=202, payload=service_body(state="upgrading", transitioning="yes"))

    got = await client.upgrade_service("1a5", "1s7", strategy)

    assert got["state"] == "upgrading"
    assert only_call(mocked, "POST", url)["json"] == {"inServiceStrategy": strategy}


@pytest.mark.parametrize(
    ("method", "action", "state"),
    [
        ("finish_upgrade", "finishupgrade", "finishing-upgrade"),
        ("rollback_service", "rollback", "rolling-back"),
    ],
)
async def test_finish_and_rollback_post_their_action_without_a_body(
    mocked: aioresponses, client: CattleClient, method: str, action: str, state: str
) -> None:
    url = f"{SERVICE_URL}/?action={action}"
    mocked.post(url, status=202, payload=service_body(state=state, transitioning="yes"))

    got = await getattr(client, method)("1a5", "1s7")

    assert got["state"] == state
    assert only_call(mocked, "POST", url)["json"] is None


async def test_an_action_not_available_is_busy_with_cattles_code(
    mocked: aioresponses, client: CattleClient
) -> None:
    url = f"{SERVICE_URL}/?action=finishupgrade"
    mocked.post(url, status=422, payload=error_body(422, "ActionNotAvailable", "finishupgrade"))

    with pytest.raises(CattleBusy) as caught:
        await client.finish_upgrade("1a5", "1s7")

    assert (caught.value.status, caught.value.code) == (422, "ActionNotAvailable")
