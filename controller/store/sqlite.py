"""The standalone store: one SQLite file, written through group commit by one process.

The store is assembled from modules that each do one job: the file's schema and migrations
(``sqlite_schema``), the batch engine that runs statements on the loop and the COMMIT on a thread
(``sqlite_groupcommit``), the SQL of each operation (``sqlite_queries``), retention
(``sqlite_prune``) and the CLI's read-only view (``sqlite_snapshot``). What stays here is the
``Store`` itself and what ties them together:

- **Outcome decided in the transaction.** ``record_hit`` asks the outcome rule
  (``controller.store.outcome``) with a history read inside the transaction that records the hit,
  and all transactions are serialised, so two concurrent hits can never both pass a check only one
  should pass.
- **The rate limit counts in memory.** One process owns the file, so each receiver's token bucket
  is kept in ``Buckets`` (``controller.store.rate_bucket``), two numbers and no query. A hit's job
  sets its receiver's bucket, and the batch puts the previous one back if it rolls back (the group
  commit's ``on_rollback``), so a refused or failed hit never takes a token.
- **Time windows compare ``received_at`` values**, never the wall clock, so they are exact to test.
  ``clock`` only stamps ``updated_at`` on targets and intents.
- Receivers are identified by their key ("namespace/name") for idempotency, dedupe, cooldown and the
  rate limit, the same key ``status`` shows.
- A hit's idempotency key goes with the hit (``ON DELETE CASCADE``): a retention under 24 h shortens
  the idempotency window to match, said at open.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from controller.model import Problem, RateLimit
from controller.settings import MIN_RETENTION
from controller.store import sqlite_queries as queries
from controller.store.base import (
    FoldStep,
    HitRateLimited,
    HitRequest,
    HitResult,
    PendingIntent,
    StoredToken,
    StoreStatus,
    TargetState,
)
from controller.store.ids import IDEMPOTENCY_WINDOW, HitIds
from controller.store.outcome import Duplicate, RateLimited, decide
from controller.store.rate_bucket import Bucket, Buckets
from controller.store.sqlite_groupcommit import PROBE_INTERVAL, GroupCommit
from controller.store.sqlite_prune import DEFAULT_RETENTION, PRUNE_LIMIT, Pruner
from controller.store.sqlite_schema import SCHEMA_VERSION, connect

logger = logging.getLogger(__name__)

_T = TypeVar("_T")


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
        if not MIN_RETENTION <= retention < float("inf"):
            raise ValueError(f"retention must be at least {MIN_RETENTION:g} s, and finite")
        self._engine = GroupCommit(
            path,
            connect=connect,
            commit=self._commit,
            probe=queries.probe_write,
            max_batch=max_batch,
            probe_interval=probe_interval,
            logger=logger,
            on_commit=self._keep_rate_counts,
            on_rollback=self._undo_rate_counts,
        )
        self._idempotency_window = min(IDEMPOTENCY_WINDOW, retention)
        # A slice examines more hits than a batch can add, so pruning a slice per batch keeps up with
        # any ingest rate.
        self._pruner = Pruner(
            retention=retention,
            idempotency_window=self._idempotency_window,
            limit=max(PRUNE_LIMIT, 2 * max_batch),
        )
        self.path = path
        self._clock = clock
        self._hit_ids = HitIds()
        self._rate = Buckets()
        # The buckets the batch in progress replaced, put back on rollback.
        self._rate_replaced: list[tuple[str, Bucket | None, RateLimit]] = []

    @property
    def commits(self) -> int:
        return self._engine.commits

    # -- lifecycle

    async def open(self) -> None:
        if self._engine.accepting():
            return
        await self._engine.open()
        logger.info("store open at %s (schema version %d)", self.path, SCHEMA_VERSION)
        if self._idempotency_window < IDEMPOTENCY_WINDOW:
            logger.warning(
                "hit retention is %gs, under 24 h: an Idempotency-Key is remembered for %gs only",
                self._pruner.retention,
                self._idempotency_window,
            )

    async def close(self) -> None:
        if await self._engine.close():
            logger.info("store at %s closed after %d commits", self.path, self.commits)

    def is_open(self) -> bool:
        return self._engine.accepting()

    def unavailable_reason(self) -> str | None:
        return self._engine.unavailable_reason()

    async def pragmas(self) -> dict[str, Any]:
        """The writer connection's durability settings, for the start-up log (and the tests)."""
        return await self._submit(queries.pragmas)

    # -- tokens

    async def get_token(self, namespace: str, name: str) -> StoredToken | None:
        return await self._submit(lambda c: queries.get_token(c, namespace, name))

    async def put_tokens(self, tokens: Sequence[StoredToken]) -> None:
        """Every token record in one transaction: one commit for the thousands a start may mint."""
        await self._submit(lambda c: queries.put_tokens(c, tokens))

    async def delete_token(self, namespace: str, name: str) -> None:
        await self._submit(lambda c: queries.delete_token(c, namespace, name))

    async def list_tokens(self) -> list[StoredToken]:
        return await self._submit(queries.list_tokens)

    # -- hits and intents

    async def record_hit(self, request: HitRequest) -> HitResult:
        """Raises ``HitRateLimited`` (the hit is not recorded) and ``StoreUnavailable``."""
        hit_id = self._hit_ids.next(request.received_at)
        result = await self._submit(lambda c: self._record_hit(c, request, hit_id))
        if isinstance(result, RateLimited):
            raise HitRateLimited(retry_after=result.retry_after)
        return result

    async def targets_with_work(self) -> list[str]:
        return await self._submit(queries.targets_with_work, alone=True)

    async def pending_intents(self, target_id: str) -> list[PendingIntent]:
        return await self._submit(lambda c: queries.pending_intents(c, target_id), alone=True)

    async def commit_fold(self, target_id: str, desired: int, steps: Sequence[FoldStep]) -> None:
        now = self._clock()
        await self._submit(lambda c: queries.commit_fold(c, target_id, desired, list(steps), now), alone=True)

    async def fail_intents(self, target_id: str, reason: str) -> int:
        now = self._clock()
        return await self._submit(lambda c: queries.fail_intents(c, target_id, reason, now), alone=True)

    async def get_target(self, target_id: str) -> TargetState | None:
        return await self._submit(lambda c: queries.get_target(c, target_id), alone=True)

    async def set_observed(
        self, target_id: str, observed: int | None, *, converged: bool, error: str | None
    ) -> None:
        now = self._clock()
        await self._submit(
            lambda c: queries.set_observed(c, target_id, observed, converged, error, now), alone=True
        )

    # -- status

    async def read_status(self) -> StoreStatus:
        return await self._submit(queries.read_status, alone=True)

    async def set_problems(self, problems: Sequence[Problem]) -> None:
        await self._submit(lambda c: queries.set_problems(c, list(problems)))

    async def list_problems(self) -> list[Problem]:
        return await self._submit(queries.list_problems, alone=True)

    async def set_meta(self, key: str, value: str) -> None:
        await self._submit(lambda c: queries.set_meta(c, key, value))

    async def get_meta(self, key: str) -> str | None:
        return await self._submit(lambda c: queries.get_meta(c, key))

    # -- the job of a hit, and the engine's hooks

    async def _submit(self, fn: Callable[[sqlite3.Connection], _T], *, alone: bool = False) -> _T:
        """``alone``: the reconciler's and the status's work, in batches apart from the hits'."""
        return await self._engine.submit(fn, alone=alone)

    def _commit(self, conn: sqlite3.Connection) -> None:
        """Runs on the committer thread: the fsync happens here, off the event loop."""
        conn.execute("COMMIT")

    def _record_hit(self, conn: sqlite3.Connection, req: HitRequest, hit_id: str) -> HitResult | RateLimited:
        at = req.received_at
        if self._pruner.due(at, self._engine.batches):
            self._pruner.prune(conn, at, self._engine.batches)
        decision = decide(
            queries.SqliteHistory(conn, self._rate), req, idempotency_window=self._idempotency_window
        )
        if isinstance(decision, Duplicate):
            return HitResult(hit_id=decision.hit_id, outcome="duplicate")
        if isinstance(decision, RateLimited):
            return decision  # raised outside the job: a refusal is an answer, not a failed job
        queries.insert_hit(conn, req, hit_id, decision.outcome, decision.reason)
        if decision.outcome == "accepted":
            queries.insert_intent(conn, req, hit_id)
        # Last: a job that raised never took a token.
        if decision.bucket is not None and req.rate_limit is not None:
            self._rate_replaced.append((req.receiver, self._rate.get(req.receiver), req.rate_limit))
            self._rate.put(req.receiver, decision.bucket, req.rate_limit)
        return HitResult(hit_id=hit_id, outcome=decision.outcome)

    def _keep_rate_counts(self) -> None:
        self._rate_replaced.clear()

    def _undo_rate_counts(self) -> None:
        for receiver, previous, limit in reversed(self._rate_replaced):
            self._rate.put(receiver, previous, limit)
        self._rate_replaced.clear()
