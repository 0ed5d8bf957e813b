"""Does retention keep up? A backlog of expired hits drained while hits arrive as fast as they can.

``python -m bench.prune [--backlog 200000] [--concurrency 64]``

The store prunes in slices that ride on hit batches (``controller.store.sqlite_prune``), so the question
is whether the deletion rate stays above the highest ingest rate: if it does, a store past its
retention window never grows, whatever the load. The backlog is written straight into a migrated
store file (each expired hit with a folded intent and an idempotency key, as Alertmanager hits
are, which makes deleting one dearer); then the real ``SqliteStore`` records new hits with
``--concurrency`` of them in flight (group commit, as under the listener) until every expired hit
is gone. A read-only connection counts what is left, as ``status`` would read the store.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import tempfile
import time
from pathlib import Path

from controller.store.base import HitRequest
from controller.store.ids import HitIds
from controller.store.sqlite import SqliteStore
from controller.store.sqlite_schema import DB_NAME

T0 = 1_800_000_000.0
RETENTION = 60.0
OLD, NEW = "default/old", "default/new"


def write_backlog(path: Path, count: int) -> None:
    """``count`` hits from ``T0`` on, a millisecond apart, each with a folded intent and a key."""
    ids = HitIds()
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("BEGIN")
        for i in range(count):
            at = T0 + i / 1000
            hit_id = ids.next(at)
            conn.execute(
                "INSERT INTO hits (id, receiver, outcome, received_at) VALUES (?, ?, 'accepted', ?)",
                (hit_id, OLD, at),
            )
            conn.execute(
                "INSERT INTO intents (seq, target_id, intent, state)"
                " VALUES (last_insert_rowid(), 'scaleService:1a5/1s7', '{}', 'folded')"
            )
            conn.execute(
                "INSERT INTO idempotency (receiver, key, hit_id, received_at) VALUES (?, ?, ?, ?)",
                (OLD, f"key-{i}", hit_id, at),
            )
        conn.execute("COMMIT")
    finally:
        conn.close()


def left(path: Path) -> int:
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        return int(conn.execute("SELECT COUNT(*) FROM hits WHERE receiver = ?", (OLD,)).fetchone()[0])
    finally:
        conn.close()


def new_hit(at: float) -> HitRequest:
    return HitRequest(
        receiver=NEW,
        receiver_uid="uid",
        target_id="scaleService:1a5/1s8",
        disposition="ignored",
        reason=None,
        intent=None,
        idempotency_key=None,
        dedupe_key=None,
        dedupe_window=60.0,
        cooldown=0.0,
        received_at=at,
    )


async def drain(path: Path, backlog: int, concurrency: int) -> None:
    store = SqliteStore(path, retention=RETENTION)
    await store.open()
    now = T0 + backlog / 1000 + 2 * RETENTION  # every backlog hit has expired
    recorded = 0
    done = asyncio.Event()

    async def sender() -> None:
        nonlocal recorded
        while not done.is_set():
            await store.record_hit(new_hit(now + recorded / 1e6))
            recorded += 1

    started = time.perf_counter()
    senders = [asyncio.create_task(sender()) for _ in range(concurrency)]
    remaining = backlog
    while remaining > 1:  # a receiver's latest hit is always kept
        await asyncio.sleep(0.5)
        remaining = await asyncio.to_thread(left, path)
        elapsed = time.perf_counter() - started
        print(f"  {elapsed:5.1f}s  expired hits left {remaining:>8,}  new hits recorded {recorded:>8,}")
    elapsed = time.perf_counter() - started
    done.set()
    await asyncio.gather(*senders)
    await store.close()
    pruned, ingest = (backlog - 1) / elapsed, recorded / elapsed
    print(
        f"drained {backlog - 1:,} expired hits in {elapsed:.1f}s: {pruned:,.0f} hits/s pruned"
        f" while recording {ingest:,.0f} hits/s ({concurrency} in flight)"
    )
    verdict = "keeps up" if pruned > ingest else "FALLS BEHIND"
    print(f"verdict: retention {verdict} (pruned / recorded = {pruned / ingest:.1f})")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backlog", type=int, default=200_000, help="expired hits to drain")
    parser.add_argument("--concurrency", type=int, default=64, help="hits in flight while draining")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="webhook-prune-") as tmp:
        path = Path(tmp) / DB_NAME

        async def migrate() -> None:
            store = SqliteStore(path, retention=RETENTION)
            await store.open()
            await store.close()

        asyncio.run(migrate())
        started = time.perf_counter()
        write_backlog(path, args.backlog)
        print(f"backlog of {args.backlog:,} expired hits written in {time.perf_counter() - started:.1f}s")
        asyncio.run(drain(path, args.backlog, args.concurrency))


if __name__ == "__main__":
    main()
