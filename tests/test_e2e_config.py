"""Real processes: a broken configuration ends ``run`` at once with one line and exit 2, a second
``run`` never touches a live service's state folder, and a Cattle that can't be reached shows in
``/readyz`` (and in the store, for ``status``) until it can."""

from __future__ import annotations

import json
import os
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from controller.cattle.reachability import NOT_YET
from controller.store.base import CATTLE_PROBLEM_META
from controller.store.sqlite_schema import DB_NAME
from controller.store.sqlite_snapshot import read_snapshot
from tests.processes import REPO, WEBHOOK_SERVICE, Sandbox, Service, free_port, write_receiver, write_seed
from tests.toolbox import folder_fingerprint, until


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``webhook-service run`` with ``args``, from the repository root, for a refusal (it must exit)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("CATTLE_", "WEBHOOK_"))}
    return subprocess.run(
        [WEBHOOK_SERVICE, "run", "--listen", f"127.0.0.1:{free_port()}", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
        env={**clean, **(env or {})},
    )


def readyz(base: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(f"{base}/readyz", timeout=2) as answer:
            return answer.status, json.load(answer)
    except urllib.error.HTTPError as e:
        return e.code, json.load(e)


def probed(base: str) -> tuple[int, dict[str, Any]] | None:
    """``/readyz`` once the start-up probe has answered (before it, the reason is "not reached yet")."""
    status, body = readyz(base)
    return None if body["reasons"].get("cattle") == NOT_YET else (status, body)


def test_a_second_run_on_a_live_state_folder_exits_2_naming_the_holder_and_writes_nothing(
    tmp_path: Path,
) -> None:
    receivers, state = tmp_path / "receivers", tmp_path / "state"
    receivers.mkdir()
    write_receiver(receivers, "web-up")
    first = Service(tmp_path, receivers=receivers, state=state, cattle_url="sandbox", extra=["--print-urls"])
    first.start_and_wait()
    try:
        before = folder_fingerprint(state)
        second = run("--receivers", str(receivers), "--state", str(state), "--cattle-url", "sandbox")
        assert (second.returncode, second.stdout) == (2, "")
        assert second.stderr.splitlines() == [
            f"webhook-service run: the state folder {state} is in use by another webhook-service"
            f" (pid {first.pid})"
        ]
        assert folder_fingerprint(state) == before
        # what make run prints works as typed from the repository root, where make runs it
        assert f"Then: .venv/bin/webhook-service status --state {state}" in first.output()
    finally:
        first.stop()


def test_the_state_folder_is_free_again_once_its_service_is_killed(tmp_path: Path) -> None:
    receivers, state = tmp_path / "receivers", tmp_path / "state"
    receivers.mkdir()
    crashed = Service(tmp_path, receivers=receivers, state=state, cattle_url="sandbox").start_and_wait()
    crashed.kill()
    Service(tmp_path, receivers=receivers, state=state, cattle_url="sandbox").start_and_wait().stop()


def test_a_cattle_url_without_a_scheme_exits_2_with_one_line_and_creates_nothing(tmp_path: Path) -> None:
    (tmp_path / "receivers").mkdir()
    state = tmp_path / "state"
    refused = run(
        "--receivers", str(tmp_path / "receivers"), "--state", str(state), "--cattle-url", "rancher:8080"
    )
    assert refused.returncode == 2
    assert refused.stderr.splitlines() == [
        "webhook-service run: --cattle-url: expected an http:// or https:// URL with a host,"
        " got 'rancher:8080'"
    ]
    assert not state.exists()


def test_an_access_key_without_its_secret_exits_2_with_one_line(tmp_path: Path) -> None:
    (tmp_path / "receivers").mkdir()
    state = tmp_path / "state"
    refused = run(
        "--receivers",
        str(tmp_path / "receivers"),
        "--state",
        str(state),
        "--cattle-url",
        "http://rancher.example:8080/v2-beta",
        env={"CATTLE_ACCESS_KEY": "AK"},
    )
    assert refused.returncode == 2
    assert refused.stderr.splitlines() == [
        "webhook-service run: CATTLE_ACCESS_KEY is set but CATTLE_SECRET_KEY is not:"
        " give both Cattle API keys, or neither"
    ]
    assert not state.exists()


def test_a_missing_receivers_folder_exits_2_with_one_line(tmp_path: Path) -> None:
    refused = run("--receivers", str(tmp_path / "absent"), "--state", str(tmp_path / "state"))
    assert (refused.returncode, len(refused.stderr.splitlines())) == (2, 1)
    assert not (tmp_path / "state").exists()


async def test_an_unreachable_cattle_fails_readyz_until_it_answers(tmp_path: Path) -> None:
    receivers, state = tmp_path / "receivers", tmp_path / "state"
    receivers.mkdir()
    sandbox = Sandbox(
        tmp_path, write_seed(tmp_path / "seed.yaml"), "--access-key", "AK", "--secret-key", "SECRET"
    )
    keyed_url = sandbox.url.replace("http://", "http://AK:SECRET@")
    service = Service(
        tmp_path,
        receivers=receivers,
        state=state,
        cattle_url=keyed_url,
        extra=["--log-format", "json"],
    )
    service.start()
    try:
        service.wait_http(f"{service.base}/readyz", expect=503)
        answer = await until(lambda: probed(service.base), what="the first probe's outcome")
        assert answer is not None
        status, body = answer
        assert (status, body["failing"]) == (503, ["cattle"])
        assert body["reasons"]["cattle"].startswith("unreachable: GET /v2-beta/projects")
        noted = await until(
            lambda: read_snapshot(state / DB_NAME).meta.get(CATTLE_PROBLEM_META), what="the note"
        )
        assert (noted or "").startswith("unreachable: GET /v2-beta/projects")

        sandbox.start()  # with keys it answers its own probe 401: the service's readiness is the wait
        service.wait_http(f"{service.base}/readyz", expect=200)
        assert readyz(service.base)[1]["failing"] == []
    finally:
        service.stop()
        sandbox.stop()
    assert read_snapshot(state / DB_NAME).meta[CATTLE_PROBLEM_META] == ""
    lines = [json.loads(line) for line in service.output().splitlines()]
    assert {"time", "level", "logger", "message"} <= lines[0].keys()
    [error] = [
        line for line in lines if line["logger"] == "controller.cattle.endpoint" and line["level"] == "ERROR"
    ]
    assert error["message"].startswith("Cattle at http://****:****@127.0.0.1:")
    assert "SECRET" not in service.output()
