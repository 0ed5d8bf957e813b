"""End to end, forwardPost: ``cattle-sandbox`` and ``webhook-service run`` as real processes, and an
upstream (tests/upstream.py) that the sandbox's service proxy forwards to over real sockets."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from tests.processes import Sandbox, Service, free_port
from tests.upstream import upstream_app

pytestmark = pytest.mark.e2e

RECEIVER = """\
apiVersion: webhook-service.dev/v1
kind: Receiver
metadata: {name: relay}
spec:
  driver: forwardPost
  forwardPostConfig: {projectId: 1a5, serviceName: web, port: 8080, path: /hooks}
"""


@pytest.fixture
async def upstream() -> AsyncIterator[str]:
    runner = web.AppRunner(upstream_app())
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def test_a_hit_is_forwarded_through_the_sandbox_proxy_and_answered_by_upstream(
    tmp_path: Path, upstream: str
) -> None:
    seed = tmp_path / "seed.yaml"
    seed.write_text(
        "projects:\n"
        "  - id: 1a5\n"
        "    services:\n"
        f"      - {{id: 1s7, name: web, stackId: 1st1, upstream: '{upstream}'}}\n"
    )
    receivers = tmp_path / "receivers"
    receivers.mkdir()
    (receivers / "relay.yaml").write_text(RECEIVER)
    sandbox = Sandbox(tmp_path, seed).start_and_wait()
    service = Service(tmp_path, receivers=receivers, state=tmp_path / "state", cattle_url=sandbox.url)
    try:
        service.start_and_wait()
        url = service.trigger_url("relay")
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
    finally:
        service.stop()
        sandbox.stop()
