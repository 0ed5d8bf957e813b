"""The SQLite store is honest about durability: it acknowledges a job only if its COMMIT went to the
live file, and ``unavailable_reason`` (what ``/readyz`` shows) says when it cannot keep what it
would acknowledge.

Two ways to fail: the database file or its WAL deleted or replaced under the running store (sticky
until restart: the data went to a file nobody will open again), and the disk refusing writes (until
a write succeeds). The first is made by unlinking or renaming the files; the second with SQLite's
own ``PRAGMA max_page_count`` (a real "database or disk is full") or a COMMIT made to fail on the
committer thread, so no test needs a full disk or root.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from controller.store.base import HitResult, StoreUnavailable
from controller.store.sqlite import SqliteStore
from tests.test_store_conformance import T0, hit
from tests.toolbox import until

STORE_LOGGER = "controller.store.sqlite"
NO_PROBE = 3600.0  # a probe interval no test waits for


class HookedStore(SqliteStore):
    """The real store, with a hook run once on the committer thread just before the next COMMIT."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.before_commit: Callable[[], None] | None = None

    def _commit(self, conn: sqlite3.Connection) -> None:
        hook, self.before_commit = self.before_commit, None
        if hook is not None:
            hook()
        super()._commit(conn)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "webhook.db"


@pytest.fixture
async def store(db_path: Path) -> AsyncIterator[HookedStore]:
    s = HookedStore(db_path, clock=lambda: T0, probe_interval=NO_PROBE)
    await s.open()
    yield s
    await s.close()


def wal(db_path: Path) -> Path:
    return db_path.with_name(f"{db_path.name}-wal")


