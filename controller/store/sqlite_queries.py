"""The SQL of each store operation: plain functions of a connection.

Each runs inside a transaction someone else opened: a group-commit batch of the service
(``controller.store.sqlite``), or the CLI's read-only snapshot (``controller.store.sqlite_snapshot``).
They neither BEGIN nor COMMIT, so a batch can run many of them under one fsync and roll any one of
them back alone. ``SqliteHistory`` answers the outcome rule (``controller.store.outcome``) from the
tables inside the transaction that then records the hit.

The indexes behind the hot queries (``controller.store.sqlite_schema``): ``idempotency``'s primary
key, ``hits_dedupe`` and ``hits_accepted`` for the rule; ``hits_latest`` so ``last_hits`` never
scans the hits; ``intents_pending`` for the reconciler. An intent's ``seq`` is its hit's ``n``
(schema version 5): that is how the two are joined, and pending intents fold in the hits' order.

Each change of a target (a fold, a confirmation, an error, a refusal) also writes a
``target_history`` row in the same transaction, but only when something a chart shows changed:
the reconciler's periodic resync confirming the same value writes nothing. Hits write none; they
are the chart's markers themselves. Retention prunes both (``controller.store.sqlite_prune``).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from typing import Any, Final, cast

from controller.model import Outcome, Problem
from controller.store.base import (
    RECENT_HITS,
    FoldStep,
    HitRecord,
    HitRequest,
    IntentState,
    PendingIntent,
    StoredToken,
    StoreError,
    StoreStatus,
    TargetPoint,
    TargetState,
)
from controller.store.rate_bucket import Bucket, Buckets

HISTORY_POINTS: Final = 500  # history rows ``read_status`` returns per target at most (the newest)


class SqliteHistory:
    """``HitHistory`` from the tables, plus the store's in-memory rate-limit buckets."""

    def __init__(self, conn: sqlite3.Connection, rate: Buckets) -> None:
        self._conn = conn
        self._rate = rate

    def idempotent_hit(self, receiver: str, key: str, since: float) -> str | None:
        row = self._conn.execute(
            "SELECT hit_id FROM idempotency WHERE receiver = ? AND key = ? AND received_at > ?",
            (receiver, key, since),
        ).fetchone()
        return None if row is None else str(row[0])

    def retried_hit(self, receiver: str, dedupe_key: str, since: float) -> str | None:
        row = self._conn.execute(
            "SELECT id FROM hits WHERE receiver = ? AND outcome = 'accepted' AND dedupe_key = ?"
            " AND received_at > ? ORDER BY received_at LIMIT 1",
            (receiver, dedupe_key, since),
        ).fetchone()
        return None if row is None else str(row[0])

    def last_accepted_at(self, receiver: str) -> float | None:
        row = self._conn.execute(
            "SELECT MAX(received_at) FROM hits WHERE receiver = ? AND outcome = 'accepted'", (receiver,)
        ).fetchone()
        return None if row[0] is None else float(row[0])

    def rate_bucket(self, receiver: str) -> Bucket | None:
        return self._rate.get(receiver)


def insert_intent(conn: sqlite3.Connection, req: HitRequest, hit_id: str) -> None:
    conn.execute(
        "INSERT INTO intents (seq, target_id, intent, state)"
        " VALUES ((SELECT n FROM hits WHERE id = ?), ?, ?, 'pending')",
        (hit_id, req.target_id, json.dumps(req.intent, sort_keys=True, separators=(",", ":"))),
    )


def probe_write(conn: sqlite3.Connection) -> None:
    """A page's worth of new rows, deleted in the same transaction: it needs room as a hit does."""
    conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('write_probe', hex(zeroblob(4096)))")
    conn.execute("DELETE FROM meta WHERE key = 'write_probe'")


def insert_hit(
    conn: sqlite3.Connection, req: HitRequest, hit_id: str, outcome: Outcome, reason: str | None
) -> None:
    """The hit, and its idempotency key (replacing one older than the window: the rule found none younger).

    An accepted hit's target is its intent's (``insert_intent``, next): the hit's row leaves it NULL."""
    conn.execute(
        "INSERT INTO hits (id, receiver, target_id, outcome, reason, dedupe_key, received_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        (
            hit_id,
            req.receiver,
            None if outcome == "accepted" else req.target_id,
            outcome,
            reason,
            req.dedupe_key,
            req.received_at,
        ),
    )
    if req.idempotency_key is not None:
        conn.execute(
            "INSERT INTO idempotency (receiver, key, hit_id, received_at) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (receiver, key) DO UPDATE SET"
            " hit_id = excluded.hit_id, received_at = excluded.received_at",
            (req.receiver, req.idempotency_key, hit_id, req.received_at),
        )


def targets_with_work(conn: sqlite3.Connection) -> list[str]:
    rows = conn.execute(
        "SELECT target_id FROM intents WHERE state = 'pending'"
        " UNION SELECT target_id FROM targets WHERE converged = 0 AND desired IS NOT NULL ORDER BY target_id"
    ).fetchall()
    return [str(r[0]) for r in rows]


