"""scaleHost with real processes: a hit grows a host group, the service is SIGKILLed while the new
hosts are still provisioning, and the restarted service finishes the job without creating any twice.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.processes import REPO, Sandbox, Service
from tests.toolbox import until

pytestmark = pytest.mark.e2e

RECEIVER = """\
apiVersion: webhook-service.dev/v1
kind: Receiver
metadata: {name: workers-up}
spec:
  driver: scaleHost
  scaleHostConfig: {projectId: 1a5, hostSelector: {role: worker}, action: up, amount: 3, min: 1, max: 10}
"""


def worker_hosts(sandbox: Sandbox) -> list[dict[str, Any]]:
    """The project's role=worker hosts that are not removed (the group and those joining it)."""
    with urllib.request.urlopen(f"{sandbox.url}/projects/1a5/hosts?limit=1000", timeout=2) as answer:
        hosts: list[dict[str, Any]] = json.load(answer)["data"]
    return [
        h
        for h in hosts
        if (h.get("labels") or {}).get("role") == "worker" and h.get("state") not in ("removing", "removed")
    ]


async def test_a_host_group_grows_exactly_once_across_a_sigkill_mid_provisioning(tmp_path: Path) -> None:
    seed = shutil.copy(REPO / "examples" / "sandbox-seed.yaml", tmp_path / "seed.yaml")
    # Slow provisioning, so the kill lands while the new hosts are on their way to active.
    sandbox = Sandbox(tmp_path, Path(seed), "--transition-ms", "400").start_and_wait()
    receivers = tmp_path / "receivers"
    receivers.mkdir()
    (receivers / "workers-up.yaml").write_text(RECEIVER)
    service = Service(tmp_path, receivers=receivers, state=tmp_path / "state", cattle_url=sandbox.url)
    try:
        service.start_and_wait()
        await until(lambda: service.has_receiver("default/workers-up"), what="the receiver loaded")
        url = service.trigger_url("workers-up")
        assert len(worker_hosts(sandbox)) == 3
        async with aiohttp.ClientSession() as session, session.post(url) as answer:
            assert answer.status == 200
        await until(lambda: len(worker_hosts(sandbox)) > 3, what="a new host being created")
        service.kill()
        assert any(h["state"] != "active" for h in worker_hosts(sandbox)), "the kill came too late"

        service.start_and_wait()
        await until(
            lambda: sum(h["state"] == "active" for h in worker_hosts(sandbox)) == 6,
            within=30,
            what="six active workers",
        )
        await asyncio.sleep(2.0)  # a few resync passes: nothing more may be created
        hosts = worker_hosts(sandbox)
        names = sorted(h["name"] for h in hosts)
        assert names == ["worker-1", "worker-2", "worker-3", "worker-4", "worker-5", "worker-6"]
        clone = next(h for h in hosts if h["name"] == "worker-6")
        assert clone["driver"] == "digitalocean" and clone["digitaloceanConfig"]["region"] == "nyc3"
    finally:
        assert service.stop() in (0, None), service.output()
        sandbox.stop()
