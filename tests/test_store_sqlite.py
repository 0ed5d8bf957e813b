"""The SQLite store: what only it does — group commit, pruning, durability, tokens, the CLI's snapshot.

What every store does (hit outcomes, intents, targets) is in ``test_store_conformance``.

Time windows are driven by ``HitRequest.received_at`` values, never by sleeping. Tests about batching
hold the writer thread inside a transaction with a gate job, so which jobs share a commit is certain.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import sqlite3
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from controller.cli import build_parser, settings_from
from controller.model import Problem, RateLimit
from controller.settings import MIN_RETENTION
from controller.store import sqlite_queries as queries
from controller.store.base import (
    FoldStep,
    HitRateLimited,
    HitResult,
    StoredToken,
    StoreError,
    StoreUnavailable,
)
from controller.store.sqlite import SqliteStore
from controller.store.sqlite_prune import PRUNE_LIMIT, PRUNE_SWEEP
from controller.store.sqlite_schema import MIGRATIONS
from controller.store.sqlite_snapshot import read_snapshot
from tests.test_store_conformance import DAY, T0, TARGET, hit, pending_hit_ids
from tests.toolbox import FakeClock

ONE_PER_MINUTE = RateLimit(requests=1, per_seconds=60.0)


def token(name: str = "up", jti: str = "j1") -> StoredToken:
    return StoredToken(
        namespace="default",
        name=name,
        uid="uid-1",
        jti=jti,
        kid="k1",
        token="eyJ.secret",
        driver="scaleService",
        target_id=TARGET,
        token_generation="1",
        issued_at=T0,
    )


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "webhook.db"


@pytest.fixture
async def store(db_path: Path) -> AsyncIterator[GatedStore]:
    s = GatedStore(db_path, clock=lambda: T0)
    await s.open()
    yield s
    await s.close()


class Gate:
    """Holds one COMMIT on the committer thread until released; jobs submitted meanwhile queue up."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()


class GatedStore(SqliteStore):
    """The real store, whose next COMMIT a test can hold (``hold_writer``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.gate: Gate | None = None

    def _commit(self, conn: sqlite3.Connection) -> None:
        gate, self.gate = self.gate, None
        if gate is not None:
            gate.entered.set()
            gate.release.wait(10)
        super()._commit(conn)


async def hold_writer(store: GatedStore) -> tuple[Gate, asyncio.Task[None]]:
    """Start a transaction and hold its COMMIT: everything submitted now waits for the next batch."""
    gate = Gate()
    store.gate = gate
    held = asyncio.create_task(store._submit(lambda c: None))
    assert await asyncio.to_thread(gate.entered.wait, 10)
    return gate, held


async def submitted(*coros: Any) -> list[asyncio.Task[Any]]:
    """Start the coroutines; after one yield each has put its job on the writer's queue."""
    tasks = [asyncio.create_task(c) for c in coros]
    await asyncio.sleep(0)
    return tasks


# -- idempotency keys on disk


async def test_idempotency_survives_close_and_reopen(db_path: Path) -> None:
    first_store = SqliteStore(db_path)
    await first_store.open()
    first = await first_store.record_hit(hit(idempotency_key="k"))
    await first_store.close()
    reopened = SqliteStore(db_path)
    await reopened.open()
    again = await reopened.record_hit(hit(at=T0 + 60, idempotency_key="k"))
    await reopened.close()
    assert (again.outcome, again.hit_id) == ("duplicate", first.hit_id)


async def test_expired_idempotency_keys_are_pruned(store: SqliteStore, db_path: Path) -> None:
    await store.record_hit(hit(idempotency_key="old"))
    await store.record_hit(hit(at=T0 + DAY + 3600, idempotency_key="new"))
    conn = sqlite3.connect(f"{db_path.as_uri()}?mode=ro", uri=True)
    keys = [r[0] for r in conn.execute("SELECT key FROM idempotency")]
    conn.close()
    assert keys == ["new"]


def hit_ids(db_path: Path) -> set[str]:
    conn = sqlite3.connect(f"{db_path.as_uri()}?mode=ro", uri=True)
    ids = {r[0] for r in conn.execute("SELECT id FROM hits")}
    conn.close()
    return ids


