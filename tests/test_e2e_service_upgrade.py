"""serviceUpgrade with real processes: a Docker Hub push upgrades exactly the selected launch configs
running the pushed repository; a SIGKILL mid-upgrade is survived without starting the upgrade twice;
a re-push of the tag a service already runs redeploys it once, pulling the image again.
"""

from __future__ import annotations

import json
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from controller.drivers.service_upgrade import HIT_LABEL, PULL_IMAGE_LABEL
from controller.store.sqlite_schema import DB_NAME
from controller.store.sqlite_snapshot import read_snapshot
from tests.processes import Sandbox, Service
from tests.toolbox import until

pytestmark = pytest.mark.e2e

FIXTURE = Path(__file__).parent / "fixtures" / "registry" / "dockerhub-push.json"
SEED = """\
projects:
  - id: 1a5
    name: Default
    services:
      - {id: 1s7, name: web, stackId: 1st1, scale: 2, image: "docker:acme/web:v1.4.1", labels: {app: web}}
      # Selected (same label) but another repository: a push of acme/web must leave it alone.
      - {id: 1s8, name: worker, stackId: 1st1, scale: 1, image: "docker:acme/worker:v1.4.1",
         labels: {app: web}}
      # Selected through its sidekick, which runs acme/web; its primary (redis) must stay.
      - {id: 1s9, name: api, stackId: 1st1, scale: 1, image: "docker:redis:7", labels: {app: api},
         sidekicks: [{name: web-side, image: "docker:acme/web:v1.4.1", labels: {app: web}}]}
"""
RECEIVER = """\
apiVersion: webhook-service.dev/v1
kind: Receiver
metadata: {name: web-deploy}
spec:
  driver: serviceUpgrade
  serviceUpgradeConfig:
    projectId: 1a5
    serviceSelector: {app: web}
    tag: "v1.*"
    payloadFormat: dockerhub
    batchSize: 1
    intervalMillis: 100
"""


def service(sandbox: Sandbox, service_id: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{sandbox.url}/projects/1a5/services/{service_id}", timeout=2) as answer:
        data: dict[str, Any] = json.load(answer)
        return data


def first_upgrade_version(service_id: str) -> str:
    # The sandbox names launch config versions after the service and its upgrade count.
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"sandbox/{service_id}/1"))


async def test_a_push_upgrades_the_matching_launch_configs_once_across_a_sigkill(tmp_path: Path) -> None:
    seed = tmp_path / "seed.yaml"
    seed.write_text(SEED)
    # Slow upgrades (two batches of 1.5 s for web), so the kill lands mid-upgrade.
    sandbox = Sandbox(tmp_path, seed, "--transition-ms", "1500").start_and_wait()
    receivers = tmp_path / "receivers"
    receivers.mkdir()
    (receivers / "web-deploy.yaml").write_text(RECEIVER)
    svc = Service(tmp_path, receivers=receivers, state=tmp_path / "state", cattle_url=sandbox.url)
    try:
        svc.start_and_wait()
        await until(lambda: svc.has_receiver("default/web-deploy"), what="the receiver loaded")
        url = svc.trigger_url("web-deploy")
        push = json.loads(FIXTURE.read_text())
        async with aiohttp.ClientSession() as session:
            other = {**push, "push_data": {**push["push_data"], "tag": "v2.0.0"}}
            async with session.post(url, json=other) as answer:
                assert (answer.status, (await answer.json())["outcome"]) == (200, "ignored")
            async with session.post(url, json=push) as answer:
                assert (answer.status, (await answer.json())["outcome"]) == (200, "accepted")

        await until(lambda: service(sandbox, "1s7")["state"] == "upgrading", what="web upgrading")
        svc.kill()
        assert service(sandbox, "1s7")["state"] in ("upgrading", "upgraded")

        svc.start_and_wait()

        def done() -> bool:
            web, api = service(sandbox, "1s7"), service(sandbox, "1s9")
            return (
                (web["state"], api["state"]) == ("active", "active")
                and web["launchConfig"]["imageUuid"] == "docker:acme/web:v1.4.2"
                and api["secondaryLaunchConfigs"][0]["imageUuid"] == "docker:acme/web:v1.4.2"
            )

        await until(done, within=45, what="web and api upgraded and finished")
        web = service(sandbox, "1s7")
        assert web["launchConfig"]["version"] == first_upgrade_version("1s7")  # started once, not twice
        api = service(sandbox, "1s9")
        assert api["launchConfig"]["imageUuid"] == "docker:redis:7"
        [side] = api["secondaryLaunchConfigs"]
        assert side["imageUuid"] == "docker:acme/web:v1.4.2"
        worker = service(sandbox, "1s8")
        assert (worker["launchConfig"]["imageUuid"], worker["state"]) == (
            "docker:acme/worker:v1.4.1",
            "active",
        )
    finally:
        assert svc.stop() in (0, None), svc.output()
        sandbox.stop()


LATEST_SEED = """\
projects:
  - id: 1a5
    name: Default
    services:
      - {id: 1s7, name: web, stackId: 1st1, scale: 2, image: "docker:acme/web:latest", labels: {app: web}}
"""


def hit_state(svc: Service, receiver: str) -> str | None:
    last = read_snapshot(svc.state / DB_NAME).status.last_hits.get(receiver)
    return last.intent_state if last else None


async def test_a_re_push_of_latest_redeploys_the_service_once_pulling_the_image(tmp_path: Path) -> None:
    seed = tmp_path / "seed.yaml"
    seed.write_text(LATEST_SEED)
    sandbox = Sandbox(tmp_path, seed).start_and_wait()
    receivers = tmp_path / "receivers"
    receivers.mkdir()
    (receivers / "web-deploy.yaml").write_text(RECEIVER.replace('tag: "v1.*"', "tag: latest"))
    svc = Service(tmp_path, receivers=receivers, state=tmp_path / "state", cattle_url=sandbox.url)
    try:
        svc.start_and_wait()
        await until(lambda: svc.has_receiver("default/web-deploy"), what="the receiver loaded")
        push = json.loads(FIXTURE.read_text())
        push["push_data"]["tag"] = "latest"
        async with (
            aiohttp.ClientSession() as session,
            session.post(svc.trigger_url("web-deploy"), json=push) as answer,
        ):
            assert (answer.status, (await answer.json())["outcome"]) == (200, "accepted")
            hit = (await answer.json())["hit"]

        await until(lambda: hit_state(svc, "default/web-deploy") == "folded", within=30, what="the hit done")
        web = service(sandbox, "1s7")
        assert (web["state"], web["upgrade"]) == ("active", None)  # upgraded and finished
        assert web["launchConfig"]["version"] == first_upgrade_version("1s7")  # started once, not twice
        assert web["launchConfig"]["imageUuid"] == "docker:acme/web:latest"
        labels = web["launchConfig"]["labels"]
        assert (labels[PULL_IMAGE_LABEL], labels[HIT_LABEL], labels["app"]) == ("always", hit, "web")
    finally:
        assert svc.stop() in (0, None), svc.output()
        sandbox.stop()
