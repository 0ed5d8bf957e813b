"""The standalone store: one SQLite file, one writer thread, group commit.

Why it is shaped this way:

- **One thread owns the connection.** sqlite3 calls block, so they cannot run on the event loop;
  a pool of threads would only fight over SQLite's single write lock. Every async method turns its
  work into a *job* (a plain function of the connection), puts it on a queue, and awaits an asyncio
  future that the thread completes with ``loop.call_soon_threadsafe``.
- **Group commit.** ``synchronous=FULL`` makes every COMMIT an fsync, and the fsync, not the SQL,
  is what a hit costs. The thread takes one job, drains every job already waiting (up to
  ``max_batch``), runs them in ONE transaction and commits once. Each job runs inside its own
  SAVEPOINT, so a failing job rolls back alone and gets its own exception. Futures are resolved only
  after the COMMIT returned: the listener answers 200 on ``record_hit``'s return, so a result must
  never reach it before the hit is durable. If the COMMIT fails, every job of the batch fails.
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
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import queue
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Sequence
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

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

IDEMPOTENCY_WINDOW: Final = 24 * 3600.0
PRUNE_INTERVAL: Final = 3600.0  # how often (in received_at seconds) expired idempotency keys are deleted
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
    -- the latest hit per receiver, so status never scans the hits
    CREATE TABLE last_hits (
        receiver TEXT PRIMARY KEY,
        hit_id TEXT NOT NULL REFERENCES hits (id) ON DELETE CASCADE
    );
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
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]


class _Stop:
    """Queue marker: the writer finishes the jobs ahead of it, then closes the connection."""


def _unavailable(error: BaseException, what: str) -> StoreUnavailable:
    # Built on the writer thread and raised on the loop, so chain by hand instead of `raise from`.
    exc = StoreUnavailable(f"{what}: {error}")
    exc.__cause__ = error
    return exc


def _settle(
    loop: asyncio.AbstractEventLoop, future: asyncio.Future[Any], result: Any, error: BaseException | None
) -> None:
    """Complete ``future`` on its loop, from any thread."""

    def settle() -> None:
        if future.done():  # the awaiting task was cancelled; the job's effect stays committed
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)

    with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting any more
        loop.call_soon_threadsafe(settle)


class SqliteStore:
    """The ``Store`` of standalone mode. ``commits`` counts committed transactions (batches)."""

    def __init__(self, path: Path, *, clock: Callable[[], float] = time.time, max_batch: int = 256) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self.path = path
        self.commits = 0
        self._clock = clock
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue[_Job | _Stop] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._stopped: asyncio.Future[None] | None = None
        self._accepting = False
        self._pruned_at = float("-inf")  # received_at of the last idempotency prune; writer thread only

    # -- lifecycle

    async def open(self) -> None:
        if self._thread is not None:
            return
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()
        self._stopped = loop.create_future()
        self._queue = queue.SimpleQueue()
        self._thread = threading.Thread(
            target=self._run, args=(loop, ready), name=f"sqlite-writer:{self.path.name}", daemon=True
        )
        self._thread.start()
        try:
            await ready
        except BaseException:
            self._thread = None
            raise
        self._accepting = True
        logger.info("store open at %s (schema version %d)", self.path, SCHEMA_VERSION)

    async def close(self) -> None:
        if self._thread is None or self._stopped is None:
            return
        self._accepting = False
        self._queue.put(_Stop())
        await self._stopped
        self._thread = None
        logger.info("store at %s closed", self.path)

    def is_open(self) -> bool:
        return self._accepting

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
        hit_id = uuid.uuid4().hex
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

    # -- the writer thread

    async def _submit(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        if not self._accepting:
            raise StoreUnavailable(f"store {self.path} is not open")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[_T] = loop.create_future()
        self._queue.put(_Job(fn, loop, future))
        return await future

    def _run(self, loop: asyncio.AbstractEventLoop, ready: asyncio.Future[None]) -> None:
        try:
            conn = _connect(self.path)
        except (sqlite3.Error, OSError) as e:
            _settle(loop, ready, None, _unavailable(e, f"cannot open {self.path}"))
            self._settle_stopped(loop)
            return
        _settle(loop, ready, None, None)
        try:
            stop = False
            while not stop:
                batch, stop = self._take_batch()
                if batch:
                    self._run_batch(conn, batch)
        finally:
            conn.close()
            self._fail_leftovers()
            self._settle_stopped(loop)

    def _settle_stopped(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._stopped is not None:
            _settle(loop, self._stopped, None, None)

    def _take_batch(self) -> tuple[list[_Job], bool]:
        """Block for one job, then take every job already waiting, up to ``max_batch``."""
        item = self._queue.get()
        if isinstance(item, _Stop):
            return [], True
        batch = [item]
        while len(batch) < self._max_batch:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, _Stop):
                return batch, True
            batch.append(item)
        return batch, False

    def _run_batch(self, conn: sqlite3.Connection, batch: list[_Job]) -> None:
        outcomes: list[tuple[Any, BaseException | None]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            for job in batch:
                outcomes.append(_run_job(conn, job))
            conn.execute("COMMIT")
        except sqlite3.Error as e:
            logger.error("store transaction of %d jobs failed: %s", len(batch), e)
            if conn.in_transaction:  # e.g. a deferred constraint failed at COMMIT, which keeps it open
                conn.execute("ROLLBACK")
            for job in batch:
                _settle(job.loop, job.future, None, _unavailable(e, "transaction failed"))
            return
        self.commits += 1
        for job, (result, error) in zip(batch, outcomes, strict=True):
            _settle(job.loop, job.future, result, error)

    def _fail_leftovers(self) -> None:
        # Jobs can only follow the stop marker if the thread died; never leave their callers waiting.
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if isinstance(item, _Job):
                _settle(item.loop, item.future, None, StoreUnavailable(f"store {self.path} is closed"))

    def _record_hit(self, conn: sqlite3.Connection, req: HitRequest, hit_id: str) -> HitResult:
        if req.received_at - self._pruned_at >= PRUNE_INTERVAL:
            conn.execute(
                "DELETE FROM idempotency WHERE received_at <= ?", (req.received_at - IDEMPOTENCY_WINDOW,)
            )
            self._pruned_at = req.received_at
        return _record_hit(conn, req, hit_id, self._clock())


def _run_job(conn: sqlite3.Connection, job: _Job) -> tuple[Any, BaseException | None]:
    """Run one job in its own savepoint. sqlite3 errors of the savepoint itself fail the batch."""
    conn.execute("SAVEPOINT job")
    try:
        result = job.fn(conn)
    except Exception as e:
        conn.execute("ROLLBACK TO job")
        conn.execute("RELEASE job")
        if isinstance(e, sqlite3.Error):
            return None, _unavailable(e, "store operation failed")
        return None, e
    conn.execute("RELEASE job")
    return result, None


def _connect(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    # isolation_level=None: the sqlite3 module issues no implicit BEGIN; the writer thread does.
    conn = sqlite3.connect(path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000)
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


def _record_hit(conn: sqlite3.Connection, req: HitRequest, hit_id: str, now: float) -> HitResult:
    """Decide the hit's outcome (rules 1-5 of the brief, in order) and record it."""
    at = req.received_at
    if req.idempotency_key is not None:
        row = conn.execute(
            "SELECT hit_id FROM idempotency WHERE receiver = ? AND key = ? AND received_at > ?",
            (req.receiver, req.idempotency_key, at - IDEMPOTENCY_WINDOW),
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
    conn.execute(
        "INSERT INTO last_hits (receiver, hit_id) VALUES (?, ?)"
        " ON CONFLICT (receiver) DO UPDATE SET hit_id = excluded.hit_id",
        (req.receiver, hit_id),
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
    for step in steps:
        cur = conn.execute(
            "UPDATE intents SET state = 'folded', before = ?, after = ?, clamped = ?, updated_at = ?"
            " WHERE seq = ? AND hit_id = ? AND target_id = ? AND state = 'pending'",
            (step.before, step.after, int(step.clamped), now, step.seq, step.hit_id, target_id),
        )
        if cur.rowcount != 1:
            # Raising rolls back this job's savepoint: nothing of the fold is recorded.
            raise StoreError(f"intent {step.seq} ({step.hit_id}) of {target_id} is not pending")
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
        " FROM last_hits l JOIN hits h ON h.id = l.hit_id LEFT JOIN intents i ON i.hit_id = h.id"
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
    "namespace, name, uid, jti, kid, token, driver, target_id, token_generation, issued_at"
)


def _token(row: Any) -> StoredToken:
    namespace, name, uid, jti, kid, token, driver, target_id, generation, issued_at = row
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
    )


def _get_token(conn: sqlite3.Connection, namespace: str, name: str) -> StoredToken | None:
    row = conn.execute(
        f"SELECT {_TOKEN_COLUMNS} FROM tokens WHERE namespace = ? AND name = ?", (namespace, name)
    ).fetchone()
    return None if row is None else _token(row)


def _put_token(conn: sqlite3.Connection, t: StoredToken) -> None:
    conn.execute(
        f"INSERT OR REPLACE INTO tokens ({_TOKEN_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