def pending_intents(conn: sqlite3.Connection, target_id: str) -> list[PendingIntent]:
    rows = conn.execute(
        "SELECT i.seq, h.id, h.receiver, i.intent FROM intents i JOIN hits h ON h.n = i.seq"
        " WHERE i.target_id = ? AND i.state = 'pending' ORDER BY i.seq",
        (target_id,),
    ).fetchall()
    return [PendingIntent(seq=r[0], hit_id=r[1], receiver=r[2], intent=json.loads(r[3])) for r in rows]


def commit_fold(
    conn: sqlite3.Connection, target_id: str, desired: int, steps: list[FoldStep], now: float
) -> None:
    cur = conn.executemany(
        "UPDATE intents SET state = 'folded', before = ?, after = ?, clamped = ?"
        " WHERE seq = (SELECT n FROM hits WHERE n = ? AND id = ?) AND target_id = ? AND state = 'pending'",
        [(s.before, s.after, int(s.clamped), s.seq, s.hit_id, target_id) for s in steps],
    )
    if cur.rowcount != len(steps):
        # Raising rolls back this job (the group commit isolates it): nothing of the fold is recorded.
        raise StoreError(f"{len(steps) - cur.rowcount} of {len(steps)} steps of {target_id} are not pending")
    conn.execute(
        "INSERT INTO targets (target_id, desired, observed, converged, last_error, updated_at)"
        " VALUES (?, ?, NULL, 0, NULL, ?) ON CONFLICT (target_id) DO UPDATE SET"
        " desired = excluded.desired, converged = 0, updated_at = excluded.updated_at",
        (target_id, desired, now),
    )
    _note_history(conn, target_id)


def fail_intents(conn: sqlite3.Connection, target_id: str, reason: str, now: float) -> int:
    count = conn.execute(
        "UPDATE intents SET state = 'failed', reason = ? WHERE target_id = ? AND state = 'pending'",
        (reason, target_id),
    ).rowcount
    # The target refused: its desired value will never be applied, so it is withdrawn (nothing left
    # for the reconciler to confirm) and the target stays unconverged at its observed value.
    conn.execute(
        "INSERT INTO targets (target_id, desired, observed, converged, last_error, updated_at)"
        " VALUES (?, NULL, NULL, 0, ?, ?) ON CONFLICT (target_id) DO UPDATE SET desired = NULL,"
        " converged = 0, last_error = excluded.last_error, updated_at = excluded.updated_at",
        (target_id, reason, now),
    )
    _note_history(conn, target_id)
    return int(count)


