"""The SQLite store's file: its schema, the migrations that build it, and how a connection is opened.

Migrations are numbered scripts kept in order forever: ``MIGRATIONS[n]`` upgrades a file at
``user_version`` n to n + 1, so a file written by any earlier version opens, and a file written by
a later version is refused rather than misread. They run in one ``BEGIN IMMEDIATE`` transaction, so
a crash mid-way leaves the file at its old version.

Every writer connection is WAL with ``synchronous=FULL``: a COMMIT that returned survives a power
cut, which is what lets the listener answer 200 on it. The file is created 0600 before SQLite opens
it, because SQLite gives the ``-wal`` and ``-shm`` files the database file's mode.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
from pathlib import Path
from typing import Final

logger = logging.getLogger(__name__)

DB_NAME: Final = "webhook.db"  # the store's file inside a state folder
BUSY_TIMEOUT_MS: Final = 5000

# One script per schema version: MIGRATIONS[n] upgrades a file at user_version n to n + 1.
MIGRATIONS: Final[tuple[str, ...]] = (
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
    # 4: each target's state over time (its chart on the status page): a row per visible change,
    # written with the change and pruned with the hits. A target never confirmed is not converged.
    """
    CREATE TABLE target_history (
        id INTEGER PRIMARY KEY,
        target_id TEXT NOT NULL,
        at REAL NOT NULL,
        desired INTEGER,
        observed INTEGER,
        converged INTEGER NOT NULL,
        error TEXT
    );
    CREATE INDEX target_history_target ON target_history (target_id, id);
    CREATE INDEX target_history_age ON target_history (at);
    UPDATE targets SET converged = 0 WHERE desired IS NULL
    """,
    # 5: one compact row per hit (about 510 -> 310 bytes a hit). Every hit gets a small integer ``n``
    # (its rowid, in arrival order), and a hit's intent is keyed by it: ``intents.seq`` is its hit's
    # ``n``, so an intent carries neither the hit's 32-character id nor its receiver (both are the
    # hit's), and needs no index of its own to be found from its hit. No AUTOINCREMENT: a seq is a
    # hit's ``n``, and the sequence table's write per hit goes. A hit's ``target_id`` is NULL when
    # its intent holds it; ``receiver_uid`` and the intents' ``updated_at`` were never read.
    # ``hits_latest`` indexes ``n``, a third of ``id``'s size. The tables are rebuilt, with foreign
    # keys off (``connect``) so that dropping the old ones cascades nowhere.
    """
    CREATE TABLE hits_v5 (
        n INTEGER PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        receiver TEXT NOT NULL,
        target_id TEXT,
        outcome TEXT NOT NULL,
        reason TEXT,
        dedupe_key TEXT,
        received_at REAL NOT NULL
    );
    INSERT INTO hits_v5 (id, receiver, target_id, outcome, reason, dedupe_key, received_at)
        SELECT id, receiver, target_id, outcome, reason, dedupe_key, received_at FROM hits ORDER BY id;
    CREATE TABLE intents_v5 (
        seq INTEGER PRIMARY KEY REFERENCES hits (n) ON DELETE CASCADE,
        target_id TEXT NOT NULL,
        intent TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('pending', 'folded', 'failed')),
        reason TEXT,
        before INTEGER,
        after INTEGER,
        clamped INTEGER
    );
    INSERT INTO intents_v5 (seq, target_id, intent, state, reason, before, after, clamped)
        SELECT h.n, i.target_id, i.intent, i.state, i.reason, i.before, i.after, i.clamped
        FROM intents i JOIN hits_v5 h ON h.id = i.hit_id ORDER BY i.seq;
    UPDATE hits_v5 SET target_id = NULL WHERE n IN (SELECT seq FROM intents_v5);
    DROP TABLE intents;
    DROP TABLE hits;
    ALTER TABLE hits_v5 RENAME TO hits;
    ALTER TABLE intents_v5 RENAME TO intents;
    DELETE FROM sqlite_sequence WHERE name = 'intents';
    CREATE INDEX hits_dedupe ON hits (receiver, dedupe_key, received_at)
        WHERE outcome = 'accepted' AND dedupe_key IS NOT NULL;
    CREATE INDEX hits_accepted ON hits (receiver, received_at) WHERE outcome = 'accepted';
    CREATE INDEX hits_latest ON hits (receiver, n);
    CREATE INDEX intents_pending ON intents (target_id, seq) WHERE state = 'pending'
    """,
)
SCHEMA_VERSION: Final = len(MIGRATIONS)


def connect(path: Path) -> sqlite3.Connection:
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
        # Foreign keys on only after migrating: a migration that rebuilds a table drops the old one,
        # which with them on would delete the rows referring to it (and can't be switched within it).
        migrate(conn)
        conn.execute("PRAGMA foreign_keys = ON")
    except BaseException:
        conn.close()
        raise
    return conn


def migrate(conn: sqlite3.Connection) -> None:
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise sqlite3.DatabaseError(
                f"schema version {version} is newer than this program's {SCHEMA_VERSION}"
            )
        for script_version in range(version, SCHEMA_VERSION):
            # executescript() would COMMIT first; run the statements one by one inside our transaction.
            for statement in MIGRATIONS[script_version].split(";"):
                if statement.strip():
                    conn.execute(statement)
            logger.info("store schema migrated to version %d", script_version + 1)
        if version < SCHEMA_VERSION and (broken := conn.execute("PRAGMA foreign_key_check").fetchone()):
            raise sqlite3.DatabaseError(f"a migration left a row of {broken[0]} without its {broken[2]} row")
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
