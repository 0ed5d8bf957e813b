"""The group commit's batching: jobs submitted ``alone`` never share a batch with hits, and a thin batch
waits a moment to fill up (the rest of the engine is specified through the store, in
tests/test_store_sqlite.py)."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from controller.store.sqlite_groupcommit import MAX_ALONE, GroupCommit
from controller.store.sqlite_schema import connect


class HeldCommits:
    """The engine's COMMIT, which a test can hold on the committer thread while jobs queue up."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.release.set()

    def hold(self) -> None:
        self.entered.clear()
        self.release.clear()

    def __call__(self, conn: sqlite3.Connection) -> None:
        self.entered.set()
        self.release.wait(10)
        conn.execute("COMMIT")


def engine(path: Path, commits: HeldCommits, **options: Any) -> GroupCommit:
    return GroupCommit(
        path,
        connect=connect,
        commit=commits,
        probe=lambda c: None,
        max_batch=options.pop("max_batch", 256),
        probe_interval=1.0,
        logger=logging.getLogger("test.groupcommit"),
        **options,
    )


@pytest.fixture
async def held(tmp_path: Path) -> AsyncIterator[tuple[GroupCommit, HeldCommits]]:
    commits = HeldCommits()
    group = engine(tmp_path / "db", commits, fill=2, fill_wait=60.0)
    await group.open()
    yield group, commits
    commits.release.set()
    await group.close()


async def queued_behind_a_held_commit(
    group: GroupCommit, commits: HeldCommits, *alone: bool
) -> tuple[asyncio.Task[Any], list[asyncio.Task[Any]]]:
    """Hold a COMMIT, then submit one job per entry of ``alone``; they queue up behind it."""
    commits.hold()
    first = asyncio.create_task(group.submit(lambda c: None))
    assert await asyncio.to_thread(commits.entered.wait, 10)
    jobs = [asyncio.create_task(group.submit(lambda c: None, alone=a)) for a in alone]
    await asyncio.sleep(0)  # each has queued its job
    return first, jobs


async def test_an_alone_job_never_shares_a_batch_with_hits(held: tuple[GroupCommit, HeldCommits]) -> None:
    group, commits = held
    first, jobs = await queued_behind_a_held_commit(group, commits, False, False, True, False, False)
    before = group.commits
    commits.release.set()
    await asyncio.gather(first, *jobs)
    assert group.commits - before == 4  # the held one, then the two jobs, the alone one, the last two


async def test_consecutive_alone_jobs_share_batches_of_at_most_max_alone(
    held: tuple[GroupCommit, HeldCommits],
) -> None:
    group, commits = held
    apart = [True] * (MAX_ALONE + 1)
    first, jobs = await queued_behind_a_held_commit(group, commits, *apart, False, False)
    before = group.commits
    commits.release.set()
    await asyncio.gather(first, *jobs)
    # the held one, MAX_ALONE alone jobs, the last alone one, the two hits (a full batch: no fill wait)
    assert group.commits - before == 4


async def test_a_thin_batch_waits_to_fill_and_starts_once_full(held: tuple[GroupCommit, HeldCommits]) -> None:
    group, commits = held
    first, [lone] = await queued_behind_a_held_commit(group, commits, False)
    commits.release.set()
    await first
    await asyncio.sleep(0)
    assert not lone.done()  # one job waits (fill_wait is a minute here) for a second one
    before = group.commits
    await group.submit(lambda c: None)  # the second one fills the batch: it starts at once
    assert (lone.done(), group.commits - before) == (True, 1)


async def test_a_job_at_an_idle_engine_never_waits_to_fill(tmp_path: Path) -> None:
    group = engine(tmp_path / "db", HeldCommits(), fill=24, fill_wait=60.0)
    await group.open()
    try:
        assert await asyncio.wait_for(group.submit(lambda c: 1), 10) == 1
    finally:
        await group.close()
