"""The standalone store: one SQLite file, statements on the event loop, group commit on a thread.

Why it is shaped this way:

- **Statements on the loop, COMMIT on a thread.** A hit's statements take microseconds; the COMMIT
  with ``synchronous=FULL`` is an fsync and takes far longer. So every async method turns its
  work into a *job* (a plain function of the connection) and queues it; the queued jobs run in one
  transaction on the loop and only the COMMIT goes to a single committer thread, which releases
  the GIL while the disk works. The COMMIT's completion answers the batch and starts the next one
  in the same loop wake-up (a chain of callbacks, no task in between). An earlier design ran every
  statement on a writer thread: under load each statement then waited for the GIL the busy loop
  held, and the store, not the disk, set the pace.
- **Group commit.** Jobs queued while a COMMIT is on its way to the disk form the next batch (up
  to ``max_batch``): one fsync for all of them. Batches run without savepoints (the common case);
  if a job raises, the batch is rolled back and re-run with a SAVEPOINT per job, so the failing
  job rolls back alone and gets its own exception. Futures are resolved only after the COMMIT
  returned: the listener answers 200 on ``record_hit``'s return, so a result must never reach it
  before the hit is durable. If the COMMIT fails, every job of the batch fails.
- **Outcome decided in the transaction.** ``record_hit`` reads (idempotency, dedupe, cooldown) and
  writes in the same transaction, and all transactions are serialised on the thread, so two
  concurrent hits can never both pass a check only one should pass.
- **Time windows compare ``received_at`` values**, never the wall clock, so they are exact to test.
  A window of W seconds covers ages ``< W``; a hit exactly W seconds later is outside it.
  ``clock`` only stamps ``updated_at`` on targets and intents.
- **The CLI reads through ``read_snapshot``**, a separate short-lived read-only connection: WAL mode
  lets it read a consistent snapshot while the service keeps writing, and ``mode=ro`` guarantees
  the CLI never takes the write lock from the running service.
- Receivers are identified by their key ("namespace/name") for idempotency, dedupe and cooldown,
  the same key ``status`` shows.
- **Acknowledged means durable in the live file.** After every COMMIT the committer thread checks
  that ``webhook.db`` and its ``-wal`` are still the files it opened (same ``st_dev``/``st_ino``);
  if one was deleted or replaced, the COMMIT went to a file nobody will ever open again, so the
  batch fails and the store stays *lost* until restart (reopening would start an empty store and
  lose every token). A write the disk refuses (full, I/O error, read-only) makes the store
  *unable to write* until a later write succeeds: hits keep being tried, and a probe writes a page
  every ``probe_interval`` seconds meanwhile, so it recovers even when no hit comes. Either state
  is ``unavailable_reason``, so ``/readyz`` tells the truth, and is logged once when it begins.
- **Retention in small slices.** Every ``PRUNE_INTERVAL`` seconds of ``received_at`` a hit prunes
  one slice: it examines at most ``PRUNE_LIMIT`` of the oldest expired hits (deleting those that
  may go) and deletes at most ``PRUNE_LIMIT`` expired idempotency keys, about ten milliseconds of
  work. A slice that used its whole limit means more is due, so the next batch prunes again: the
  deletion rate follows the ingest rate instead of a fixed number per minute. A cursor keeps the
  slices from re-reading hits that must stay (a pending intent, a receiver's latest hit); the scan
  starts again from the oldest hit every ``PRUNE_SWEEP`` seconds to find those that may go now.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sqlite3
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TypeVar, cast

from controller.model import Outcome, Problem
from controller.store.base import (
    FoldStep,
    HitRecord,
    HitRequest,
    HitResult,
    IntentState,
    PendingIntent,
    StoredToken,
    StoreError,
    StoreUnavailable,
    TargetState,
)
from controller.store.ids import IDEMPOTENCY_WINDOW, HitIds

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

PRUNE_INTERVAL: Final = 1.0  # received_at seconds between two prune slices while not behind
PRUNE_LIMIT: Final = 512  # hits examined (and idempotency keys deleted) per slice: ~10 ms of the loop
PRUNE_SWEEP: Final = 60.0  # received_at seconds between two scans from the oldest hit
DEFAULT_RETENTION: Final = 7 * 86400.0
MIN_RETENTION: Final = 60.0
PROBE_INTERVAL: Final = 1.0  # seconds between write probes while the store cannot write
# Errors of the file system rather than of a statement: the store cannot write until one succeeds.
_WRITE_ERRORS: Final = frozenset(
    {sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_READONLY, sqlite3.SQLITE_CANTOPEN}
)
DB_NAME: Final = "webhook.db"  # the store's file inside a state folder
BUSY_TIMEOUT_MS: Final = 5000

# One script per schema version: _MIGRATIONS[n] upgrades a file at user_version n to n + 1.
_MIGRATIONS: Final[tuple[str, ...]] = (
    """
    CREATE TABLE tokens (
        namespace TEXT NOT NULL,
        name TEXT NOT NULL,
        uid TEXT NOT NULL,
        jti TEXT NOT NULL,
        kid TEXT NOT NULL,
        token TEXT NOT NULL,
        driver TEXT NOT NULL,
        target_id TEXT NOT NULL,
        token_generation TEXT NOT NULL,
        issued_at REAL NOT NULL,
        PRIMARY KEY (namespace, name)
    );
    CREATE TABLE hits (
        id TEXT PRIMARY KEY,
        receiver TEXT NOT NULL,
        receiver_uid TEXT NOT NULL,
        target_id TEXT NOT NULL,
        outcome TEXT NOT NULL,
        reason TEXT,
        dedupe_key TEXT,
        received_at REAL NOT NULL
    );
    -- rule 3 (Alertmanager retry) and rule 4 (cooldown) of record_hit
    CREATE INDEX hits_dedupe ON hits (receiver, dedupe_key, received_at)
        WHERE outcome = 'accepted' AND dedupe_key IS NOT NULL;
    CREATE INDEX hits_accepted ON hits (receiver, received_at) WHERE outcome = 'accepted';
    -- rule 1: one row per (receiver, key), replaced once older than 24 h, pruned hourly
    CREATE TABLE idempotency (
        receiver TEXT NOT NULL,
        key TEXT NOT NULL,
        hit_id TEXT NOT NULL REFERENCES hits (id) ON DELETE CASCADE,
        received_at REAL NOT NULL,
        PRIMARY KEY (receiver, key)
    );
    CREATE INDEX idempotency_age ON idempotency (received_at);
    -- the latest hit per receiver (ids grow with time), so status never scans the hits
    CREATE INDEX hits_latest ON hits (receiver, id);
    CREATE TABLE intents (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        hit_id TEXT NOT NULL UNIQUE REFERENCES hits (id) ON DELETE CASCADE,
        target_id TEXT NOT NULL,
        receiver TEXT NOT NULL,
        intent TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('pending', 'folded', 'failed')),
        reason TEXT,
        before INTEGER,
        after INTEGER,
        clamped INTEGER,
        updated_at REAL NOT NULL
    );
    CREATE INDEX intents_pending ON intents (target_id, seq) WHERE state = 'pending';
    CREATE TABLE targets (
        target_id TEXT PRIMARY KEY,
        desired INTEGER,
        observed INTEGER,
        converged INTEGER NOT NULL,
        last_error TEXT,
        updated_at REAL NOT NULL
    );
    CREATE TABLE problems (
        id INTEGER PRIMARY KEY,
        file TEXT NOT NULL,
        document INTEGER,
        path TEXT NOT NULL,
        message TEXT NOT NULL
    );
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    """,
    # 2: a receiver's last good declaration, so an unreadable file at a restart keeps its receivers
    """
    ALTER TABLE tokens ADD COLUMN source TEXT NOT NULL DEFAULT '';
    ALTER TABLE tokens ADD COLUMN spec TEXT NOT NULL DEFAULT ''
    """,
    # 3: deleting a hit looks up the idempotency keys referring to it (ON DELETE CASCADE); without
    # this index every pruned hit scanned the whole table (46 hits/s pruned with 100,000 keys).
    """
    CREATE INDEX idempotency_hit ON idempotency (hit_id)
    """,
)
SCHEMA_VERSION: Final = len(_MIGRATIONS)


@dataclass(frozen=True)
class Snapshot:
    """Everything ``status`` and ``trigger-url`` show, read in one read transaction."""

    tokens: list[StoredToken]
    targets: list[TargetState]
    last_hits: dict[str, HitRecord]
    pending: dict[str, int]  # pending intents per target id (targets without any are absent)
    problems: list[Problem]
    meta: dict[str, str]


@dataclass(frozen=True)
class _Job:
    fn: Callable[[sqlite3.Connection], Any]
    future: asyncio.Future[Any]


def _unavailable(error: BaseException, what: str) -> StoreUnavailable:
    exc = StoreUnavailable(f"{what}: {error}")
    exc.__cause__ = error
    return exc


def _is_write_error(error: BaseException | None) -> bool:
    """Whether SQLite failed to write the file (disk full, I/O error...), not a statement."""
    code = getattr(error, "sqlite_errorcode", None) if isinstance(error, sqlite3.Error) else None
    return code is not None and code & 0xFF in _WRITE_ERRORS


@dataclass(frozen=True)
class _FileIds:
    """The database file and its WAL as opened: each path with its ``(st_dev, st_ino)``."""

    files: tuple[tuple[Path, tuple[int, int]], ...]

    @classmethod
    def of(cls, path: Path) -> _FileIds:
        files = []
        for file in (path, path.with_name(f"{path.name}-wal")):
            with contextlib.suppress(FileNotFoundError):
                st = os.stat(file)
                files.append((file, (st.st_dev, st.st_ino)))
        return cls(tuple(files))

    def lost(self) -> str | None:
        """Why a COMMIT now is not durable (a file was deleted or replaced), or None."""
        for file, opened in self.files:
            try:
                st = os.stat(file)
            except (FileNotFoundError, NotADirectoryError):
                pass
            except OSError:
                continue  # e.g. the folder is no longer searchable: the open files still work
            else:
                if (st.st_dev, st.st_ino) == opened:
                    continue
            return f"the database file {file} was deleted or replaced; restart the service"
        return None


class _Pruner:
    """Retention in slices (see the module docstring). Runs inside a hit's job, on the loop."""

    def __init__(self, *, retention: float, idempotency_window: float, limit: int) -> None:
        self.retention = retention
        self.idempotency_window = idempotency_window
        self.limit = limit
        self.pruned_at = float("-inf")  # received_at of the last slice
        self.behind = False  # the last slice used its whole limit: the next batch prunes again
        self.cursor = ""  # hits with ids up to this were examined since the sweep began
        self.sweep_at = float("-inf")  # received_at when the sweep began
        self.batch = -1  # the batch of the last slice: one slice per batch at most

    def due(self, at: float, batch: int) -> bool:
        return batch != self.batch and (self.behind or at - self.pruned_at >= PRUNE_INTERVAL)

    def prune(self, conn: sqlite3.Connection, at: float, batch: int) -> None:
        """Forget expired idempotency keys, and hits older than ``retention`` — except a hit whose
        intent is still pending, and each receiver's latest hit (``status`` shows it). Hit ids start
        with their time, so the age test runs on the primary key.

        If the batch rolls back, the slice's deletions are undone but the cursor stays: those hits
        wait for the next sweep."""
        self.batch, self.pruned_at = batch, at
        if not self.behind and at - self.sweep_at >= PRUNE_SWEEP:
            self.cursor, self.sweep_at = "", at
        keys = conn.execute(
            "DELETE FROM idempotency WHERE rowid IN"
            " (SELECT rowid FROM idempotency WHERE received_at <= ? LIMIT ?)",
            (at - self.idempotency_window, self.limit),
        ).rowcount
        cutoff = HitIds.time_prefix(at - self.retention)  # shorter than any id: no id equals it
        row = conn.execute(
            "SELECT id FROM hits WHERE id > ? AND id < ? ORDER BY id LIMIT 1 OFFSET ?",
            (self.cursor, cutoff, self.limit - 1),
        ).fetchone()
        last = cutoff if row is None else str(row[0])  # this slice examines the ids up to here
        conn.execute(
            "DELETE FROM hits WHERE id IN (SELECT h.id FROM hits h WHERE h.id > ? AND h.id <= ?"
            " AND NOT EXISTS (SELECT 1 FROM intents i WHERE i.hit_id = h.id AND i.state = 'pending')"
            " AND h.id < (SELECT MAX(l.id) FROM hits l WHERE l.receiver = h.receiver))",
            (self.cursor, last),
        )
        self.cursor = last
        self.behind = row is not None or keys >= self.limit