async def test_hits_older_than_the_retention_are_pruned(store: SqliteStore, db_path: Path) -> None:
    old = await store.record_hit(hit(disposition="ignored"))
    latest_of_up = await store.record_hit(hit(at=T0 + 1, disposition="ignored"))
    other = await store.record_hit(hit(at=T0 + 2, receiver="default/down", disposition="ignored"))
    later = await store.record_hit(hit(at=T0 + 8 * DAY, receiver="default/third", disposition="ignored"))
    assert hit_ids(db_path) == {latest_of_up.hit_id, other.hit_id, later.hit_id}
    assert old.hit_id not in hit_ids(db_path)


async def test_a_pending_intent_keeps_its_old_hit(store: SqliteStore, db_path: Path) -> None:
    pending = await store.record_hit(hit())
    await store.record_hit(hit(at=T0 + 1))
    await store.record_hit(hit(at=T0 + 8 * DAY, receiver="default/third", disposition="ignored"))
    assert pending.hit_id in hit_ids(db_path)
    assert len(await store.pending_intents(TARGET)) == 2


async def test_history_older_than_the_retention_is_pruned_but_each_targets_newest_point_stays(
    db_path: Path,
) -> None:
    clock = FakeClock(T0)
    store = SqliteStore(db_path, clock=clock, retention=MIN_RETENTION)
    await store.open()
    await store.commit_fold(TARGET, 3, [])
    await store.set_observed(TARGET, 3, converged=True, error=None)
    await store.commit_fold("t:quiet", 1, [])
    clock.advance(2 * MIN_RETENTION)
    await store.commit_fold(TARGET, 4, [])
    await store.record_hit(hit(at=clock.now, disposition="ignored"))  # a hit's batch prunes a slice
    history = (await store.read_status()).history
    await store.close()
    assert {target: [(p.at, p.desired) for p in points] for target, points in history.items()} == {
        TARGET: [(clock.now, 4)],
        "t:quiet": [(T0, 1)],
    }


async def test_status_reads_each_targets_newest_history_points_only(
    store: SqliteStore, db_path: Path
) -> None:
    for desired in range(1, 6):
        await store.commit_fold(TARGET, desired, [])
    await store.commit_fold("t:other", 9, [])
    conn = sqlite3.connect(f"{db_path.as_uri()}?mode=ro", uri=True)
    history = queries.history(conn, points=2)
    conn.close()
    assert {target: [p.desired for p in points] for target, points in history.items()} == {
        TARGET: [4, 5],
        "t:other": [9],
    }


async def test_a_target_never_folded_is_no_longer_converged_once_migrated(db_path: Path) -> None:
    """Files written before version 4 said a target that failed before its first fold was converged."""
    db_path.parent.mkdir(parents=True)
    conn = sqlite3.connect(db_path, isolation_level=None)
    for script in MIGRATIONS[:3]:
        for statement in script.split(";"):
            conn.execute(statement)
    conn.execute(
        "INSERT INTO targets VALUES ('t:refused', NULL, NULL, 1, 'gone', 0), ('t:done', 2, 2, 1, NULL, 0)"
    )
    conn.execute("PRAGMA user_version = 3")
    conn.close()
    store = SqliteStore(db_path)
    await store.open()
    targets = {t.target_id: t.converged for t in (await store.read_status()).targets}
    await store.close()
    assert targets == {"t:refused": False, "t:done": True}


def write_version_4(db_path: Path) -> None:
    """A file as version 4 left it: a pending and a folded intent, an ignored hit, an idempotency key."""
    db_path.parent.mkdir(parents=True)
    conn = sqlite3.connect(db_path, isolation_level=None)
    for script in MIGRATIONS[:4]:
        for statement in script.split(";"):
            conn.execute(statement)
    intent = '{"action": "up", "amount": 1, "max": 10, "min": 1}'
    conn.executescript(f"""
        INSERT INTO hits VALUES ('h1', 'default/up', 'u1', '{TARGET}', 'accepted', NULL, NULL, {T0});
        INSERT INTO hits VALUES ('h2', 'default/up', 'u1', '{TARGET}', 'accepted', NULL, NULL, {T0 + 1});
        INSERT INTO hits VALUES ('h3', 'default/up', 'u1', '{TARGET}', 'ignored', 'why', NULL, {T0 + 2});
        INSERT INTO intents (hit_id, target_id, receiver, intent, state, before, after, clamped, updated_at)
            VALUES ('h1', '{TARGET}', 'default/up', '{intent}', 'folded', 1, 2, 0, {T0});
        INSERT INTO intents (hit_id, target_id, receiver, intent, state, updated_at)
            VALUES ('h2', '{TARGET}', 'default/up', '{intent}', 'pending', {T0 + 1});
        INSERT INTO idempotency VALUES ('default/up', 'k', 'h2', {T0 + 1});
        PRAGMA user_version = 4;
    """)
    conn.close()


