"""The CLI's read-only view of a store file: ``status`` and ``trigger-url`` read through it.

A separate short-lived connection opened ``mode=ro``: WAL mode lets it read a consistent snapshot
while the service keeps writing, and read-only guarantees the CLI never takes the write lock from
the running service. Everything is read in one read transaction, so the parts agree. A file of
another schema version is refused rather than misread.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

from controller.model import Problem
from controller.store import sqlite_queries as queries
from controller.store.base import StoredToken, StoreStatus, StoreUnavailable
from controller.store.sqlite_schema import BUSY_TIMEOUT_MS, SCHEMA_VERSION


@dataclass(frozen=True)
class Snapshot:
    """Everything ``status`` and ``trigger-url`` show, read in one read transaction."""

    tokens: list[StoredToken]
    status: StoreStatus  # targets, pending counts, hits and history, as the running service reads them
    problems: list[Problem]
    meta: dict[str, str]


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
            tokens=queries.list_tokens(conn),
            status=queries.read_status(conn),
            problems=queries.list_problems(conn),
            meta=queries.meta(conn),
        )
        conn.execute("COMMIT")
        return snapshot
    except sqlite3.Error as e:
        raise StoreUnavailable(f"cannot read {path}: {e}") from e
    finally:
        conn.close()