class SqliteStore:
    """The ``Store`` of standalone mode. ``commits`` counts committed transactions (batches)."""

    def __init__(
        self,
        path: Path,
        *,
        clock: Callable[[], float] = time.time,
        max_batch: int = 256,
        retention: float = DEFAULT_RETENTION,
        probe_interval: float = PROBE_INTERVAL,
    ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        if not MIN_RETENTION <= retention < float("inf"):
            raise ValueError(f"retention must be at least {MIN_RETENTION:g} s, and finite")
        # A hit's idempotency key goes with the hit (ON DELETE CASCADE): a retention under 24 h
        # shortens the idempotency window to match, said at open.
        self._idempotency_window = min(IDEMPOTENCY_WINDOW, retention)
        # A slice examines more hits than a batch can add, so pruning a slice per batch keeps up with
        # any ingest rate.
        self._pruner = _Pruner(
            retention=retention,
            idempotency_window=self._idempotency_window,
            limit=max(PRUNE_LIMIT, 2 * max_batch),
        )
        self._probe_interval = probe_interval
        self.path = path
        self.commits = 0
        self._clock = clock
        self._max_batch = max_batch
        self._conn: sqlite3.Connection | None = None
        self._committer: ThreadPoolExecutor | None = None
        self._queue: list[_Job] = []
        self._busy = False  # a batch is being run or committed
        self._idle = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._accepting = False
        self._batches = 0  # batches started, so the pruner slices once per batch
        self._hit_ids = HitIds()
        self._files: _FileIds | None = None
        self._lost: str | None = None  # a file was deleted or replaced: sticky until restart
        self._cannot_write: str | None = None  # the last write failed: until one succeeds
        self._probe: asyncio.Task[None] | None = None

    # -- lifecycle

    async def open(self) -> None:
        if self._conn is not None:
            return
        committer = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"sqlite-commit:{self.path.name}")
        try:
            self._conn, self._files = await asyncio.get_running_loop().run_in_executor(
                committer, _open, self.path
            )
        except (sqlite3.Error, OSError) as e:
            committer.shutdown(wait=False)
            raise _unavailable(e, f"cannot open {self.path}") from e
        self._committer = committer
        self._accepting = True
        logger.info("store open at %s (schema version %d)", self.path, SCHEMA_VERSION)
        if self._idempotency_window < IDEMPOTENCY_WINDOW:
            logger.warning(
                "hit retention is %gs, under 24 h: an Idempotency-Key is remembered for %gs only",
                self._pruner.retention,
                self._idempotency_window,
            )

    async def close(self) -> None:
        if self._conn is None or self._committer is None:
            return
        self._accepting = False
        if self._probe is not None:
            self._probe.cancel()
            await asyncio.wait([self._probe])
            self._probe = None
        if self._busy:
            await self._idle.wait()  # jobs already accepted still get their answer
        self._conn.close()
        self._conn = None
        self._committer.shutdown(wait=True)
        self._committer = None
        logger.info("store at %s closed after %d commits", self.path, self.commits)

    def is_open(self) -> bool:
        return self._accepting

    def unavailable_reason(self) -> str | None:
        """Not open, lost its file (checked here too, so an idle store tells), or cannot write."""
        if not self._accepting:
            return f"the store {self.path} is not open"
        if self._lost is None and self._files is not None and (lost := self._files.lost()) is not None:
            self._lose(lost)
        return self._lost or self._cannot_write

    async def pragmas(self) -> dict[str, Any]:
        """The writer connection's durability settings, for the start-up log (and the tests)."""
        names = ("journal_mode", "synchronous", "foreign_keys", "busy_timeout")
        return await self._submit(lambda c: {n: c.execute(f"PRAGMA {n}").fetchone()[0] for n in names})

    # -- tokens

    async def get_token(self, namespace: str, name: str) -> StoredToken | None:
        return await self._submit(lambda c: _get_token(c, namespace, name))

    async def put_token(self, token: StoredToken) -> None:
        await self._submit(lambda c: _put_token(c, token))

    async def delete_token(self, namespace: str, name: str) -> None:
        sql = "DELETE FROM tokens WHERE namespace = ? AND name = ?"
        await self._submit(lambda c: c.execute(sql, (namespace, name)).rowcount)

    async def list_tokens(self) -> list[StoredToken]:
        return await self._submit(_list_tokens)

    # -- hits and intents

    async def record_hit(self, request: HitRequest) -> HitResult:
        hit_id = self._hit_ids.next(request.received_at)
        return await self._submit(lambda c: self._record_hit(c, request, hit_id))

    async def targets_with_work(self) -> list[str]:
        return await self._submit(_targets_with_work)

    async def pending_intents(self, target_id: str) -> list[PendingIntent]:
        return await self._submit(lambda c: _pending_intents(c, target_id))

    async def commit_fold(self, target_id: str, desired: int, steps: Sequence[FoldStep]) -> None:
        now = self._clock()
        await self._submit(lambda c: _commit_fold(c, target_id, desired, list(steps), now))

    async def fail_intents(self, target_id: str, reason: str) -> int:
        now = self._clock()
        return await self._submit(lambda c: _fail_intents(c, target_id, reason, now))

    async def get_target(self, target_id: str) -> TargetState | None:
        return await self._submit(lambda c: _get_target(c, target_id))

    async def set_observed(
        self, target_id: str, observed: int | None, *, converged: bool, error: str | None
    ) -> None:
        now = self._clock()
        await self._submit(lambda c: _set_observed(c, target_id, observed, converged, error, now))

    # -- status

    async def list_targets(self) -> list[TargetState]:
        return await self._submit(_list_targets)

    async def last_hits(self) -> dict[str, HitRecord]:
        return await self._submit(_last_hits)

    async def set_problems(self, problems: Sequence[Problem]) -> None:
        await self._submit(lambda c: _set_problems(c, list(problems)))

    async def list_problems(self) -> list[Problem]:
        return await self._submit(_list_problems)

    async def set_meta(self, key: str, value: str) -> None:
        sql = (
            "INSERT INTO meta (key, value) VALUES (?, ?)"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value"
        )
        await self._submit(lambda c: c.execute(sql, (key, value)).rowcount)

    async def get_meta(self, key: str) -> str | None:
        def get(c: sqlite3.Connection) -> str | None:
            row = c.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
            return None if row is None else str(row[0])

        return await self._submit(get)

    # -- group commit

    async def _submit(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        if not self._accepting:
            raise StoreUnavailable(f"store {self.path} is not open")
        if self._lost is not None:
            raise StoreUnavailable(self._lost)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[_T] = loop.create_future()
        self._queue.append(_Job(fn, future))
        if not self._busy:
            self._busy, self._loop = True, loop
            self._idle.clear()
            loop.call_soon(self._start_batch)  # after this iteration, so its other arrivals join in
        return await future

    # The batch pipeline is a chain of callbacks rather than a task awaiting the committer: the
    # COMMIT's completion resolves the batch and starts the next one in the same loop wake-up,
    # which keeps the time between two commits (and so every hit's latency) short.

    def _start_batch(self) -> None:
        """On the loop: run the queued jobs in a transaction, then hand the COMMIT to the thread."""
        if self._lost is not None:  # nothing more can be made durable: answer what waits
            for job in self._queue:
                _resolve(job.future, None, StoreUnavailable(self._lost))
            self._queue = []
        if not self._queue:
            self._busy = False
            self._idle.set()
            return
        batch, self._queue = self._queue[: self._max_batch], self._queue[self._max_batch :]
        conn, committer, loop, files = self._conn, self._committer, self._loop, self._files
        assert conn is not None and committer is not None and loop is not None and files is not None
        self._batches += 1
        changes = conn.total_changes
        try:
            conn.execute("BEGIN IMMEDIATE")
            outcomes = _run_jobs_optimistically(conn, batch)
            if outcomes is None:
                # A job failed: undo the batch, then isolate every job in its own savepoint so the
                # failing one rolls back alone. Jobs are pure functions of the connection, so
                # running them again after the rollback is safe. (A write error may have rolled
                # the transaction back already.)
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                conn.execute("BEGIN IMMEDIATE")
                outcomes = [_run_job(conn, job) for job in batch]
        except sqlite3.Error as e:
            self._finish_batch(batch, [], e, None, False)
            return
        ran, wrote = outcomes, conn.total_changes != changes

        def commit() -> None:  # on the committer thread
            error: sqlite3.Error | None = None
            try:
                self._commit(conn)
            except sqlite3.Error as e:
                error = e
            # Acknowledge only what went to the live file: two stat calls per batch.
            lost = files.lost()
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting any more
                loop.call_soon_threadsafe(self._finish_batch, batch, ran, error, lost, wrote)

        committer.submit(commit)

    def _finish_batch(
        self,
        batch: list[_Job],
        outcomes: list[tuple[Any, BaseException | None]],
        error: sqlite3.Error | None,
        lost: str | None,
        wrote: bool,
    ) -> None:
        """On the loop, once the batch is durable (or failed): answer its jobs, start the next."""
        conn = self._conn
        if error is not None and conn is not None and conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):  # e.g. a deferred constraint failed at COMMIT
                conn.execute("ROLLBACK")
        if lost is not None:
            self._lose(lost)
            for job in batch:
                _resolve(job.future, None, StoreUnavailable(lost))
        elif error is not None:
            if not self._write_failed(error):
                logger.error("store transaction of %d jobs failed: %s", len(batch), error)
            for job in batch:
                _resolve(job.future, None, _unavailable(error, "transaction failed"))
        else:
            self.commits += 1
            for job, (result, job_error) in zip(batch, outcomes, strict=True):
                _resolve(job.future, result, job_error)
            failed = [e.__cause__ for _, e in outcomes if e is not None and _is_write_error(e.__cause__)]
            if failed:
                self._write_failed(failed[0])
            elif wrote and self._cannot_write is not None:
                logger.warning("store %s can write again", self.path)
                self._cannot_write = None
        self._start_batch()

    def _lose(self, reason: str) -> None:
        if self._lost is None:
            logger.error("store lost: %s; every hit is answered 503 until then", reason)
            self._lost = reason

    def _write_failed(self, error: BaseException | None) -> bool:
        """Enter (or stay in) the state of a store that cannot write, if ``error`` says so."""
        if not _is_write_error(error):
            return False
        if self._cannot_write is None:
            logger.error("store %s cannot write: %s; answering 503 until a write succeeds", self.path, error)
        self._cannot_write = f"cannot write: {error}"
        if (self._probe is None or self._probe.done()) and self._loop is not None:
            self._probe = self._loop.create_task(self._probe_writes(), name="sqlite-write-probe")
        return True

    async def _probe_writes(self) -> None:
        """While the store cannot write: try a page's worth every ``probe_interval``, so it recovers
        even when no hit comes (a load balancer stops sending them to an unready replica)."""
        while self._cannot_write is not None and self._lost is None and self._accepting:
            await asyncio.sleep(self._probe_interval)
            with contextlib.suppress(StoreError):
                await self._submit(_probe_write)

    def _commit(self, conn: sqlite3.Connection) -> None:
        """Runs on the committer thread: the fsync happens here, off the event loop."""
        conn.execute("COMMIT")

    def _record_hit(self, conn: sqlite3.Connection, req: HitRequest, hit_id: str) -> HitResult:
        if self._pruner.due(req.received_at, self._batches):
            self._pruner.prune(conn, req.received_at, self._batches)
        return _record_hit(conn, req, hit_id, self._clock(), self._idempotency_window)


