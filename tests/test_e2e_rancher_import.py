"""Moving from Rancher, with real processes: the sandbox holds receivers in Rancher's shape (one per
driver, 40-character keys, and one from before random keys with its RS256 ``?token=``);
``import-rancher`` writes their manifests; ``run`` starts once, and every old URL acts exactly as its
receiver says."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import web

from tests import rancher_objects
from tests.processes import Sandbox, Service, free_port, run_cli, sandbox_scale
from tests.toolbox import until
from tests.upstream import upstream_app

pytestmark = pytest.mark.e2e

PUSH = Path(__file__).parent / "fixtures" / "registry" / "dockerhub-push.json"
NOT_EXPRESSIBLE = {
    **rancher_objects.generic_object("kube scaler", "k" * 40, "scaleKubernetes", {}),
    "id": "1go50",
}
WORKER = {"labels": {"role": "worker"}, "driver": "digitalocean", "digitaloceanConfig": {"size": "2gb"}}


def seed(upstream: str) -> dict[str, Any]:
    return {
        "projects": [
            {
                "id": "1a5",
                "services": [
                    {"id": "1s7", "name": "web", "stackId": "1st1", "scale": 1, "upstream": upstream},
                    {
                        "id": "1s8",
                        "name": "api",
                        "stackId": "1st1",
                        "image": "docker:acme/web:v1.4.1",
                        "labels": {"app": "web"},
                    },
                ],
                "hosts": [{"id": f"1h{n}", "name": f"worker-{n}", **WORKER} for n in (1, 2, 3)],
                "genericObjects": [*rancher_objects.ALL, NOT_EXPRESSIBLE],
            }
        ]
    }


def old_url(service: Service, key: str) -> str:
    return f"{service.base}/v1-webhooks/endpoint?key={key}&projectId=1a5"


def resources(sandbox: Sandbox, collection: str) -> list[dict[str, Any]]:
    with urllib.request.urlopen(f"{sandbox.url}/projects/1a5/{collection}?limit=1000", timeout=2) as answer:
        data: list[dict[str, Any]] = json.load(answer)["data"]
        return data


def api_upgraded(sandbox: Sandbox) -> bool:
    [api] = [s for s in resources(sandbox, "services") if s["id"] == "1s8"]
    return bool(api["state"] == "active" and api["launchConfig"]["imageUuid"] == "docker:acme/web:v1.4.2")


@pytest.fixture
async def upstream() -> AsyncIterator[str]:
    runner = web.AppRunner(upstream_app())
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def test_every_old_rancher_url_acts_as_its_imported_receiver_says(
    tmp_path: Path, upstream: str
) -> None:
    seed_file = tmp_path / "seed.yaml"
    seed_file.write_text(yaml.safe_dump(seed(upstream)))
    sandbox = Sandbox(tmp_path, seed_file).start_and_wait()
    receivers = tmp_path / "receivers"
    cattle_key = rancher_objects.cattle_key()
    public_key = rancher_objects.write_public_key(cattle_key, tmp_path / "cattle.pem")
    service = Service(
        tmp_path,
        receivers=receivers,
        state=tmp_path / "state",
        cattle_url=sandbox.url,
        extra=("--rancher-public-key", str(public_key)),
    )
    try:
        imported = run_cli("import-rancher", "--cattle-url", sandbox.url, "--receivers", str(receivers))
        assert imported.returncode == 1, imported.stderr
        [problem] = imported.stderr.splitlines()
        assert "'kube scaler' (1go50): not imported: driver 'scaleKubernetes'" in problem
        assert len(list(receivers.glob("rancher-*.yaml"))) == len(rancher_objects.ALL)
        assert not any(o["key"] in f.read_text() for o in rancher_objects.ALL for f in receivers.iterdir())

        service.start_and_wait()
        names = ("scale-up-web", "add-worker", "deploy-web", "relay", "old-scale-down")
        await until(lambda: all(service.has_receiver(f"default/{n}") for n in names), what="receivers loaded")
        async with aiohttp.ClientSession() as session:
            async with session.post(old_url(service, rancher_objects.SCALE_SERVICE_KEY)) as answer:
                assert (answer.status, (await answer.json())["outcome"]) == (200, "accepted")
            await until(lambda: sandbox_scale(sandbox) == 3, what="web scaled up by 2")

            async with session.post(old_url(service, rancher_objects.SCALE_HOST_KEY)) as answer:
                assert (answer.status, (await answer.json())["outcome"]) == (200, "accepted")
            await until(lambda: len(resources(sandbox, "hosts")) == 4, what="a worker host added")

            push = json.loads(PUSH.read_text())
            async with session.post(old_url(service, rancher_objects.UPGRADE_KEY), json=push) as answer:
                assert (answer.status, (await answer.json())["outcome"]) == (200, "accepted")
            await until(lambda: api_upgraded(sandbox), within=30, what="api upgraded to v1.4.2")

            forward = old_url(service, rancher_objects.FORWARD_KEY)
            async with session.post(forward, data=b'{"ref": "main"}') as answer:
                assert (answer.status, answer.headers["X-Webhook-Forwarded"]) == (200, "1")
                assert {k: v for k, v in (await answer.json()).items() if k != "contentType"} == {
                    "upstream": True,
                    "path": "/hooks",
                    "query": [],
                    "body": '{"ref": "main"}',
                }

            legacy = f"{service.base}/v1-webhooks/endpoint?token={rancher_objects.legacy_token(cattle_key)}"
            async with session.post(legacy) as answer:
                assert (answer.status, (await answer.json())["outcome"]) == (200, "accepted")
            await until(lambda: sandbox_scale(sandbox) == 2, what="web scaled down by the legacy URL")

            forged = rancher_objects.legacy_token(rancher_objects.cattle_key())
            async with session.post(f"{service.base}/v1-webhooks/endpoint?token={forged}") as answer:
                assert (answer.status, (await answer.json())["code"]) == (401, "bad_signature")
            wrong_project = old_url(service, rancher_objects.SCALE_SERVICE_KEY).replace("1a5", "1a6")
            async with session.post(wrong_project) as answer:
                assert (answer.status, (await answer.json())["code"]) == (403, "project_mismatch")
    finally:
        assert service.stop() in (0, None), service.output()
        sandbox.stop()
    assert not any(o["key"] in service.output() for o in rancher_objects.ALL)