def set_observed(
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
    _note_history(conn, target_id)


def _note_history(conn: sqlite3.Connection, target_id: str) -> None:
    """A history row with the target's state, unless its newest row already shows it: a resync that
    confirms the same value writes nothing."""
    conn.execute(
        "INSERT INTO target_history (target_id, at, desired, observed, converged, error)"
        " SELECT t.target_id, t.updated_at, t.desired, t.observed, t.converged, t.last_error"
        " FROM targets t WHERE t.target_id = ? AND NOT EXISTS (SELECT 1 FROM"
        " (SELECT desired, observed, converged, error FROM target_history"
        "  WHERE target_id = t.target_id ORDER BY id DESC LIMIT 1) h"
        " WHERE h.desired IS t.desired AND h.observed IS t.observed AND h.converged = t.converged"
        " AND h.error IS t.last_error)",
        (target_id,),
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


def get_target(conn: sqlite3.Connection, target_id: str) -> TargetState | None:
    row = conn.execute(f"SELECT {_TARGET_COLUMNS} FROM targets WHERE target_id = ?", (target_id,)).fetchone()
    return None if row is None else _target(row)


def list_targets(conn: sqlite3.Connection) -> list[TargetState]:
    return [_target(r) for r in conn.execute(f"SELECT {_TARGET_COLUMNS} FROM targets ORDER BY target_id")]


# A hit as status shows it: the hit, its intent's state and fold (the reason of a failed intent).
_HIT_COLUMNS: Final = (
    "h.id, h.receiver, h.outcome, h.received_at,"
    " CASE WHEN i.state = 'failed' THEN i.reason ELSE h.reason END,"
    " i.state, i.before, i.after, i.clamped, COALESCE(i.target_id, h.target_id)"
)


def _hit(row: Any) -> HitRecord:
    return HitRecord(
        hit_id=row[0],
        receiver=row[1],
        outcome=cast(Outcome, row[2]),
        received_at=float(row[3]),
        reason=row[4],
        intent_state=cast(IntentState | None, row[5]),
        before=row[6],
        after=row[7],
        clamped=None if row[8] is None else bool(row[8]),
        target_id=row[9],
    )


def last_hits(conn: sqlite3.Connection) -> dict[str, HitRecord]:
    rows = conn.execute(
        f"SELECT {_HIT_COLUMNS}"
        " FROM (SELECT receiver, MAX(n) AS n FROM hits GROUP BY receiver) l"
        " JOIN hits h ON h.n = l.n LEFT JOIN intents i ON i.seq = h.n"
        " ORDER BY h.receiver"
    ).fetchall()
    return {r[1]: _hit(r) for r in rows}


def recent_hits(conn: sqlite3.Connection, limit: int = RECENT_HITS) -> list[HitRecord]:
    """The newest hits of every receiver, newest first (hit ids grow with time)."""
    rows = conn.execute(
        f"SELECT {_HIT_COLUMNS} FROM hits h LEFT JOIN intents i ON i.seq = h.n ORDER BY h.id DESC LIMIT ?",
        (limit,),
    )
    return [_hit(r) for r in rows]


def history(conn: sqlite3.Connection, points: int = HISTORY_POINTS) -> dict[str, list[TargetPoint]]:
    """Each target's newest ``points`` history rows, oldest first: one indexed read per target, so a
    busy target's long history costs its ``points`` rows, not a scan."""
    result: dict[str, list[TargetPoint]] = {}
    for (target_id,) in conn.execute("SELECT target_id FROM targets ORDER BY target_id").fetchall():
        rows = conn.execute(
            "SELECT at, desired, observed, converged, error FROM target_history"
            " WHERE target_id = ? ORDER BY id DESC LIMIT ?",
            (target_id, points),
        ).fetchall()
        if rows:
            result[str(target_id)] = [
                TargetPoint(at=float(r[0]), desired=r[1], observed=r[2], converged=bool(r[3]), error=r[4])
                for r in reversed(rows)
            ]
    return result


def latest_intents(conn: sqlite3.Connection, target_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    """The newest accepted intent of each target, whatever became of it. Read backwards from the
    newest intent (seq is the rowid), so an active target costs one row; an index on the target would
    cost every hit a write."""
    result: dict[str, dict[str, Any]] = {}
    for target_id in target_ids:
        row = conn.execute(
            "SELECT intent FROM intents WHERE target_id = ? ORDER BY seq DESC LIMIT 1", (target_id,)
        ).fetchone()
        if row is not None:
            result[target_id] = json.loads(row[0])
    return result


def pending_counts(conn: sqlite3.Connection) -> dict[str, int]:
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


def get_token(conn: sqlite3.Connection, namespace: str, name: str) -> StoredToken | None:
    row = conn.execute(
        f"SELECT {_TOKEN_COLUMNS} FROM tokens WHERE namespace = ? AND name = ?", (namespace, name)
    ).fetchone()
    return None if row is None else _token(row)


def put_token(conn: sqlite3.Connection, t: StoredToken) -> None:
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


def list_tokens(conn: sqlite3.Connection) -> list[StoredToken]:
    return [_token(r) for r in conn.execute(f"SELECT {_TOKEN_COLUMNS} FROM tokens ORDER BY namespace, name")]


def set_problems(conn: sqlite3.Connection, problems: list[Problem]) -> None:
    conn.execute("DELETE FROM problems")
    conn.executemany(
        "INSERT INTO problems (file, document, path, message) VALUES (?, ?, ?, ?)",
        [(p.file, p.document, p.path, p.message) for p in problems],
    )


def list_problems(conn: sqlite3.Connection) -> list[Problem]:
    rows = conn.execute("SELECT path, message, file, document FROM problems ORDER BY id")
    return [Problem(path=r[0], message=r[1], file=r[2], document=r[3]) for r in rows]


def meta(conn: sqlite3.Connection) -> dict[str, str]:
    return {str(r[0]): str(r[1]) for r in conn.execute("SELECT key, value FROM meta ORDER BY key")}


def delete_token(conn: sqlite3.Connection, namespace: str, name: str) -> None:
    conn.execute("DELETE FROM tokens WHERE namespace = ? AND name = ?", (namespace, name))


def set_meta(conn: sqlite3.Connection, key: str, value: str) -> None:
    conn.execute(
        "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (key, value),
    )


def get_meta(conn: sqlite3.Connection, key: str) -> str | None:
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return None if row is None else str(row[0])


def pragmas(conn: sqlite3.Connection) -> dict[str, Any]:
    """The connection's durability settings."""
    names = ("journal_mode", "synchronous", "foreign_keys", "busy_timeout")
    return {n: conn.execute(f"PRAGMA {n}").fetchone()[0] for n in names}


def read_status(conn: sqlite3.Connection) -> StoreStatus:
    """Everything the status views show, read by one connection (the caller holds one transaction)."""
    targets, pending = list_targets(conn), pending_counts(conn)
    return StoreStatus(
        targets=targets,
        pending=pending,
        last_hits=last_hits(conn),
        recent_hits=recent_hits(conn),
        history=history(conn),
        latest_intents=latest_intents(conn, sorted({t.target_id for t in targets} | set(pending))),
    )


def put_tokens(conn: sqlite3.Connection, tokens: Iterable[StoredToken]) -> None:
    for token in tokens:
        put_token(conn, token)