def _run_jobs_optimistically(
    conn: sqlite3.Connection, batch: list[_Job]
) -> list[tuple[Any, BaseException | None]] | None:
    """Run the batch without savepoints (three statements fewer per job, the common case); None if
    any job raised, leaving the transaction to be rolled back."""
    outcomes: list[tuple[Any, BaseException | None]] = []
    for job in batch:
        try:
            outcomes.append((job.fn(conn), None))
        except Exception:
            return None
    return outcomes


def _resolve(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():  # the awaiting task was cancelled; the job's effect stays committed
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


def _run_job(conn: sqlite3.Connection, job: _Job) -> tuple[Any, BaseException | None]:
    """Run one job in its own savepoint. sqlite3 errors of the savepoint itself fail the batch."""
    conn.execute("SAVEPOINT job")
    try:
        result = job.fn(conn)
    except Exception as e:
        if not conn.in_transaction:  # SQLite rolled the whole transaction back (e.g. disk full)
            if isinstance(e, sqlite3.Error):
                raise
            raise sqlite3.OperationalError(f"the transaction was rolled back: {e}") from e
        conn.execute("ROLLBACK TO job")
        conn.execute("RELEASE job")
        if isinstance(e, sqlite3.Error):
            return None, _unavailable(e, "store operation failed")
        return None, e
    conn.execute("RELEASE job")
    return result, None


def _open(path: Path) -> tuple[sqlite3.Connection, _FileIds]:
    conn = _connect(path)
    return conn, _FileIds.of(path)  # after _connect: the WAL exists once the migration committed


def _connect(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    # SQLite creates the -wal and -shm files with the database file's mode: creating it 0600 keeps
    # all three (tokens inside) from other users, whatever the umask.
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    # isolation_level=None: the sqlite3 module issues no implicit BEGIN; the writer thread does.
    # check_same_thread=False: statements run on the event loop, COMMIT on the committer thread;
    # never both at once (a batch awaits its COMMIT before the next batch starts).
    conn = sqlite3.connect(
        path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False
    )
    try:
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode != "wal":
            raise sqlite3.OperationalError(f"journal_mode is {mode}, WAL is required")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA foreign_keys = ON")
        _migrate(conn)
    except BaseException:
        conn.close()
        raise
    return conn


def _migrate(conn: sqlite3.Connection) -> None:
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise sqlite3.DatabaseError(
                f"schema version {version} is newer than this program's {SCHEMA_VERSION}"
            )
        for script_version in range(version, SCHEMA_VERSION):
            # executescript() would COMMIT first; run the statements one by one inside our transaction.
            for statement in _MIGRATIONS[script_version].split(";"):
                if statement.strip():
                    conn.execute(statement)
            logger.info("store schema migrated to version %d", script_version + 1)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


# -- jobs: plain functions of a connection, shared by the writer thread and read_snapshot


def _probe_write(conn: sqlite3.Connection) -> None:
    """A page's worth of new rows, deleted in the same transaction: it needs room as a hit does."""
    conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('write_probe', hex(zeroblob(4096)))")
    conn.execute("DELETE FROM meta WHERE key = 'write_probe'")


def _record_hit(
    conn: sqlite3.Connection, req: HitRequest, hit_id: str, now: float, idempotency_window: float
) -> HitResult:
    """Decide the hit's outcome (rules 1-5 of the brief, in order) and record it."""
    at = req.received_at
    if req.idempotency_key is not None:
        row = conn.execute(
            "SELECT hit_id FROM idempotency WHERE receiver = ? AND key = ? AND received_at > ?",
            (req.receiver, req.idempotency_key, at - idempotency_window),
        ).fetchone()
        if row is not None:
            return HitResult(hit_id=row[0], outcome="duplicate")
    if req.disposition != "act":
        _insert_hit(conn, req, hit_id, req.disposition, req.reason)
        return HitResult(hit_id=hit_id, outcome=req.disposition)
    if req.dedupe_key is not None:
        row = conn.execute(
            "SELECT id FROM hits WHERE receiver = ? AND outcome = 'accepted' AND dedupe_key = ?"
            " AND received_at > ? ORDER BY received_at LIMIT 1",
            (req.receiver, req.dedupe_key, at - req.dedupe_window),
        ).fetchone()
        if row is not None:
            return HitResult(hit_id=row[0], outcome="duplicate")
    if req.cooldown > 0:
        row = conn.execute(
            "SELECT MAX(received_at) FROM hits WHERE receiver = ? AND outcome = 'accepted'", (req.receiver,)
        ).fetchone()
        if row[0] is not None and at - row[0] < req.cooldown:
            reason = f"cooldown: last accepted hit {at - row[0]:.1f}s ago, cooldown is {req.cooldown:g}s"
            _insert_hit(conn, req, hit_id, "cooldown", reason)
            return HitResult(hit_id=hit_id, outcome="cooldown")
    if req.intent is None:
        raise StoreError(f"hit of {req.receiver} to act on has no intent")
    _insert_hit(conn, req, hit_id, "accepted", req.reason)
    conn.execute(
        "INSERT INTO intents (hit_id, target_id, receiver, intent, state, updated_at)"
        " VALUES (?, ?, ?, ?, 'pending', ?)",
        (hit_id, req.target_id, req.receiver, json.dumps(req.intent, sort_keys=True), now),
    )
    return HitResult(hit_id=hit_id, outcome="accepted")


def _insert_hit(
    conn: sqlite3.Connection, req: HitRequest, hit_id: str, outcome: Outcome, reason: str | None
) -> None:
    conn.execute(
        "INSERT INTO hits (id, receiver, receiver_uid, target_id, outcome, reason, dedupe_key, received_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            hit_id,
            req.receiver,
            req.receiver_uid,
            req.target_id,
            outcome,
            reason,
            req.dedupe_key,
            req.received_at,
        ),
    )
    if req.idempotency_key is not None:
        # Only reached when no row younger than 24 h exists, so replacing an old one is right.
        conn.execute(
            "INSERT INTO idempotency (receiver, key, hit_id, received_at) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (receiver, key) DO UPDATE SET"
            " hit_id = excluded.hit_id, received_at = excluded.received_at",
            (req.receiver, req.idempotency_key, hit_id, req.received_at),
        )


def _targets_with_work(conn: sqlite3.Connection) -> list[str]:
    rows = conn.execute(
        "SELECT target_id FROM intents WHERE state = 'pending'"
        " UNION SELECT target_id FROM targets WHERE converged = 0 ORDER BY target_id"
    ).fetchall()
    return [str(r[0]) for r in rows]


def _pending_intents(conn: sqlite3.Connection, target_id: str) -> list[PendingIntent]:
    rows = conn.execute(
        "SELECT seq, hit_id, receiver, intent FROM intents"
        " WHERE target_id = ? AND state = 'pending' ORDER BY seq",
        (target_id,),
    ).fetchall()
    return [PendingIntent(seq=r[0], hit_id=r[1], receiver=r[2], intent=json.loads(r[3])) for r in rows]


def _commit_fold(
    conn: sqlite3.Connection, target_id: str, desired: int, steps: list[FoldStep], now: float
) -> None:
    cur = conn.executemany(
        "UPDATE intents SET state = 'folded', before = ?, after = ?, clamped = ?, updated_at = ?"
        " WHERE seq = ? AND hit_id = ? AND target_id = ? AND state = 'pending'",
        [(s.before, s.after, int(s.clamped), now, s.seq, s.hit_id, target_id) for s in steps],
    )
    if cur.rowcount != len(steps):
        # Raising rolls back this job (see _run_batch): nothing of the fold is recorded.
        raise StoreError(f"{len(steps) - cur.rowcount} of {len(steps)} steps of {target_id} are not pending")
    conn.execute(
        "INSERT INTO targets (target_id, desired, observed, converged, last_error, updated_at)"
        " VALUES (?, ?, NULL, 0, NULL, ?) ON CONFLICT (target_id) DO UPDATE SET"
        " desired = excluded.desired, converged = 0, updated_at = excluded.updated_at",
        (target_id, desired, now),
    )


def _fail_intents(conn: sqlite3.Connection, target_id: str, reason: str, now: float) -> int:
    count = conn.execute(
        "UPDATE intents SET state = 'failed', reason = ?, updated_at = ?"
        " WHERE target_id = ? AND state = 'pending'",
        (reason, now, target_id),
    ).rowcount
    conn.execute(
        "INSERT INTO targets (target_id, desired, observed, converged, last_error, updated_at)"
        " VALUES (?, NULL, NULL, 1, ?, ?) ON CONFLICT (target_id) DO UPDATE SET"
        " converged = 1, last_error = excluded.last_error, updated_at = excluded.updated_at",
        (target_id, reason, now),
    )
    return int(count)


def _set_observed(
    conn: sqlite3.Connection,
    target_id: str,
    observed: int | None,
    converged: bool,
    error: str | None,
    now: float,
) -> None:
    conn.execute(
        "INSERT INTO targets (target_id, desired, observed, converged, last_error, updated_at)"
        " VALUES (?, NULL, ?, ?, ?, ?) ON CONFLICT (target_id) DO UPDATE SET observed = excluded.observed,"
        " converged = excluded.converged, last_error = excluded.last_error, updated_at = excluded.updated_at",
        (target_id, observed, int(converged), error, now),
    )


_TARGET_COLUMNS: Final = "target_id, desired, observed, converged, last_error, updated_at"


def _target(row: Any) -> TargetState:
    return TargetState(
        target_id=row[0],
        desired=row[1],
        observed=row[2],
        converged=bool(row[3]),
        last_error=row[4],
        updated_at=float(row[5]),
    )


def _get_target(conn: sqlite3.Connection, target_id: str) -> TargetState | None:
    row = conn.execute(f"SELECT {_TARGET_COLUMNS} FROM targets WHERE target_id = ?", (target_id,)).fetchone()
    return None if row is None else _target(row)


def _list_targets(conn: sqlite3.Connection) -> list[TargetState]:
    return [_target(r) for r in conn.execute(f"SELECT {_TARGET_COLUMNS} FROM targets ORDER BY target_id")]


def _last_hits(conn: sqlite3.Connection) -> dict[str, HitRecord]:
    rows = conn.execute(
        "SELECT h.id, h.receiver, h.outcome, h.received_at,"
        " CASE WHEN i.state = 'failed' THEN i.reason ELSE h.reason END,"
        " i.state, i.before, i.after, i.clamped"
        " FROM (SELECT receiver, MAX(id) AS id FROM hits GROUP BY receiver) l"
        " JOIN hits h ON h.id = l.id LEFT JOIN intents i ON i.hit_id = h.id"
        " ORDER BY h.receiver"
    ).fetchall()
    return {
        r[1]: HitRecord(
            hit_id=r[0],
            receiver=r[1],
            outcome=cast(Outcome, r[2]),
            received_at=float(r[3]),
            reason=r[4],
            intent_state=cast(IntentState | None, r[5]),
            before=r[6],
            after=r[7],
            clamped=None if r[8] is None else bool(r[8]),
        )
        for r in rows
    }


def _pending_counts(conn: sqlite3.Connection) -> dict[str, int]:
    rows = conn.execute("SELECT target_id, COUNT(*) FROM intents WHERE state = 'pending' GROUP BY target_id")
    return {str(r[0]): int(r[1]) for r in rows}


_TOKEN_COLUMNS: Final = (
    "namespace, name, uid, jti, kid, token, driver, target_id, token_generation, issued_at, source, spec"
)


def _token(row: Any) -> StoredToken:
    namespace, name, uid, jti, kid, token, driver, target_id, generation, issued_at, source, spec = row
    return StoredToken(
        namespace=namespace,
        name=name,
        uid=uid,
        jti=jti,
        kid=kid,
        token=token,
        driver=driver,
        target_id=target_id,
        token_generation=generation,
        issued_at=float(issued_at),
        source=source,
        spec=spec,
    )


def _get_token(conn: sqlite3.Connection, namespace: str, name: str) -> StoredToken | None:
    row = conn.execute(
        f"SELECT {_TOKEN_COLUMNS} FROM tokens WHERE namespace = ? AND name = ?", (namespace, name)
    ).fetchone()
    return None if row is None else _token(row)


def _put_token(conn: sqlite3.Connection, t: StoredToken) -> None:
    conn.execute(
        f"INSERT OR REPLACE INTO tokens ({_TOKEN_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            t.namespace,
            t.name,
            t.uid,
            t.jti,
            t.kid,
            t.token,
            t.driver,
            t.target_id,
            t.token_generation,
            t.issued_at,
            t.source,
            t.spec,
        ),
    )