def delete_files(db_path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        db_path.with_name(f"{db_path.name}{suffix}").unlink(missing_ok=True)


def deleted_reason(path: Path) -> str:
    return f"the database file {path} was deleted or replaced; restart the service"


def errors_of_the_store(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == STORE_LOGGER and r.levelno >= logging.ERROR]


# -- deleted or replaced: sticky


async def test_a_hit_after_the_database_was_deleted_is_unavailable(store: HookedStore, db_path: Path) -> None:
    await store.record_hit(hit())
    delete_files(db_path)
    with pytest.raises(StoreUnavailable, match="deleted or replaced"):
        await store.record_hit(hit(at=T0 + 1))
    assert store.unavailable_reason() == deleted_reason(db_path)


async def test_a_commit_that_raced_the_deletion_is_not_acknowledged(
    store: HookedStore, db_path: Path
) -> None:
    # The COMMIT itself succeeds — into the unlinked inode. Acknowledging it would promise a hit
    # that the next start can never see.
    store.before_commit = lambda: delete_files(db_path)
    with pytest.raises(StoreUnavailable, match="deleted or replaced"):
        await store.record_hit(hit())


async def test_a_replaced_database_is_unavailable(store: HookedStore, db_path: Path, tmp_path: Path) -> None:
    other = tmp_path / "other.db"
    sqlite3.connect(other).close()
    await store.record_hit(hit())
    os.replace(other, db_path)
    with pytest.raises(StoreUnavailable, match="deleted or replaced"):
        await store.record_hit(hit(at=T0 + 1))
    assert store.unavailable_reason() == deleted_reason(db_path)


async def test_a_deleted_wal_alone_is_noticed(store: HookedStore, db_path: Path) -> None:
    wal(db_path).unlink()
    with pytest.raises(StoreUnavailable):
        await store.record_hit(hit())
    assert store.unavailable_reason() == deleted_reason(wal(db_path))


async def test_readiness_notices_a_deletion_without_any_hit(store: HookedStore, db_path: Path) -> None:
    assert store.unavailable_reason() is None
    commits = store.commits
    delete_files(db_path)
    assert store.unavailable_reason() == deleted_reason(db_path)
    assert store.commits == commits


async def test_a_lost_store_stays_unavailable_when_the_files_come_back(
    store: HookedStore, db_path: Path, tmp_path: Path
) -> None:
    for path in (db_path, wal(db_path)):
        os.link(path, tmp_path / path.name)
    delete_files(db_path)
    with pytest.raises(StoreUnavailable):
        await store.record_hit(hit())
    for path in (db_path, wal(db_path)):
        os.link(tmp_path / path.name, path)  # the very files it opened, back at their paths
    with pytest.raises(StoreUnavailable, match="deleted or replaced"):
        await store.record_hit(hit(at=T0 + 1))
    with pytest.raises(StoreUnavailable, match="deleted or replaced"):
        await store.pending_intents("scaleService:1a5/1s7")
    assert store.unavailable_reason() == deleted_reason(db_path)


async def test_the_loss_is_logged_once(
    store: HookedStore, db_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    delete_files(db_path)
    outcomes = await asyncio.gather(
        *(store.record_hit(hit(at=T0 + i)) for i in range(20)), return_exceptions=True
    )
    outcomes += await asyncio.gather(
        *(store.record_hit(hit(at=T0 + 20 + i)) for i in range(5)), return_exceptions=True
    )
    store.unavailable_reason()
    assert all(isinstance(o, StoreUnavailable) for o in outcomes)
    assert errors_of_the_store(caplog) == [
        f"store lost: {deleted_reason(db_path)}; every hit is answered 503 until then"
    ]


async def test_closing_a_lost_store_works(db_path: Path) -> None:
    store = SqliteStore(db_path)
    await store.open()
    delete_files(db_path)
    assert store.unavailable_reason() is not None
    await store.close()
    assert store.unavailable_reason() == f"the store {db_path} is not open"


# -- cannot write: until a write succeeds


async def fill_until_full(store: SqliteStore) -> StoreUnavailable:
    """Cap the file at its size plus two pages, then record hits until one does not fit."""
    pages = await store._submit(lambda c: c.execute("PRAGMA page_count").fetchone()[0])
    await store._submit(lambda c: c.execute(f"PRAGMA max_page_count = {pages + 2}").fetchone())
    for i in range(1000):
        try:
            await store.record_hit(hit(at=T0 + i, disposition="ignored", reason="x" * 1000))
        except StoreUnavailable as e:
            return e
    raise AssertionError("the store never filled up")


async def room(store: SqliteStore) -> None:
    """Free the disk: no cap on the file any more (a statement that writes nothing)."""
    await store._submit(lambda c: c.execute("PRAGMA max_page_count = 1000000000").fetchone())


async def test_a_full_disk_makes_hits_unavailable_until_one_fits(store: HookedStore) -> None:
    error = await fill_until_full(store)
    assert str(error) == "transaction failed: database or disk is full"
    assert store.unavailable_reason() == "cannot write: database or disk is full"
    with pytest.raises(StoreUnavailable, match="full"):
        await store.record_hit(hit(at=T0 + 5000, disposition="ignored", reason="x" * 1000))
    await room(store)
    assert store.unavailable_reason() is not None  # a transaction that wrote nothing proves nothing
    result = await store.record_hit(hit(at=T0 + 5001))
    assert result.outcome == "accepted"
    assert store.unavailable_reason() is None


async def test_the_write_probe_recovers_a_full_store_without_any_hit(db_path: Path) -> None:
    store = SqliteStore(db_path, clock=lambda: T0, probe_interval=0.02)
    await store.open()
    try:
        await fill_until_full(store)
        await asyncio.sleep(0.1)  # a few probes, each needing a page that is not there
        assert store.unavailable_reason() == "cannot write: database or disk is full"
        await room(store)
        await until(lambda: store.unavailable_reason() is None, within=5, what="recovery")
        assert await store.get_meta("write_probe") is None  # the probe leaves nothing behind
    finally:
        await store.close()


def io_error() -> None:
    error = sqlite3.OperationalError("disk I/O error")
    error.sqlite_errorcode = sqlite3.SQLITE_IOERR_WRITE
    raise error


async def test_a_failed_commit_fails_its_batch_and_makes_the_store_unavailable(store: HookedStore) -> None:
    store.before_commit = io_error
    outcomes = await asyncio.gather(
        *(store.record_hit(hit(at=T0 + i)) for i in range(3)), return_exceptions=True
    )
    assert [str(o) for o in outcomes] == ["transaction failed: disk I/O error"] * 3
    assert store.unavailable_reason() == "cannot write: disk I/O error"
    assert await store.pending_intents("scaleService:1a5/1s7") == []
    assert isinstance(await store.record_hit(hit(at=T0 + 10)), HitResult)
    assert store.unavailable_reason() is None


async def test_a_write_failure_and_the_recovery_are_logged_once_each(
    store: HookedStore, caplog: pytest.LogCaptureFixture
) -> None:
    for i in range(3):
        store.before_commit = io_error
        with pytest.raises(StoreUnavailable):
            await store.record_hit(hit(at=T0 + i))
    await store.record_hit(hit(at=T0 + 10))
    await store.record_hit(hit(at=T0 + 11))
    messages = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == STORE_LOGGER]
    assert [m for m in messages if m[0] in ("WARNING", "ERROR")] == [
        ("ERROR", f"store {store.path} cannot write: disk I/O error; answering 503 until a write succeeds"),
        ("WARNING", f"store {store.path} can write again"),
    ]


async def test_a_constraint_failing_at_commit_is_not_a_write_failure(store: HookedStore) -> None:
    def violates_a_deferred_constraint(conn: sqlite3.Connection) -> None:
        conn.execute("PRAGMA defer_foreign_keys = ON")
        conn.execute(
            "INSERT INTO idempotency (receiver, key, hit_id, received_at)"
            " VALUES ('default/ghost', 'k', 'no-such-hit', 0)"
        )

    with pytest.raises(StoreUnavailable):
        await store._submit(violates_a_deferred_constraint)
    assert store.unavailable_reason() is None
