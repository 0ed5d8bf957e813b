"""The whole chain with Debian's real Prometheus and Alertmanager.

The test serves a gauge; Prometheus scrapes it and evaluates docs/alertmanager.md's alerting rule;
when the gauge passes 70 the alert fires and Alertmanager notifies two receivers on the same service,
in docs/alertmanager.md's two forms: one by its trigger URL (``?key=``), one by the bare endpoint with
the token in a ``credentials_file`` (``Authorization: Bearer``). The sandbox service scales up by the
sum of their ``amount`` s. When the gauge drops, Alertmanager sends the resolved notifications, which
the receivers (``fireOn: [firing]``) answer "ignored": the scale stays.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiohttp import web

from tests.processes import (
    Process,
    Sandbox,
    Service,
    free_port,
    http_status,
    sandbox_scale,
    write_receiver,
    write_seed,
)
from tests.toolbox import until

pytestmark = pytest.mark.e2e

PROMETHEUS = "/usr/bin/prometheus"
ALERTMANAGER = "/usr/bin/prometheus-alertmanager"
AMOUNT = 2  # of web-up, notified by URL
BEARER_AMOUNT = 1  # of web-up-bearer, notified with credentials_file


@pytest.fixture
def binaries() -> None:
    missing = [b for b in (PROMETHEUS, ALERTMANAGER) if not shutil.which(b)]
    if not missing:
        return
    message = f"missing {', '.join(missing)}: apt-get install -y prometheus prometheus-alertmanager"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


class Gauge:
    def __init__(self) -> None:
        self.value = 10.0


@pytest.fixture
async def gauge() -> AsyncIterator[tuple[Gauge, int]]:
    state = Gauge()

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(text=f"# TYPE demo_cpu_usage gauge\ndemo_cpu_usage {state.value}\n")

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield state, port
    await runner.cleanup()


@pytest.fixture
def stack(tmp_path: Path, binaries: None) -> Iterator[tuple[Sandbox, Service]]:
    receivers = tmp_path / "receivers"
    receivers.mkdir()
    write_receiver(receivers, "web-up", amount=AMOUNT, low=1, high=10)
    write_receiver(receivers, "web-up-bearer", amount=BEARER_AMOUNT, low=1, high=10)
    sandbox = Sandbox(tmp_path, write_seed(tmp_path / "seed.yaml", scale=1)).start_and_wait()
    service = Service(tmp_path, receivers=receivers, state=tmp_path / "state", cattle_url=sandbox.url)
    try:
        service.start_and_wait()
        yield sandbox, service
    finally:
        service.stop()
        sandbox.stop()


def start_alertmanager(tmp_path: Path, trigger_url: str, endpoint: str, token: str) -> tuple[Process, int]:
    port = free_port()
    credentials = tmp_path / "web-up-bearer.token"
    credentials.write_text(token)
    config = tmp_path / "alertmanager.yml"
    config.write_text(
        "route:\n"
        "  receiver: up\n"
        "  group_by: [alertname]\n"
        "  group_wait: 1s\n"
        "  group_interval: 1s\n"
        "  repeat_interval: 1h\n"
        "  routes:\n"
        "    - matchers: ['action=\"up\"']\n"
        "      receiver: up\n"
        "receivers:\n"
        "  - name: up\n"
        "    webhook_configs:\n"
        f"      - url: '{trigger_url}'\n"
        "        send_resolved: true\n"
        f"      - url: '{endpoint}'\n"
        "        send_resolved: true\n"
        "        http_config:\n"
        "          authorization:\n"
        "            type: Bearer\n"
        f"            credentials_file: '{credentials}'\n"
    )
    process = Process(
        "alertmanager",
        [
            ALERTMANAGER,
            f"--config.file={config}",
            f"--storage.path={tmp_path / 'am-data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
        ],
        tmp_path / "alertmanager.log",
    ).start()
    process.wait_http(f"http://127.0.0.1:{port}/-/ready")
    return process, port


def start_prometheus(tmp_path: Path, metrics_port: int, alertmanager_port: int) -> Process:
    port = free_port()
    (tmp_path / "rules.yml").write_text(
        "groups:\n"
        "  - name: demo\n"
        "    rules:\n"
        "      - alert: CpuUsageSpike\n"
        "        expr: demo_cpu_usage > 70\n"
        "        labels: {action: up, severity: critical}\n"
        "        annotations: {summary: ADDITIONAL CONTAINERS NEEDED}\n"
    )
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        f"rule_files: ['{tmp_path / 'rules.yml'}']\n"
        "alerting:\n"
        f"  alertmanagers: [{{static_configs: [{{targets: ['127.0.0.1:{alertmanager_port}']}}]}}]\n"
        "scrape_configs:\n"
        f"  - {{job_name: demo, static_configs: [{{targets: ['127.0.0.1:{metrics_port}']}}]}}\n"
    )
    process = Process(
        "prometheus",
        [
            PROMETHEUS,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'prom-data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--rules.alert.resend-delay=1s",
        ],
        tmp_path / "prometheus.log",
    ).start()
    process.wait_http(f"http://127.0.0.1:{port}/-/ready")
    return process


def hits_with_outcome(service: Service, outcome: str) -> float:
    import urllib.request

    with urllib.request.urlopen(f"{service.base}/metrics", timeout=2) as answer:
        text = answer.read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith("webhook_hits_total{") and f'outcome="{outcome}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


async def test_alertmanager_firing_scales_up_and_resolved_changes_nothing(
    tmp_path: Path, stack: tuple[Sandbox, Service], gauge: tuple[Gauge, int]
) -> None:
    sandbox, service = stack
    state, metrics_port = gauge
    bearer_url = service.trigger_url("web-up-bearer")
    token = bearer_url.split("key=")[1].split("&")[0]
    alertmanager, am_port = start_alertmanager(
        tmp_path, service.trigger_url("web-up"), f"{service.base}/v1-webhooks/endpoint", token
    )
    prometheus = start_prometheus(tmp_path, metrics_port, am_port)
    try:
        assert http_status(f"http://127.0.0.1:{am_port}/-/ready") == 200
        state.value = 95.0
        expected = 1 + AMOUNT + BEARER_AMOUNT
        await until(lambda: sandbox_scale(sandbox) == expected, within=60, what="scale up by both amounts")
        state.value = 10.0
        await until(
            lambda: hits_with_outcome(service, "ignored") >= 2, within=60, what="resolved notifications"
        )
        # resyncs run every second; a wrong step from the resolved hit would show by now
        await asyncio.sleep(2)
        assert sandbox_scale(sandbox) == expected
        assert hits_with_outcome(service, "accepted") == 2
    finally:
        prometheus.stop()
        alertmanager.stop()
