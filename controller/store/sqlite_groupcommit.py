"""Group commit for one SQLite connection: statements on the event loop, COMMIT on a thread.

Why it is shaped this way:

- **Statements on the loop, COMMIT on a thread.** A hit's statements take microseconds; the COMMIT
  with ``synchronous=FULL`` is an fsync and takes far longer. So every operation is a *job* (a
  plain function of the connection) put on a queue; the queued jobs run in one transaction on the
  loop and only the COMMIT goes to a single committer thread, which releases the GIL while the disk
  works. The COMMIT's completion answers the batch and starts the next one in the same loop wake-up
  (a chain of callbacks, no task in between). An earlier design ran every statement on a writer
  thread: under load each statement then waited for the GIL the busy loop held, and the store, not
  the disk, set the pace.
- **Group commit.** Jobs queued while a COMMIT is on its way to the disk form the next batch (up to
  ``max_batch``): one fsync for all of them. Batches run without savepoints (the common case); if a
  job raises, the batch is rolled back and re-run with a SAVEPOINT per job, so the failing job rolls
  back alone and gets its own exception. Futures are resolved only after the COMMIT returned: the
  listener answers 200 on ``record_hit``'s return, so a result must never reach it before the hit is
  durable. If the COMMIT fails, every job of the batch fails. All transactions are serialised, so a
  job that reads and then writes can never interleave with another.
- **A batch waits a moment to fill.** When fewer than ``FILL`` jobs wait as a COMMIT returns, the
  next batch starts ``FILL_WAIT`` later rather than at once: under load more hits arrive in that half
  millisecond, and one fuller batch costs less CPU per hit than two thin ones. A job arriving at an
  idle engine starts its batch at once, so a lone hit never waits.
- **Jobs submitted ``alone`` never share a batch with hits** (the reconciler's reads and writes,
  status reads): they touch many rows, and the hits must not wait on the loop for them in their
  batch. Consecutive ``alone`` jobs share one, up to ``MAX_ALONE`` of them, so many busy targets do
  not pay a COMMIT per fold. Batches keep the queue's order, so ``alone`` jobs delay the hits behind
  them by one COMMIT at most.
- **State kept beside the file follows the transaction.** Jobs may change memory that mirrors the
  tables (the store's rate-limit buckets); ``on_rollback`` undoes what the batch changed whenever its
  transaction is rolled back (before a re-run with savepoints, or when it failed), ``on_commit``
  keeps it once durable.
- **Acknowledged means durable in the live file.** After every COMMIT the committer thread checks
  that the database file and its ``-wal`` are still the files it opened (same ``st_dev``/``st_ino``);
  if one was deleted or replaced, the COMMIT went to a file nobody will ever open again, so the
  batch fails and the engine stays *lost* until restart (reopening would start an empty store and
  lose every token). A write the disk refuses (full, I/O error, read-only) makes it *unable to
  write* until a later write succeeds: jobs keep being tried, and a probe job runs every
  ``probe_interval`` seconds meanwhile, so it recovers even when no hit comes. Either state is
  ``unavailable_reason``, so ``/readyz`` tells the truth, and is logged once when it begins.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TypeVar

from controller.store.base import StoreError, StoreUnavailable

_T = TypeVar("_T")

PROBE_INTERVAL: Final = 1.0  # seconds between write probes while the store cannot write
FILL: Final = 24  # jobs waiting as a COMMIT returns, below which the next batch waits FILL_WAIT to fill up
FILL_WAIT: Final = 0.0005  # seconds
MAX_ALONE: Final = 64  # ``alone`` jobs per batch (8 cost 10-20% more CPU per hit at 100 busy targets)
# Errors of the file system rather than of a statement: the store cannot write until one succeeds.
_WRITE_ERRORS: Final = frozenset(
    {sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_READONLY, sqlite3.SQLITE_CANTOPEN}
)

Job = Callable[[sqlite3.Connection], Any]


@dataclass(frozen=True)
class _Job:
    fn: Job
    future: asyncio.Future[Any]
    alone: bool = False  # run in a batch of its own


def unavailable(error: BaseException, what: str) -> StoreUnavailable:
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


class GroupCommit:
    """Runs jobs on one connection to ``path`` in batches, one COMMIT each. ``commits`` counts them."""

    def __init__(
        self,
        path: Path,
        *,
        connect: Callable[[Path], sqlite3.Connection],
        commit: Callable[[sqlite3.Connection], None],
        probe: Job,
        max_batch: int,
        probe_interval: float,
        logger: logging.Logger,
        on_commit: Callable[[], None] = lambda: None,
        on_rollback: Callable[[], None] = lambda: None,
        fill: int = FILL,
        fill_wait: float = FILL_WAIT,
    ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self.path = path
        self.commits = 0
        self.batches = 0  # batches started
        self._connect = connect
        self._commit = commit  # on the committer thread: the fsync happens there
        self._probe_job = probe
        self._max_batch = max_batch
        self._fill = min(fill, max_batch)
        self._fill_wait = fill_wait
        self._filling: asyncio.TimerHandle | None = None  # the next batch waits to fill up
        self._probe_interval = probe_interval
        self._logger = logger
        self._on_commit = on_commit
        self._on_rollback = on_rollback
        self._conn: sqlite3.Connection | None = None
        self._committer: ThreadPoolExecutor | None = None
        self._queue: list[_Job] = []
        self._busy = False  # a batch is being run or committed
        self._idle = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._accepting = False
        self._files: _FileIds | None = None
        self._lost: str | None = None  # a file was deleted or replaced: sticky until restart
        self._cannot_write: str | None = None  # the last write failed: until one succeeds
        self._probe: asyncio.Task[None] | None = None

    # -- lifecycle

    async def open(self) -> None:
        """Connect on the committer thread. Raises ``StoreUnavailable``."""
        if self._conn is not None:
            return
        committer = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"sqlite-commit:{self.path.name}")
        try:
            self._conn, self._files = await asyncio.get_running_loop().run_in_executor(
                committer, self._open_files
            )
        except (sqlite3.Error, OSError) as e:
            committer.shutdown(wait=False)
            raise unavailable(e, f"cannot open {self.path}") from e
        self._committer = committer
        self._accepting = True

    def _open_files(self) -> tuple[sqlite3.Connection, _FileIds]:
        conn = self._connect(self.path)
        return conn, _FileIds.of(self.path)  # after connecting: the WAL exists once a migration committed

    async def close(self) -> bool:
        """Answer what was accepted, then close; False if it was not open."""
        if self._conn is None or self._committer is None:
            return False
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
        return True

    def accepting(self) -> bool:
        return self._accepting

    def unavailable_reason(self) -> str | None:
        """Not open, lost its file (checked here too, so an idle store tells), or cannot write."""
        if not self._accepting:
            return f"the store {self.path} is not open"
        if self._lost is None and self._files is not None and (lost := self._files.lost()) is not None:
            self._lose(lost)
        return self._lost or self._cannot_write

    # -- jobs

    async def submit(self, fn: Callable[[sqlite3.Connection], _T], *, alone: bool = False) -> _T:
        """Run ``fn`` in the next batch (one without hits if ``alone``); its result once it is durable."""
        if not self._accepting:
            raise StoreUnavailable(f"store {self.path} is not open")
        if self._lost is not None:
            raise StoreUnavailable(self._lost)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[_T] = loop.create_future()
        self._queue.append(_Job(fn, future, alone))
        if self._filling is not None and len(self._queue) >= self._fill:
            self._filling.cancel()  # full enough: no need to wait any longer
            self._filling = None
            loop.call_soon(self._start_batch)
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
        self._filling = None
        if self._lost is not None:  # nothing more can be made durable: answer what waits
            for job in self._queue:
                _resolve(job.future, None, StoreUnavailable(self._lost))
            self._queue = []
        if not self._queue:
            self._busy = False
            self._idle.set()
            return
        alone = self._queue[0].alone
        size = 0
        for job in self._queue[: MAX_ALONE if alone else self._max_batch]:
            if job.alone != alone:
                break  # a batch is all hits or all ``alone`` jobs
            size += 1
        batch, self._queue = self._queue[:size], self._queue[size:]
        conn, committer, loop, files = self._conn, self._committer, self._loop, self._files
        assert conn is not None and committer is not None and loop is not None and files is not None
        self.batches += 1
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
                self._on_rollback()
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
            self._on_rollback()
            self._lose(lost)
            for job in batch:
                _resolve(job.future, None, StoreUnavailable(lost))
        elif error is not None:
            self._on_rollback()
            if not self._write_failed(error):
                self._logger.error("store transaction of %d jobs failed: %s", len(batch), error)
            for job in batch:
                _resolve(job.future, None, unavailable(error, "transaction failed"))
        else:
            self.commits += 1
            self._on_commit()
            for job, (result, job_error) in zip(batch, outcomes, strict=True):
                _resolve(job.future, result, job_error)
            failed = [e.__cause__ for _, e in outcomes if e is not None and _is_write_error(e.__cause__)]
            if failed:
                self._write_failed(failed[0])
            elif wrote and self._cannot_write is not None:
                self._logger.warning("store %s can write again", self.path)
                self._cannot_write = None
        if self._loop is not None and 0 < len(self._queue) < self._fill:
            self._filling = self._loop.call_later(self._fill_wait, self._start_batch)
        else:
            self._start_batch()

    def _lose(self, reason: str) -> None:
        if self._lost is None:
            self._logger.error("store lost: %s; every hit is answered 503 until then", reason)
            self._lost = reason

    def _write_failed(self, error: BaseException | None) -> bool:
        """Enter (or stay in) the state of a store that cannot write, if ``error`` says so."""
        if not _is_write_error(error):
            return False
        if self._cannot_write is None:
            self._logger.error(
                "store %s cannot write: %s; answering 503 until a write succeeds", self.path, error
            )
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
                await self.submit(self._probe_job)


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
            return None, unavailable(e, "store operation failed")
        return None, e
    conn.execute("RELEASE job")
    return result, None
