"""End to end, forwardPost: ``cattle-sandbox`` and ``webhook-service run`` as real processes, started
once for the module. The sandbox's service proxy forwards ``web`` to an upstream (tests/upstream.py)
over real sockets, on a port chosen before the sandbox starts, and answers for ``echo`` as the echo
service, with what it received."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import aiohttp
import pytest
from aiohttp import web

from tests.processes import Sandbox, Service, free_port
from tests.upstream import SECRET, github_push, upstream_app

pytestmark = pytest.mark.e2e

RECEIVERS = """\
apiVersion: webhook-service.dev/v1
kind: Receiver
metadata: {name: relay}
spec:
  driver: forwardPost
  forwardPostConfig: {projectId: 1a5, serviceName: web, port: 8080, path: /hooks}
---
apiVersion: webhook-service.dev/v1
kind: Receiver
metadata: {name: pipeline}
spec:
  driver: forwardPost
  # As the Rancher Pipeline writes it: the port is a string.
  forwardPostConfig: {projectId: 1a5, serviceName: echo, port: "60080", path: /hooks}
"""


@dataclass(frozen=True)
class Relay:
    service: Service
    upstream_port: int


@pytest.fixture(scope="module")
def relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Relay]:
    tmp = tmp_path_factory.mktemp("forward")
    upstream_port = free_port()
    seed = tmp / "seed.yaml"
    seed.write_text(
        "projects:\n"
        "  - id: 1a5\n"
        "    services:\n"
        f"      - {{id: 1s7, name: web, stackId: 1st1, upstream: 'http://127.0.0.1:{upstream_port}'}}\n"
        "      - {id: 1s8, name: echo, stackId: 1st1}\n"
    )
    receivers = tmp / "receivers"
    receivers.mkdir()
    (receivers / "forward.yaml").write_text(RECEIVERS)
    sandbox = Sandbox(tmp, seed).start_and_wait()
    service = Service(tmp, receivers=receivers, state=tmp / "state", cattle_url=sandbox.url)
    try:
        service.start_and_wait()
        yield Relay(service, upstream_port)
    finally:
        service.stop()
        sandbox.stop()


@pytest.fixture
async def upstream(relay: Relay) -> AsyncIterator[None]:
    runner = web.AppRunner(upstream_app())
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", relay.upstream_port).start()
    yield
    await runner.cleanup()


async def test_a_hit_is_forwarded_through_the_sandbox_proxy_and_answered_by_upstream(
    relay: Relay, upstream: None
) -> None:
    url = relay.service.trigger_url("relay")
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{url}&build=42", data=b'{"ref": "main"}', headers={"Content-Type": "application/json"}
        ) as answer,
    ):
        assert (answer.status, answer.headers["X-Webhook-Forwarded"]) == (200, "1")
        seen = await answer.json()
    assert seen == {
        "upstream": True,
        "path": "/hooks",
        "query": [["build", "42"]],
        "contentType": "application/json",
        "body": '{"ref": "main"}',
    }


async def test_a_forwarded_github_push_arrives_with_its_signature_headers_still_valid(relay: Relay) -> None:
    url = relay.service.trigger_url("pipeline")
    headers, body = github_push()
    async with aiohttp.ClientSession() as session, session.post(url, data=body, headers=headers) as answer:
        assert answer.status == 200
        echo = await answer.json()
    arrived = dict(echo["headers"])
    assert {name: arrived.get(name) for name in headers} == headers
    signed = echo["body"].encode()
    assert arrived["X-Hub-Signature"] == "sha1=" + hmac.new(SECRET, signed, hashlib.sha1).hexdigest()
    assert arrived["X-Hub-Signature-256"] == "sha256=" + hmac.new(SECRET, signed, hashlib.sha256).hexdigest()