async def test_a_version_4_file_keeps_its_intents_and_hits_once_migrated(db_path: Path) -> None:
    write_version_4(db_path)
    store = SqliteStore(db_path)
    await store.open()
    try:
        [pending] = await store.pending_intents(TARGET)
        latest = (await store.read_status()).last_hits["default/up"]
        again = await store.record_hit(hit(at=T0 + 3, idempotency_key="k"))
    finally:
        await store.close()
    assert (pending.hit_id, pending.receiver, pending.intent["amount"]) == ("h2", "default/up", 1)
    assert (latest.hit_id, latest.outcome) == ("h3", "ignored")
    assert (again.outcome, again.hit_id) == ("duplicate", "h2")


async def test_a_migrated_intent_goes_with_its_hit(db_path: Path) -> None:
    write_version_4(db_path)
    await (store := SqliteStore(db_path)).open()
    await store.close()
    conn = sqlite3.connect(db_path)
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("DELETE FROM hits WHERE id = 'h1'")
    seqs = [r[0] for r in conn.execute("SELECT seq FROM intents")]
    left = [r[0] for r in conn.execute("SELECT h.id FROM intents i JOIN hits h ON h.n = i.seq")]
    conn.close()
    assert (len(seqs), left) == (1, ["h2"])


async def test_an_intent_is_keyed_by_its_hit_and_carries_no_copy_of_it(
    store: SqliteStore, db_path: Path
) -> None:
    result = await store.record_hit(hit())
    conn = sqlite3.connect(db_path)
    columns = {r[1] for r in conn.execute("PRAGMA table_info(intents)")}
    [(hit_id,)] = conn.execute("SELECT h.id FROM intents i JOIN hits h ON h.n = i.seq").fetchall()
    conn.close()
    assert "hit_id" not in columns and "receiver" not in columns and hit_id == result.hit_id


async def test_hit_ids_sort_by_arrival(store: SqliteStore) -> None:
    results = [await store.record_hit(hit(at=T0 + i * 0.001)) for i in range(50)]
    ids = [r.hit_id for r in results]
    assert ids == sorted(ids)


# -- retention: pruning keeps up with any ingest rate

MINUTE = 60.0


@pytest.mark.parametrize("retention", [59.0, float("inf"), float("nan")])
def test_a_retention_under_a_minute_or_endless_is_refused(db_path: Path, retention: float) -> None:
    with pytest.raises(ValueError, match="at least 60 s"):
        SqliteStore(db_path, retention=retention)