def _list_tokens(conn: sqlite3.Connection) -> list[StoredToken]:
    return [_token(r) for r in conn.execute(f"SELECT {_TOKEN_COLUMNS} FROM tokens ORDER BY namespace, name")]


def _set_problems(conn: sqlite3.Connection, problems: list[Problem]) -> None:
    conn.execute("DELETE FROM problems")
    conn.executemany(
        "INSERT INTO problems (file, document, path, message) VALUES (?, ?, ?, ?)",
        [(p.file, p.document, p.path, p.message) for p in problems],
    )


def _list_problems(conn: sqlite3.Connection) -> list[Problem]:
    rows = conn.execute("SELECT path, message, file, document FROM problems ORDER BY id")
    return [Problem(path=r[0], message=r[1], file=r[2], document=r[3]) for r in rows]


def _meta(conn: sqlite3.Connection) -> dict[str, str]:
    return {str(r[0]): str(r[1]) for r in conn.execute("SELECT key, value FROM meta ORDER BY key")}


# -- the CLI's read-only view


def read_snapshot(path: Path) -> Snapshot:
    """Read the store of a (possibly running) service from another process, without ever writing."""
    uri = f"{path.resolve().as_uri()}?mode=ro"
    try:
        conn = sqlite3.connect(uri, uri=True, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000)
    except sqlite3.Error as e:
        raise StoreUnavailable(f"cannot open {path} read-only: {e}") from e
    try:
        conn.execute("BEGIN")  # one read transaction: every part comes from the same snapshot
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        if version != SCHEMA_VERSION:
            raise StoreUnavailable(f"{path} has schema version {version}, expected {SCHEMA_VERSION}")
        snapshot = Snapshot(
            tokens=_list_tokens(conn),
            targets=_list_targets(conn),
            last_hits=_last_hits(conn),
            pending=_pending_counts(conn),
            problems=_list_problems(conn),
            meta=_meta(conn),
        )
        conn.execute("COMMIT")
        return snapshot
    except sqlite3.Error as e:
        raise StoreUnavailable(f"cannot read {path}: {e}") from e
    finally:
        conn.close()
