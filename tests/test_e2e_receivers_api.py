"""The receivers API end to end: a real ``webhook-service run`` against a real ``cattle-sandbox`` whose
seed holds an owner's and a read-only user's API keys. The requests are the Rancher Pipeline's create
and a Rancher client's list, get and delete, with HTTP Basic keys as Rancher clients send them.

One sandbox and one service serve the whole module (starting them is most of the cost); each test
creates receivers of its own names.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from controller.cattle.client import basic_auth
from tests.processes import Sandbox, Service

pytestmark = pytest.mark.e2e

SEED = """\
projects:
  - id: 1a5
    services:
      - {id: 1s7, name: web, stackId: 1st1, scale: 1}
      - {id: 1s9, name: pipeline-server, stackId: 1st1}
keys:
  - {accessKey: owner-access, secretKey: owner-secret, role: owner}
  - {accessKey: readonly-access, secretKey: readonly-secret, role: readonly}
"""
OWNER = {"Authorization": basic_auth("owner-access", "owner-secret")}
READONLY = {"Authorization": basic_auth("readonly-access", "readonly-secret")}
# What the Rancher Pipeline POSTs (its port is a string).
PIPELINE = {
    "name": "pipeline-webhook",
    "driver": "forwardPost",
    "forwardPostConfig": {
        "projectId": "1a5",
        "serviceName": "pipeline-server",
        "port": "60080",
        "path": "/v1/webhook",
    },
}


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    tmp = tmp_path_factory.mktemp("receivers-api")
    seed = tmp / "seed.yaml"
    seed.write_text(SEED)
    (tmp / "receivers").mkdir()
    sandbox = Sandbox(tmp, seed).start_and_wait()
    svc = Service(tmp, receivers=tmp / "receivers", state=tmp / "state", cattle_url=sandbox.url)
    try:
        yield svc.start_and_wait()
    finally:
        svc.stop()
        sandbox.stop()


async def call(method: str, url: str, *, headers: dict[str, str], body: Any = None) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, url, headers=headers, json=body, params={"projectId": "1a5"}) as answer,
    ):
        return answer.status, (None if answer.status == 204 else await answer.json())


async def hit(url: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session, session.post(url, json={"ref": "main"}) as answer:
        return answer.status, await answer.json()


async def test_the_pipelines_receiver_forwards_until_deleted_and_not_a_moment_longer(
    service: Service,
) -> None:
    receivers = f"{service.base}/v1-webhooks/receivers"

    status, created = await call("POST", receivers, headers=OWNER, body=PIPELINE)
    assert (status, created["state"], created["driver"]) == (200, "active", "forwardPost")
    status, echoed = await hit(created["url"])  # the sandbox's proxy echoes what reached pipeline-server
    assert (status, echoed["path"], echoed["body"]) == (200, "/v1/webhook", '{"ref": "main"}')

    status, listed = await call("GET", receivers, headers=OWNER)
    assert status == 200
    assert {r["id"]: r["url"] for r in listed["data"]}[created["id"]] == created["url"]
    status, got = await call("GET", created["links"]["self"], headers=OWNER)
    assert (status, got["url"], got["forwardPostConfig"]["serviceName"]) == (
        200,
        created["url"],
        "pipeline-server",
    )

    status, _ = await call("DELETE", created["links"]["self"], headers=OWNER)
    assert status == 204
    assert (await hit(created["url"]))[0] in (401, 403)
    status, _ = await call("GET", created["links"]["self"], headers=OWNER)
    assert status == 404


async def test_a_readonly_key_may_not_create_or_delete_and_never_sees_a_url(service: Service) -> None:
    receivers = f"{service.base}/v1-webhooks/receivers"
    body = {
        "name": "web-up",
        "driver": "scaleService",
        "scaleServiceConfig": {"serviceId": "1s7", "action": "up", "amount": 1, "min": 1, "max": 3},
    }
    status, created = await call("POST", receivers, headers=OWNER, body=body)
    assert status == 200

    status, refused = await call("POST", receivers, headers=READONLY, body={**body, "name": "web-up-2"})
    assert (status, refused["type"], refused["statusCode"]) == (405, "error", 405)
    status, _ = await call("DELETE", created["links"]["self"], headers=READONLY)
    assert status == 405

    _, listed = await call("GET", receivers, headers=READONLY)
    _, got = await call("GET", created["links"]["self"], headers=READONLY)
    assert [r["id"] for r in listed["data"] if "url" in r] == []
    assert created["id"] in [r["id"] for r in listed["data"]]
    assert "url" not in got
    assert (await hit(created["url"]))[0] == 200  # still there: the refused delete removed nothing


async def test_an_unknown_key_is_401(service: Service) -> None:
    headers = {"Authorization": basic_auth("owner-access", "not-the-secret")}
    status, body = await call("GET", f"{service.base}/v1-webhooks/receivers", headers=headers)
    assert (status, body["statusCode"], body["status"]) == (401, 401, "Server Error")


def test_the_managed_folder_is_beside_the_state(service: Service) -> None:
    assert Path(service.state / "api-receivers").is_dir()