async def test_a_retention_under_24h_shortens_the_idempotency_window_and_says_so(
    db_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = SqliteStore(db_path, retention=3600)
    await store.open()
    try:
        await store.record_hit(hit(idempotency_key="k"))
        within = await store.record_hit(hit(at=T0 + 3599, idempotency_key="k"))
        after = await store.record_hit(hit(at=T0 + 3600, idempotency_key="k"))
    finally:
        await store.close()
    assert (within.outcome, after.outcome) == ("duplicate", "accepted")
    assert [r.getMessage() for r in caplog.records if r.levelname == "WARNING"] == [
        "hit retention is 3600s, under 24 h: an Idempotency-Key is remembered for 3600s only"
    ]


def test_the_cli_takes_a_retention_of_a_minute_in_days_and_refuses_less(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def retention(*flags: str) -> float:
        return settings_from(build_parser().parse_args(["run", *flags])).hit_retention_days

    assert retention("--hit-retention-days", "0.0007") * 86400 == pytest.approx(60.48)
    monkeypatch.setenv("WEBHOOK_HIT_RETENTION_DAYS", "0.5")
    assert retention() == 0.5
    for bad in ("0.0006", "nan", "inf", "soon"):
        with pytest.raises(argparse.ArgumentTypeError, match=r"at least 0\.0007"):
            retention("--hit-retention-days", bad)


def count_rows(db_path: Path, table: str) -> int:
    conn = sqlite3.connect(f"{db_path.as_uri()}?mode=ro", uri=True)
    count = int(conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
    conn.close()
    return count


def file_pages(db_path: Path) -> float:
    return db_path.stat().st_size / 4096  # SQLite's default page size


async def ingest_and_fold(store: SqliteStore, at: float, count: int) -> None:
    """``count`` accepted hits with idempotency keys at ``at`` (as Alertmanager sends them), then the
    reconciler's fold of their intents, so nothing but the retention keeps them."""
    await asyncio.gather(
        *(store.record_hit(hit(at=at + i / count, idempotency_key=f"{at}-{i}")) for i in range(count))
    )
    steps = [
        FoldStep(seq=p.seq, hit_id=p.hit_id, before=1, after=1, clamped=True)
        for p in await store.pending_intents(TARGET)
    ]
    await store.commit_fold(TARGET, 1, steps)


async def test_at_a_steady_rate_above_the_old_prune_limit_the_store_stops_growing(db_path: Path) -> None:
    # 200 hits a second is 12,000 a minute: more than the 10,000 a minute the store used to prune.
    rate, windows = 200, 3
    store = SqliteStore(db_path, retention=MINUTE)
    await store.open()
    pages: list[int] = []
    try:
        for second in range(int(windows * MINUTE)):
            await ingest_and_fold(store, T0 + second, rate)
            if (second + 1) % MINUTE == 0:
                pages.append(await store._submit(lambda c: int(c.execute("PRAGMA page_count").fetchone()[0])))
                assert count_rows(db_path, "hits") <= rate * (MINUTE + 2)
                assert count_rows(db_path, "idempotency") <= rate * (MINUTE + 2)
    finally:
        await store.close()
    assert count_rows(db_path, "hits") >= rate * (MINUTE - 2)  # the window itself is kept
    # From the second window on, deleted rows free the pages new rows take: the file stays the size it
    # reached, but for a few pages of index reshuffling (~1.5% here; without pruning each window of
    # this test adds its own size again).
    assert max(pages[1:]) <= pages[1] * 1.03, pages
    assert file_pages(db_path) <= pages[1] * 1.03  # closed: everything is in the file itself now


async def test_a_slice_that_used_its_limit_prunes_again_on_the_next_batch(db_path: Path) -> None:
    store = SqliteStore(db_path, retention=MINUTE)
    await store.open()
    limit = max(PRUNE_LIMIT, 2 * 256)  # at least twice a batch: a batch in catch-up deletes more than it adds
    backlog = 3 * limit
    try:
        await asyncio.gather(
            *(store.record_hit(hit(at=T0 + i / 1000, disposition="ignored")) for i in range(backlog))
        )
        later = T0 + MINUTE + 10
        counts = []
        for i in range(4):  # four batches within one PRUNE_INTERVAL
            await store.record_hit(hit(at=later + i / 1000, receiver="default/other", disposition="ignored"))
            counts.append(count_rows(db_path, "hits") - (i + 1))
    finally:
        await store.close()
    assert counts == [2 * limit, limit, 1, 1]  # each receiver's latest hit stays


async def test_a_hit_kept_for_its_pending_intent_is_pruned_by_the_next_sweep_once_folded(
    db_path: Path,
) -> None:
    store = SqliteStore(db_path, retention=MINUTE)
    await store.open()
    try:
        pending = await store.record_hit(hit())
        await store.record_hit(hit(at=T0 + 1, disposition="ignored"))  # pending's receiver has a later hit
        later = T0 + MINUTE + 10
        await store.record_hit(hit(at=later, receiver="default/other", disposition="ignored"))
        assert pending.hit_id in hit_ids(db_path)
        [intent] = await store.pending_intents(TARGET)
        await store.commit_fold(
            TARGET, 2, [FoldStep(seq=intent.seq, hit_id=intent.hit_id, before=1, after=2, clamped=False)]
        )
        await store.record_hit(hit(at=later + 2, receiver="default/other", disposition="ignored"))
        # Slices go on from where the last one stopped, so a hit that had to stay is not read again
        # by every slice (they run every second) ...
        assert pending.hit_id in hit_ids(db_path)
        await store.record_hit(hit(at=later + PRUNE_SWEEP, receiver="default/other", disposition="ignored"))
        # ... but by the next sweep from the oldest hit.
        assert pending.hit_id not in hit_ids(db_path)
    finally:
        await store.close()


# -- group commit


async def test_concurrent_hits_are_all_recorded_in_arrival_order_with_fewer_commits(
    store: SqliteStore,
) -> None:
    before = store.commits
    results = await asyncio.gather(*(store.record_hit(hit(at=T0 + i)) for i in range(200)))
    pending = await store.pending_intents(TARGET)
    assert [p.hit_id for p in pending] == [r.hit_id for r in results]
    assert all(a.seq < b.seq for a, b in itertools.pairwise(pending))
    assert store.commits - before < 200


async def test_jobs_waiting_while_a_commit_is_on_its_way_share_the_next_commit(store: GatedStore) -> None:
    gate, held = await hold_writer(store)
    tasks = await submitted(*(store.record_hit(hit(at=T0 + i)) for i in range(50)))
    before = store.commits
    gate.release.set()
    await held
    await asyncio.gather(*tasks)
    assert store.commits - before == 2  # the gate's transaction, then all 50 hits in one


async def test_max_batch_caps_the_jobs_of_one_transaction(db_path: Path) -> None:
    store = GatedStore(db_path, max_batch=3)
    await store.open()
    gate, held = await hold_writer(store)
    tasks = await submitted(*(store.record_hit(hit(at=T0 + i)) for i in range(7)))
    before = store.commits
    gate.release.set()
    await asyncio.gather(held, *tasks)
    await store.close()
    assert store.commits - before == 4  # the gate, then 3 + 3 + 1


async def test_a_failing_job_rolls_back_alone(store: GatedStore) -> None:
    gate, held = await hold_writer(store)
    bogus = FoldStep(seq=999, hit_id="nope", before=1, after=2, clamped=False)
    tasks = await submitted(
        store.record_hit(hit(at=T0)),
        store.commit_fold("scaleService:other", 5, [bogus]),
        store.record_hit(hit(at=T0 + 1)),
    )
    gate.release.set()
    await held
    first, failed, last = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(failed, StoreError)
    assert isinstance(first, HitResult) and isinstance(last, HitResult)
    assert await store.get_target("scaleService:other") is None
    assert await pending_hit_ids(store) == [first.hit_id, last.hit_id]


def violates_a_deferred_constraint(conn: sqlite3.Connection) -> None:
    """A job that succeeds but fails its batch's COMMIT: a deferred foreign key is checked only then."""
    conn.execute("PRAGMA defer_foreign_keys = ON")
    conn.execute(
        "INSERT INTO idempotency (receiver, key, hit_id, received_at)"
        " VALUES ('default/ghost', 'k', 'no-such-hit', 0)"
    )


async def test_a_failed_commit_fails_every_job_of_its_batch(store: GatedStore) -> None:
    gate, held = await hold_writer(store)
    tasks = await submitted(store.record_hit(hit()), store._submit(violates_a_deferred_constraint))
    gate.release.set()
    await held
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    assert [type(o) for o in outcomes] == [StoreUnavailable, StoreUnavailable]
    assert isinstance(outcomes[0].__cause__, sqlite3.IntegrityError)
    assert (await store.read_status()).last_hits == {}
    assert (await store.record_hit(hit(at=T0 + 1))).outcome == "accepted"  # the store keeps working


async def test_a_hit_whose_commit_failed_does_not_count_against_the_rate_limit(store: GatedStore) -> None:
    gate, held = await hold_writer(store)
    tasks = await submitted(
        store.record_hit(hit(rate_limit=ONE_PER_MINUTE)), store._submit(violates_a_deferred_constraint)
    )
    gate.release.set()
    await held
    await asyncio.gather(*tasks, return_exceptions=True)
    assert (await store.record_hit(hit(at=T0 + 1, rate_limit=ONE_PER_MINUTE))).outcome == "accepted"


async def test_a_failed_commit_puts_the_receivers_previous_bucket_back(store: GatedStore) -> None:
    limit = RateLimit(requests=2, per_seconds=60.0)
    for _ in range(2):
        await store.record_hit(hit(rate_limit=limit))  # empty at T0, one token back at T0 + 30
    gate, held = await hold_writer(store)
    tasks = await submitted(
        store.record_hit(hit(at=T0 + 30, rate_limit=limit)), store._submit(violates_a_deferred_constraint)
    )
    gate.release.set()
    await held
    await asyncio.gather(*tasks, return_exceptions=True)
    assert (await store.record_hit(hit(at=T0 + 30, rate_limit=limit))).outcome == "accepted"
    with pytest.raises(HitRateLimited):  # not a full bucket: the one before the failed batch
        await store.record_hit(hit(at=T0 + 30, rate_limit=limit))


async def test_a_batch_run_again_after_a_failing_job_counts_each_hit_once(store: GatedStore) -> None:
    limit = RateLimit(requests=2, per_seconds=60.0)
    gate, held = await hold_writer(store)
    bogus = FoldStep(seq=999, hit_id="nope", before=1, after=2, clamped=False)
    tasks = await submitted(
        store.record_hit(hit(at=T0, rate_limit=limit)),
        store.commit_fold("scaleService:other", 5, [bogus]),
        store.record_hit(hit(at=T0 + 1, rate_limit=limit)),
    )
    gate.release.set()
    await held
    first, _, last = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(first, HitResult) and isinstance(last, HitResult)
    with pytest.raises(HitRateLimited):
        await store.record_hit(hit(at=T0 + 2, rate_limit=limit))


# -- tokens, problems, meta


async def test_tokens_can_be_put_replaced_listed_and_deleted(store: SqliteStore) -> None:
    await store.put_tokens([token("up", "j1")])
    await store.put_tokens([token("down", "j2")])
    await store.put_tokens([token("up", "j3")])
    assert await store.get_token("default", "up") == token("up", "j3")
    assert [t.receiver for t in await store.list_tokens()] == ["default/down", "default/up"]
    await store.delete_token("default", "up")
    assert await store.get_token("default", "up") is None


async def test_set_problems_replaces_the_recorded_problems(store: SqliteStore) -> None:
    await store.set_problems([Problem("spec", "old", "a.yaml", 0)])
    new = [
        Problem("spec.scaleServiceConfig.max", "below min", "b.yaml", 1),
        Problem("", "not YAML", "c.yaml"),
    ]
    await store.set_problems(new)
    assert await store.list_problems() == new


async def test_meta_values_are_upserted(store: SqliteStore) -> None:
    await store.set_meta("started_at", "1")
    await store.set_meta("started_at", "2")
    assert (await store.get_meta("started_at"), await store.get_meta("missing")) == ("2", None)


# -- the CLI's snapshot


async def test_read_snapshot_sees_committed_state_while_the_store_is_open(
    store: SqliteStore, db_path: Path
) -> None:
    await store.put_tokens([token()])
    result = await store.record_hit(hit())
    await store.set_problems([Problem("spec", "bad")])
    await store.set_meta("pid", "42")
    snapshot = await asyncio.to_thread(read_snapshot, db_path)
    assert snapshot.tokens == [token()]
    assert snapshot.status.last_hits["default/up"].hit_id == result.hit_id
    assert snapshot.status.pending == {TARGET: 1}
    assert [r.hit_id for r in snapshot.status.recent_hits] == [result.hit_id]
    assert (snapshot.problems, snapshot.meta) == ([Problem("spec", "bad")], {"pid": "42"})


async def test_read_snapshot_works_after_the_store_closed(store: SqliteStore, db_path: Path) -> None:
    await store.set_observed(TARGET, 2, converged=True, error=None)
    await store.close()
    assert [t.observed for t in read_snapshot(db_path).status.targets] == [2]


def test_read_snapshot_of_a_missing_file_is_unavailable_and_creates_nothing(tmp_path: Path) -> None:
    with pytest.raises(StoreUnavailable):
        read_snapshot(tmp_path / "nothing.db")
    assert not (tmp_path / "nothing.db").exists()


# -- lifecycle and durability settings


async def test_calls_after_close_are_unavailable(store: SqliteStore) -> None:
    await store.close()
    assert not store.is_open()
    with pytest.raises(StoreUnavailable):
        await store.record_hit(hit())


async def test_calls_before_open_are_unavailable(db_path: Path) -> None:
    with pytest.raises(StoreUnavailable):
        await SqliteStore(db_path).get_meta("x")


async def test_the_writer_connection_uses_wal_and_full_sync(store: SqliteStore) -> None:
    pragmas = await store.pragmas()
    assert (pragmas["journal_mode"], pragmas["synchronous"], pragmas["foreign_keys"]) == ("wal", 2, 1)


async def test_a_store_with_a_newer_schema_does_not_open(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    conn = sqlite3.connect(db_path)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(StoreUnavailable, match="newer"):
        await SqliteStore(db_path).open()
