"""Real processes: the store's files deleted under a running service; a private state folder;
Cattle credentials in CATTLE_URL never shown or stored.

The deletion test fires hits concurrently and unlinks ``webhook.db`` and its ``-wal``/``-shm``
mid-load. Before unlinking, the test keeps a hard link to each file elsewhere: the names are gone
from the state folder (as far as the service can tell, the files were deleted), but the test can
still read what the service's COMMITs wrote, and so check that every hit answered 200 really is in
the file that was live when it was answered.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import sqlite3
import stat
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from tests.processes import (
    Sandbox,
    Service,
    run_cli,
    sandbox_scale,
    write_receiver,
    write_seed,
)
from tests.toolbox import until

pytestmark = pytest.mark.e2e

CONCURRENCY = 16
DB_FILES = ("webhook.db", "webhook.db-wal", "webhook.db-shm")


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def hit_ids_in(db: Path) -> set[str]:
    conn = sqlite3.connect(db)  # the test's own link to the files: recovering the WAL may write
    try:
        return {r[0] for r in conn.execute("SELECT id FROM hits")}
    finally:
        conn.close()


async def get_json(url: str) -> tuple[int, dict[str, object]]:
    async with aiohttp.ClientSession() as session, session.get(url) as answer:
        return answer.status, await answer.json()


@dataclass(frozen=True)
class Answer:
    started: float  # time.monotonic() when the request was sent
    status: int
    body: dict[str, object]
    retry_after: str | None


def sandbox_scale_with_keys(sandbox: Sandbox, keys: bytes) -> int:
    request = urllib.request.Request(
        f"{sandbox.url}/projects/1a5/services/1s7",
        headers={"Authorization": f"Basic {base64.b64encode(keys).decode()}"},
    )
    with urllib.request.urlopen(request, timeout=2) as answer:
        scale: int = json.load(answer)["scale"]
        return scale


async def test_hits_after_the_store_was_deleted_are_503_and_every_200_was_durable(tmp_path: Path) -> None:
    receivers = tmp_path / "receivers"
    receivers.mkdir()
    write_receiver(receivers, "web-up", high=100_000)
    state = tmp_path / "state"
    state.mkdir(mode=0o755)  # an existing folder as an older version (or the umask) left it
    state.chmod(0o755)
    sandbox = Sandbox(tmp_path, write_seed(tmp_path / "seed.yaml")).start_and_wait()
    service = Service(tmp_path, receivers=receivers, state=state, cattle_url=sandbox.url)
    try:
        service.start_and_wait()
        # Finding 8: the folder is made private, and every file of the store is 0600.
        assert mode(state) == mode(state / "keys") == 0o700
        assert {name: mode(state / name) for name in DB_FILES} == dict.fromkeys(DB_FILES, 0o600)
        url = service.trigger_url("web-up")

        kept = tmp_path / "kept"
        kept.mkdir()
        for name in DB_FILES:
            os.link(state / name, kept / name)
        answers: list[Answer] = []
        deleted_at: list[float] = []
        stop = asyncio.Event()

        async def sender(session: aiohttp.ClientSession) -> None:
            while not stop.is_set():
                started = time.monotonic()
                async with session.post(url) as answer:
                    body = await answer.json()
                    answers.append(Answer(started, answer.status, body, answer.headers.get("Retry-After")))

        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            senders = [asyncio.create_task(sender(session)) for _ in range(CONCURRENCY)]
            await until(lambda: len(answers) >= 200, what="200 answers before the deletion")
            for name in DB_FILES:
                (state / name).unlink()
            deleted_at.append(time.monotonic())
            await until(
                lambda: sum(a.started > deleted_at[0] for a in answers) >= 100, what="100 hits after it"
            )
            stop.set()
            await asyncio.gather(*senders)

        after = [a for a in answers if a.started > deleted_at[0]]
        assert {(a.status, a.body.get("code"), a.retry_after) for a in after} == {
            (503, "store_unavailable", "1")
        }
        status, ready = await get_json(f"{service.base}/readyz")
        assert status == 503
        assert ready["reasons"] == {
            "store": f"the database file {state / 'webhook.db'} was deleted or replaced; restart the service"
        }
        acknowledged = {str(a.body["hit"]) for a in answers if a.status == 200}
        assert len(acknowledged) >= 100
        assert service.stop() == 0  # a lost store still shuts down cleanly
        assert acknowledged <= hit_ids_in(kept / "webhook.db")  # nothing acknowledged that was not durable
        assert service.output().count("store lost:") == 1  # the transition is logged once, not per hit

        # A restart starts a new, empty store (new tokens, so a new URL) and works again.
        scale = sandbox_scale(sandbox)
        service.start_and_wait()
        assert {name: mode(state / name) for name in DB_FILES} == dict.fromkeys(DB_FILES, 0o600)
        async with aiohttp.ClientSession() as session, session.post(service.trigger_url("web-up")) as answer:
            assert answer.status == 200
        await until(lambda: sandbox_scale(sandbox) == scale + 1, what=f"scale {scale + 1}")
    finally:
        service.stop()
        sandbox.stop()


async def test_cattle_credentials_in_the_url_work_and_are_never_shown_or_stored(tmp_path: Path) -> None:
    receivers = tmp_path / "receivers"
    receivers.mkdir()
    write_receiver(receivers, "web-up")
    sandbox = Sandbox(
        tmp_path, write_seed(tmp_path / "seed.yaml"), "--access-key", "ak", "--secret-key", "s3cret-key"
    )
    sandbox.start()
    service = Service(
        tmp_path,
        receivers=receivers,
        state=tmp_path / "state",
        cattle_url=sandbox.url.replace("http://", "http://ak:s3cret-key@"),
    )
    masked = sandbox.url.replace("http://", "http://****:****@")
    try:
        sandbox.wait_http(sandbox.url, expect=401)  # the keys are needed: the service sends those in its URL
        service.start_and_wait()
        async with aiohttp.ClientSession() as session, session.post(service.trigger_url("web-up")) as answer:
            assert answer.status == 200
        await until(lambda: sandbox_scale_with_keys(sandbox, b"ak:s3cret-key") == 2, what="scale 2")
        status = run_cli("status", "--state", str(tmp_path / "state"))
        assert status.returncode == 0, status.stderr
        assert status.stdout.splitlines()[0] == f"Cattle: {masked}"
    finally:
        service.stop()
        sandbox.stop()
    assert "s3cret-key" not in service.output()
    assert f"cattle_url={masked}" in service.output()
    for name in ("webhook.db", "webhook.db-wal"):
        path = tmp_path / "state" / name
        assert not path.exists() or b"s3cret-key" not in path.read_bytes()
