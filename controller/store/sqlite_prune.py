"""Retention in small slices, riding on hit batches.

Every ``PRUNE_INTERVAL`` seconds of ``received_at`` a hit prunes one slice: it examines at most
``PRUNE_LIMIT`` of the oldest expired hits (deleting those that may go) and deletes at most
``PRUNE_LIMIT`` expired idempotency keys and as many expired target history rows, about ten
milliseconds of work. A slice that used its
whole limit means more is due, so the next batch prunes again: the deletion rate follows the ingest
rate instead of a fixed number per minute. A cursor keeps the slices from re-reading hits that must
stay (a pending intent, a receiver's latest hit); the scan starts again from the oldest hit every
``PRUNE_SWEEP`` seconds to find those that may go now.

Pruning inside a hit's batch rather than on a timer costs no transaction of its own and can never
race the writer; an idle store has nothing new to prune.
"""

from __future__ import annotations

import sqlite3
from typing import Final

from controller.store.ids import HitIds

PRUNE_INTERVAL: Final = 1.0  # received_at seconds between two prune slices while not behind
PRUNE_LIMIT: Final = 512  # hits examined (and idempotency keys deleted) per slice: ~10 ms of the loop
PRUNE_SWEEP: Final = 60.0  # received_at seconds between two scans from the oldest hit
DEFAULT_RETENTION: Final = 7 * 86400.0


class Pruner:
    """The slicing state of one store. Runs inside a hit's job, on the loop."""

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
        """Forget expired idempotency keys, hits older than ``retention`` — except a hit whose
        intent is still pending, and each receiver's latest hit (``status`` shows it) — and target
        history rows older than ``retention`` except each target's newest (its current state, which
        the next change is compared with). Hit ids start with their time, so the age test runs on
        the primary key.

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
            " AND NOT EXISTS (SELECT 1 FROM intents i WHERE i.seq = h.n AND i.state = 'pending')"
            " AND h.n < (SELECT MAX(l.n) FROM hits l WHERE l.receiver = h.receiver))",
            (self.cursor, last),
        )
        self.cursor = last
        points = conn.execute(
            "DELETE FROM target_history WHERE id IN (SELECT h.id FROM target_history h WHERE h.at <= ?"
            " AND h.id < (SELECT MAX(l.id) FROM target_history l WHERE l.target_id = h.target_id) LIMIT ?)",
            (at - self.retention, self.limit),
        ).rowcount
        self.behind = row is not None or keys >= self.limit or points >= self.limit
