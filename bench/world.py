"""The processes a benchmark measures, started and pinned: a Cattle sandbox, the service, the bare server.

The server under test runs on ``settings.server_core``; this process, and so wrk and the sandbox it
starts, on ``settings.load_core`` (children inherit the affinity), so the load generator never takes
CPU from the server and the two servers are measured alike. The service runs at its default log
level (INFO), as it is deployed: its log lines per hit are part of its cost.

Also here: the store's counts, read from another process through a read-only SQLite connection (as
``status`` does), and the sandbox's scales, read through its API.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from bench.bare import BareServer
from bench.cpu import pinned
from bench.processes import Sandbox, Service, write_receiver
from bench.soak import MAX_SCALE, PROJECT, service_ids, write_seed
from controller.store.sqlite_schema import DB_NAME

DEFAULT_LOG_LEVEL = "INFO"


@dataclass(frozen=True)
class BenchSettings:
    connections: tuple[int, ...] = (1, 8, 32, 128, 512)
    rounds: int = 3  # alternating rounds (bare, service) per connection count; the table shows medians
    seconds: float = 10.0  # per round
    receiver_counts: tuple[int, ...] = (10, 1_000, 10_000)
    idle_seconds: float = 10.0  # idle CPU is measured over this long
    busy_targets: int = 100
    reconcile_seconds: float = 10.0
    storage_hits: int = 100_000  # bytes per hit are measured once the store holds at least this many
    server_core: int = 1
    load_core: int = 0


def pin_self(settings: BenchSettings) -> None:
    os.sched_setaffinity(0, {settings.load_core})


def start_sandbox(tmp: Path, services: int) -> Sandbox:
    seed = write_seed(tmp / f"seed-{services}.yaml", service_ids(services))
    return Sandbox(tmp, seed).start_and_wait()


def service_process(
    tmp: Path, settings: BenchSettings, *, receivers: Path, state: Path, cattle_url: str
) -> Service:
    """The service as deployed (default log level), to be started on the server's core."""
    service = Service(
        tmp,
        receivers=receivers,
        state=state,
        cattle_url=cattle_url,
        env={"WEBHOOK_LOG_LEVEL": DEFAULT_LOG_LEVEL},
    )
    return pinned(service, settings.server_core)


def start_service(
    tmp: Path, settings: BenchSettings, *, receivers: Path, state: Path, cattle_url: str
) -> Service:
    return service_process(
        tmp, settings, receivers=receivers, state=state, cattle_url=cattle_url
    ).start_and_wait()


def start_bare(tmp: Path, settings: BenchSettings) -> BareServer:
    return pinned(BareServer(tmp), settings.server_core).start_and_wait()


def write_up_receivers(folder: Path, services: Sequence[str], prefix: str = "bench") -> list[str]:
    """One "up" receiver (step 1, max 10^9) per service, a file each; returns their names."""
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for i, sid in enumerate(services, 1):
        name = f"{prefix}-{i}"
        write_receiver(folder, name, service=sid, high=MAX_SCALE)
        names.append(name)
    return names


def path_of(url: str) -> str:
    """A trigger URL's path and query, as wrk's script requests it."""
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


# -- reading the outcome


@dataclass(frozen=True)
class StoreCounts:
    accepted: int  # hits recorded with outcome "accepted"
    hits: int  # all hits
    folded: int  # intents applied to Cattle


def store_counts(state: Path) -> StoreCounts:
    with sqlite3.connect(f"file:{state / DB_NAME}?mode=ro", uri=True) as conn:
        accepted, hits = conn.execute(
            "SELECT count(*) FILTER (WHERE outcome = 'accepted'), count(*) FROM hits"
        ).fetchone()
        (folded,) = conn.execute("SELECT count(*) FROM intents WHERE state = 'folded'").fetchone()
    return StoreCounts(int(accepted), int(hits), int(folded))


def database_bytes(state: Path) -> int:
    """The database's size once its WAL is checkpointed into it (the service is stopped)."""
    with sqlite3.connect(state / DB_NAME) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        (pages,) = conn.execute("PRAGMA page_count").fetchone()
        (size,) = conn.execute("PRAGMA page_size").fetchone()
    return int(pages) * int(size)


def scale(sandbox: Sandbox, service_id: str) -> int:
    with urllib.request.urlopen(
        f"{sandbox.url}/projects/{PROJECT}/services/{service_id}", timeout=5
    ) as answer:
        return int(json.loads(answer.read())["scale"])


def await_scales(
    sandbox: Sandbox, services: Sequence[str], done: Callable[[dict[str, int]], bool], still_for: float = 15.0
) -> dict[str, int]:
    """Poll the services' scales until ``done`` holds, or no scale has moved for ``still_for`` s."""
    time.sleep(1.0)  # first, let the requests wrk left in flight land (their hits count too)
    last: dict[str, int] = {}
    moved = time.monotonic()
    while True:
        now = {sid: scale(sandbox, sid) for sid in services}
        if done(now):
            return now
        if now != last:
            last, moved = now, time.monotonic()
        elif time.monotonic() - moved > still_for:
            return now
        time.sleep(0.25)
