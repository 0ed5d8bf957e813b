"""The listener's pass-through hook, with forwardPost: a hit goes through the in-process sandbox's
service proxy to a real upstream (tests/upstream.py), and the upstream's answer is the hit's answer;
its headers go along, as a GitHub push's signature must.

One fixture builds it all: the upstream, a sandbox whose service ``web`` forwards to it (and ``echo``,
which answers as the sandbox's echo), a real store, and a forwardPost driver with small bounds so the
timeout and size tests are quick.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient, TestServer

from controller.drivers import load_drivers
from controller.drivers.contract import DriverSet
from controller.drivers.forward_post import ForwardPostDriver
from controller.listener import TRIGGER_PATH
from controller.manifest import ReceiverSpec
from controller.metrics import Metrics
from controller.model import ActiveReceiver, RateLimit, Receiver
from controller.receiver_set import ReceiverSet
from controller.sandbox.app import SandboxOptions, make_sandbox_app
from controller.sandbox.seed import parse_seed
from controller.settings import Settings
from controller.store.sqlite import SqliteStore
from controller.tokens import KeyRing, TokenVerifier, mint_token
from controller.wiring import wire
from tests.specs import receiver_spec
from tests.upstream import BIG, github_push, upstream_app

AiohttpClient = Callable[..., Awaitable[TestClient[web.Request, web.Application]]]
AiohttpServer = Callable[..., Awaitable[TestServer]]
TIMEOUT = 0.5  # the driver's bound here; tests/upstream.py's /slow takes longer
MAX_BYTES = 1024  # the driver's bound here; /big is larger


def spec(service: str = "web", path: str = "/hooks", port: int | str = 8080) -> ReceiverSpec:
    return receiver_spec(
        "forwardPost", {"projectId": "1a5", "serviceName": service, "port": port, "path": path}
    )


@dataclasses.dataclass
class Harness:
    client: TestClient[web.Request, web.Application]
    receiver_set: ReceiverSet
    store: SqliteStore
    keyring: KeyRing
    metrics: Metrics
    drivers: DriverSet

    def add(self, name: str, receiver_spec: ReceiverSpec, **changes: Any) -> str:
        """Register a forwardPost receiver; returns its token."""
        driver = self.drivers["forwardPost"]
        receiver = Receiver(
            namespace="default",
            name=name,
            driver="forwardPost",
            spec=receiver_spec,
            target=driver.target(receiver_spec, "default"),
            **changes,
        )
        token, kid = mint_token(
            self.keyring, receiver=receiver, uid=f"uid-{name}", jti=f"jti-{name}", now=1.0
        )
        self.receiver_set.put(
            ActiveReceiver(receiver, uid=f"uid-{name}", jti=f"jti-{name}", token=token, kid=kid)
        )
        return token

    async def hit(
        self,
        token: str,
        *,
        query: dict[str, str] | None = None,
        body: bytes = b"",
        content_type: str = "",
        headers: Mapping[str, str] | None = None,
    ) -> ClientResponse:
        params = {"key": token, "projectId": "1a5", **(query or {})}
        sent = {**({"Content-Type": content_type} if content_type else {}), **(headers or {})}
        return await self.client.post(TRIGGER_PATH, params=params, data=body, headers=sent)


@contextlib.asynccontextmanager
async def make_harness(
    tmp_path: Path, aiohttp_client: AiohttpClient, cattle_url: str | None
) -> AsyncIterator[Harness]:
    keyring = KeyRing.load_or_create(tmp_path / "keys")
    drivers = load_drivers().replacing(ForwardPostDriver(timeout=TIMEOUT, max_bytes=MAX_BYTES))
    receiver_set = ReceiverSet()
    receiver_set.loaded = True
    store = SqliteStore(tmp_path / "state.db")
    metrics = Metrics()
    # Without a Cattle URL there is no default Cattle: the driver context's ``cattle`` is None.
    settings = Settings(
        state_dir=tmp_path,
        max_body_bytes=4096,
        cattle_url=cattle_url or "",
        cattle_access_key="ak",
        cattle_secret_key="sk",
    )
    wiring = wire(
        settings,
        store=store,
        receiver_set=receiver_set,
        verifier=TokenVerifier(keyring),
        drivers=drivers,
        metrics=metrics,
        wake=lambda _: None,
        clock=lambda: 2.0,
    )
    # The app opens the store and the HTTP session, and closes them when aiohttp_client stops it.
    client = await aiohttp_client(wiring.app)
    yield Harness(client, receiver_set, store, keyring, metrics, drivers)


@pytest.fixture
async def harness(
    tmp_path: Path, aiohttp_client: AiohttpClient, aiohttp_server: AiohttpServer
) -> AsyncIterator[Harness]:
    upstream = await aiohttp_server(upstream_app())
    seed = parse_seed(
        {
            "projects": [
                {
                    "id": "1a5",
                    "services": [
                        {"id": "1s7", "name": "web", "upstream": str(upstream.make_url("")).rstrip("/")},
                        {"id": "1s8", "name": "echo"},
                    ],
                }
            ]
        }
    )
    sandbox = await aiohttp_server(make_sandbox_app(seed, SandboxOptions(access_key="ak", secret_key="sk")))
    async with make_harness(tmp_path, aiohttp_client, str(sandbox.make_url("/v2-beta"))) as h:
        yield h


async def nothing_recorded(store: SqliteStore) -> bool:
    return (await store.read_status()).last_hits == {} and await store.targets_with_work() == []


async def test_a_hit_is_forwarded_with_its_body_content_type_and_query_without_token_params(
    harness: Harness,
) -> None:
    token = harness.add("fwd", spec())
    response = await harness.hit(
        token, query={"env": "prod", "token": token}, body=b'{"a": 1}', content_type="application/json"
    )
    assert (response.status, response.headers["X-Webhook-Forwarded"]) == (200, "1")
    seen = await response.json()
    assert seen == {
        "upstream": True,
        "path": "/hooks",
        "query": [["env", "prod"]],
        "contentType": "application/json",
        "body": '{"a": 1}',
    }
    assert await nothing_recorded(harness.store)


async def test_a_service_without_upstream_answers_as_the_sandbox_echo(harness: Harness) -> None:
    token = harness.add("echo", spec(service="echo", path="/in"))
    response = await harness.hit(token, body=b"plain words", content_type="text/plain; charset=utf-8")
    echo = await response.json()
    assert (echo["path"], echo["contentType"], echo["body"]) == (
        "/in",
        "text/plain; charset=utf-8",
        "plain words",
    )


async def test_a_github_push_reaches_the_upstream_with_its_signature_and_event_headers(
    harness: Harness,
) -> None:
    token = harness.add("pipeline", spec(path="/headers"))
    headers, body = github_push()
    response = await harness.hit(token, body=body, headers=headers)
    arrived = dict(await response.json())
    assert {name: arrived.get(name) for name in headers} == headers


async def test_the_echo_service_shows_the_headers_it_got_without_the_token_or_authorization(
    harness: Harness,
) -> None:
    token = harness.add("echo", spec(service="echo"))
    sent = {
        "Authorization": f"Bearer {token}",
        "X-Original-URL": f"/v1-webhooks/endpoint?key={token}",
        "Connection": "keep-alive, X-Hop",
        "X-Hop": "for the next hop only",
        "X-GitHub-Event": "push",
        "X-Hub-Signature": "sha1=0123456789abcdef0123456789abcdef01234567",
    }
    response = await harness.hit(token, headers=sent)
    arrived = (await response.json())["headers"]
    names = {name.lower() for name, _ in arrived}
    assert ["X-GitHub-Event", "push"] in arrived and ["X-Hub-Signature", sent["X-Hub-Signature"]] in arrived
    assert names.isdisjoint({"authorization", "x-original-url", "x-hop", "connection", "host"})
    assert not any(token in value for _, value in arrived)


async def test_a_port_given_as_a_string_of_digits_forwards_like_an_integer(harness: Harness) -> None:
    token = harness.add("pipeline", spec(port="8080"))
    response = await harness.hit(token, body=b"{}", content_type="application/json")
    assert (response.status, (await response.json())["body"]) == (200, "{}")


@pytest.mark.parametrize("code", [201, 500])
async def test_the_upstream_status_and_body_are_the_answer(harness: Harness, code: int) -> None:
    token = harness.add("status", spec(path=f"/status/{code}"))
    response = await harness.hit(token)
    assert (response.status, await response.text()) == (code, f"upstream says {code}")
    assert response.content_type == "text/plain"
    assert await nothing_recorded(harness.store)


async def test_an_upstream_slower_than_the_timeout_is_504(harness: Harness) -> None:
    token = harness.add("slow", spec(path="/slow"))
    response = await harness.hit(token)
    assert (response.status, (await response.json())["code"]) == (504, "upstream_timeout")
    assert await nothing_recorded(harness.store)


async def test_an_upstream_answer_over_the_bound_is_502(harness: Harness) -> None:
    assert BIG > MAX_BYTES
    token = harness.add("big", spec(path="/big"))
    response = await harness.hit(token)
    assert (response.status, (await response.json())["code"]) == (502, "upstream_too_large")


async def test_an_unknown_service_answers_cattles_404(harness: Harness) -> None:
    token = harness.add("gone", spec(service="gone"))
    response = await harness.hit(token)
    assert (response.status, (await response.json())["code"]) == (404, "NotFound")


async def test_a_suspended_receiver_forwards_nothing(harness: Harness) -> None:
    token = harness.add("off", spec(), suspend=True)
    response = await harness.hit(token)
    assert (response.status, (await response.json())["outcome"]) == (200, "suspended")
    assert "X-Webhook-Forwarded" not in response.headers


async def test_forwarded_hits_are_counted_as_forwarded(harness: Harness) -> None:
    token = harness.add("fwd", spec())
    await harness.hit(token)
    assert harness.metrics.hits.labels("default/fwd", "forwarded")._value.get() == 1


async def test_forwarded_hits_keep_the_receivers_rate_limit(harness: Harness) -> None:
    # No store sees a pass-through hit: the listener counts it, with the bucket the stores use.
    token = harness.add("fwd", spec(), rate_limit=RateLimit(requests=2, per_seconds=60))
    answers = [await harness.hit(token) for _ in range(3)]
    assert [a.status for a in answers[:2]] == [200, 200]
    assert (answers[2].status, (await answers[2].json())["code"]) == (429, "rate_limited")
    assert answers[2].headers["Retry-After"] == "30"  # one token refills in 60 / 2 s; the clock stands still


async def test_the_token_is_still_checked_before_forwarding(harness: Harness) -> None:
    harness.add("fwd", spec())
    response = await harness.hit("not-a-token")
    assert response.status == 401


async def test_cattle_down_is_502(
    tmp_path: Path, aiohttp_client: AiohttpClient, unused_tcp_port: int
) -> None:
    down = f"http://127.0.0.1:{unused_tcp_port}/v2-beta"
    async with make_harness(tmp_path, aiohttp_client, down) as h:
        token = h.add("fwd", spec())
        response = await h.hit(token)
        assert (response.status, (await response.json())["code"]) == (502, "upstream_unavailable")
        assert await nothing_recorded(h.store)


async def test_no_cattle_configured_is_502(tmp_path: Path, aiohttp_client: AiohttpClient) -> None:
    async with make_harness(tmp_path, aiohttp_client, None) as h:
        token = h.add("fwd", spec())
        response = await h.hit(token)
        body = json.loads(await response.read())
        assert (response.status, body["code"]) == (502, "upstream_unavailable")
