"""Hostile connections against the real ``webhook-service run`` process.

The same rules tests/test_listener_hostile.py holds in-process, here through the command a person
runs, its flags and environment, and its log file: an idle flood under a common open-files limit
(1024) doesn't lock a legitimate hit out, malformed requests carrying a token leave neither the token
nor a traceback in the log, and the connection limits are flags with environment fallbacks.
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from controller.cli import build_parser, operator_settings_from, settings_from
from controller.listener.server import RESERVED_FDS
from tests.processes import Sandbox, Service, write_receiver
from tests.test_listener_hostile import MALFORMED, exchange, json_of, status_of

# Runs the rest of argv with this many open files at most (soft and hard), as a small host would.
WITH_OPEN_FILES = (
    "import os, resource, sys; n = int(sys.argv[1]); "
    "resource.setrlimit(resource.RLIMIT_NOFILE, (n, n)); os.execv(sys.argv[2], sys.argv[2:])"
)
IDLE_FLOOD = 5000


@pytest.fixture
def receivers(tmp_path: Path) -> Path:
    folder = tmp_path / "receivers"
    folder.mkdir()
    write_receiver(folder, "web-up", action="up")
    return folder


@contextlib.contextmanager
def service(
    tmp_path: Path,
    receivers: Path,
    sandbox: Sandbox,
    *extra: str,
    env: dict[str, str] | None = None,
    open_files: int | None = None,
) -> Iterator[Service]:
    svc = Service(
        tmp_path, receivers=receivers, state=tmp_path / "state", cattle_url=sandbox.url, extra=extra, env=env
    )
    if open_files is not None:
        svc.argv = [sys.executable, "-c", WITH_OPEN_FILES, str(open_files), *svc.argv]
    svc.start_and_wait()
    try:
        yield svc
    finally:
        svc.stop()


def token_of(url: str) -> str:
    return url.split("key=")[1].split("&")[0]


async def post(url: str, within: float) -> tuple[int, dict[str, object]]:
    timeout = aiohttp.ClientTimeout(total=within)
    async with aiohttp.ClientSession(timeout=timeout) as session, session.post(url) as answer:
        return answer.status, await answer.json()


async def open_idle(port: int, count: int) -> list[socket.socket]:
    """``count`` connections that never send a byte (their connects may be refused or reset)."""
    loop = asyncio.get_running_loop()
    sockets = [socket.socket() for _ in range(count)]

    async def connect(sock: socket.socket) -> None:
        sock.setblocking(False)
        with contextlib.suppress(OSError):
            await loop.sock_connect(sock, ("127.0.0.1", port))

    await asyncio.wait_for(asyncio.gather(*(connect(s) for s in sockets)), 20)
    return sockets


@pytest.mark.e2e
async def test_an_idle_flood_does_not_lock_a_hit_out(
    tmp_path: Path, receivers: Path, sandbox: Sandbox
) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < IDLE_FLOOD + 256:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, IDLE_FLOOD + 256), hard))
    with service(tmp_path, receivers, sandbox, open_files=1024) as svc:
        url = svc.trigger_url("web-up")
        idle = await open_idle(svc.port, IDLE_FLOOD)
        try:
            started = time.monotonic()
            status, body = await post(url, within=5)
            assert (status, body["outcome"]) == (200, "accepted")
            assert time.monotonic() - started < 5
        finally:
            for sock in idle:
                sock.close()
    log = svc.output()
    assert f"serving at most {1024 - RESERVED_FDS} connections, not 1000" in log  # fitted to the limit
    assert "Traceback" not in log and "cannot accept connections" not in log  # no EMFILE at all


@pytest.mark.e2e
async def test_malformed_requests_leave_no_token_and_no_traceback_in_the_log(
    tmp_path: Path, receivers: Path, sandbox: Sandbox
) -> None:
    with service(tmp_path, receivers, sandbox) as svc:
        token = token_of(svc.trigger_url("web-up"))
        for _ in range(3):
            for make in MALFORMED.values():
                raw = await exchange(svc.port, make(token).encode("latin-1"))
                assert (status_of(raw), json_of(raw)["code"]) == (400, "malformed_request")
            for coding in ("br", "zstd"):
                head = f"POST /v1-webhooks/endpoint?key={token} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                raw = await exchange(
                    svc.port, f"{head}Content-Encoding: {coding}\r\nContent-Length: 3\r\n\r\nabc".encode()
                )
                assert (status_of(raw), json_of(raw)["code"]) == (415, "unsupported_encoding")
    log = svc.output()
    assert token not in log and token.rsplit(".", 1)[1] not in log
    assert "Traceback" not in log and " ERROR " not in log
    # 21 bad requests from one peer within a minute: one line (the invalid method is at DEBUG).
    assert log.count("controller.listener.server: request from 127.0.0.1 answered 400") == 1


@pytest.mark.e2e
async def test_the_limits_are_flags_with_environment_fallbacks(
    tmp_path: Path, receivers: Path, sandbox: Sandbox
) -> None:
    env = {"WEBHOOK_BODY_TIMEOUT": "0.3"}
    with service(tmp_path, receivers, sandbox, "--header-timeout", "0.3", env=env) as svc:
        token = token_of(svc.trigger_url("web-up"))
        assert await exchange(svc.port, f"POST /v1-webhooks/endpoint?key={token}".encode()) == b""
        head = f"POST /v1-webhooks/endpoint?key={token} HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n"
        raw = await exchange(svc.port, head.encode() + b"0123456789")
        assert (status_of(raw), json_of(raw)["code"]) == (408, "body_timeout")


def test_the_limits_default_as_documented_and_read_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    names = (
        "WEBHOOK_KEEPALIVE_TIMEOUT",
        "WEBHOOK_HEADER_TIMEOUT",
        "WEBHOOK_BODY_TIMEOUT",
        "WEBHOOK_MAX_CONNECTIONS",
    )
    for name in names:
        monkeypatch.delenv(name, raising=False)
    defaults = settings_from(build_parser().parse_args(["run"]))
    assert (
        defaults.keepalive_timeout,
        defaults.header_timeout,
        defaults.body_timeout,
        defaults.max_connections,
    ) == (
        5.0,
        10.0,
        30.0,
        1000,
    )
    for name, value in zip(names, ("1.5", "2.5", "3.5", "7"), strict=True):
        monkeypatch.setenv(name, value)
    for settings in (
        settings_from(build_parser().parse_args(["run"])),
        operator_settings_from(build_parser().parse_args(["operator", "--max-connections", "9"])),
    ):
        assert (settings.keepalive_timeout, settings.header_timeout, settings.body_timeout) == (1.5, 2.5, 3.5)
    assert settings.max_connections == 9  # the flag wins over WEBHOOK_MAX_CONNECTIONS
