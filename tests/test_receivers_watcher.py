"""ReceiverWatcher on a real folder and the real SQLite store: change detection and last-good rules.

File times are set explicitly (``Folder.write``) and the watcher's clock is fixed well after them, so
no test depends on how fast the filesystem's clock ticks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import pytest

from controller.drivers import load_drivers
from controller.drivers.contract import Driver
from controller.metrics import Metrics
from controller.model import ActiveReceiver
from controller.receiver_set import ReceiverSet
from controller.receivers import watcher as watcher_module
from controller.receivers.inotify import Inotify
from controller.receivers.loader import FileLoad, load_documents, manifest_tree
from controller.receivers.schema import ReceiverSchema
from controller.receivers.sync import ReceiverSync
from controller.receivers.watcher import Loader, ReceiverWatcher
from controller.store.base import StoreUnavailable
from controller.store.sqlite import SqliteStore
from controller.tokens import KeyRing, TokenRevoked, TokenSuperseded, TokenVerifier, check_current
from tests.specs import config_of
from tests.toolbox import until

FILE_TIME = 1_700_000_000  # seconds; every write moves a file's mtime one second past the last one
NOW = 1_800_000_000.0

GOOD = """\
apiVersion: webhook-service.dev/v1
kind: Receiver
metadata:
  name: {name}
  annotations: {{webhook-service.dev/token-generation: "{generation}"}}
spec:
  driver: scaleService
  scaleServiceConfig: {{projectId: 1a5, serviceId: {service}, action: up, amount: {amount}, min: 1, max: 10}}
"""


def manifest(
    name: str = "web-up", *, amount: int | str = 1, service: str = "1s7", generation: str = ""
) -> str:
    return GOOD.format(name=name, amount=amount, service=service, generation=generation)


class CountingLoader:
    def __init__(self) -> None:
        self.reads: list[Path] = []

    def __call__(self, path: Path, drivers: Mapping[str, Driver], schema: ReceiverSchema) -> FileLoad:
        self.reads.append(path)
        return load_documents(path, drivers, schema)


class Harness:
    def __init__(self, tmp_path: Path, store: SqliteStore) -> None:
        self.dir = tmp_path / "receivers"
        self.dir.mkdir()
        self.store = store
        self.keyring = KeyRing.load_or_create(tmp_path / "keys", clock=lambda: NOW)
        self.verifier = TokenVerifier(self.keyring)
        self.receiver_set = ReceiverSet()
        self.metrics = Metrics()
        self.loader = CountingLoader()
        self.now = NOW
        self._stamp = FILE_TIME
        self.watcher = self.build(self.loader)

    def build(self, loader: Loader, *, events: bool = True, interval: float = 0.0) -> ReceiverWatcher:
        sync = ReceiverSync(
            store=self.store, keyring=self.keyring, receiver_set=self.receiver_set, metrics=self.metrics
        )
        return ReceiverWatcher(
            directory=self.dir,
            drivers=load_drivers(),
            sync=sync,
            store=self.store,
            metrics=self.metrics,
            interval=interval,
            events=events,
            rescan=3600.0,  # never within a test: what is seen was seen through events or polling
            settle=0.0,
            loader=loader,
            clock=lambda: self.now,
        )

    def write(self, name: str, text: str, *, mtime_ns: int | None = None) -> Path:
        path = self.dir / name
        path.write_text(text)
        self._stamp += 1
        stamp = mtime_ns if mtime_ns is not None else self._stamp * 10**9
        os.utime(path, ns=(stamp, stamp))
        return path

    def active(self, name: str = "web-up") -> ActiveReceiver:
        active = self.receiver_set.get(f"default/{name}")
        assert active is not None
        return active

    def check_token(self, token: str) -> None:
        claims = self.verifier.verify(token)
        check_current(claims, self.receiver_set.get(claims.receiver_key), "1a5")

    def problem_count(self) -> float | None:
        return self.metrics.registry.get_sample_value("webhook_receiver_manifest_problems")


@pytest.fixture
def h(tmp_path: Path, store: SqliteStore) -> Harness:
    return Harness(tmp_path, store)


async def test_the_first_scan_of_an_empty_folder_marks_the_registry_loaded(h: Harness) -> None:
    assert await h.watcher.scan_once()
    assert h.receiver_set.loaded


async def test_an_added_file_makes_its_receiver_active_with_a_token(h: Harness) -> None:
    h.write("web-up.yaml", manifest())
    assert await h.watcher.scan_once()
    h.check_token(h.active().token)
    assert await h.store.get_token("default", "web-up") is not None


async def test_nothing_changed_means_nothing_read_and_nothing_applied(h: Harness) -> None:
    h.write("web-up.yaml", manifest())
    await h.watcher.scan_once()
    reads = len(h.loader.reads)
    assert not await h.watcher.scan_once()
    assert len(h.loader.reads) == reads


async def test_a_touched_file_is_not_parsed_again_and_applies_nothing(h: Harness) -> None:
    path = h.write("web-up.yaml", manifest())
    await h.watcher.scan_once()
    os.utime(path, ns=(FILE_TIME * 10**9 + 5, FILE_TIME * 10**9 + 5))
    assert not await h.watcher.scan_once()
    assert h.loader.reads == [path]


async def test_a_rewrite_with_other_bytes_is_parsed_again(h: Harness) -> None:
    path = h.write("web-up.yaml", manifest())
    await h.watcher.scan_once()
    h.write("web-up.yaml", manifest() + "# a comment\n")
    assert not await h.watcher.scan_once()
    assert h.loader.reads == [path, path]


async def test_editing_the_amount_keeps_the_token_and_takes_effect(h: Harness) -> None:
    h.write("web-up.yaml", manifest())
    await h.watcher.scan_once()
    token = h.active().token
    h.write("web-up.yaml", manifest(amount=2))
    assert await h.watcher.scan_once()
    assert h.active().token == token
    assert config_of(h.active().receiver.spec, "scaleServiceConfig")["amount"] == 2


async def test_bumping_the_token_generation_supersedes_the_old_token(h: Harness) -> None:
    h.write("web-up.yaml", manifest())
    await h.watcher.scan_once()
    old = h.active().token
    h.write("web-up.yaml", manifest(generation="2"))
    await h.watcher.scan_once()
    assert h.active().token != old
    with pytest.raises(TokenSuperseded):
        h.check_token(old)


async def test_changing_the_service_mints_a_new_token(h: Harness) -> None:
    h.write("web-up.yaml", manifest())
    await h.watcher.scan_once()
    old = h.active().token
    h.write("web-up.yaml", manifest(service="1s8"))
    await h.watcher.scan_once()
    assert h.active().token != old
    assert h.active().receiver.target.id == "scaleService:1a5/1s8"


async def test_broken_yaml_keeps_the_last_good_version_and_lists_a_problem(h: Harness) -> None:
    h.write("web-up.yaml", manifest())
    await h.watcher.scan_once()
    token = h.active().token
    h.write("web-up.yaml", manifest() + "spec: [unclosed\n")
    assert await h.watcher.scan_once()
    assert h.active().token == token
    problems = await h.store.list_problems()
    assert [p.message.split(":")[0] for p in problems] == ["not valid YAML"]
    assert h.problem_count() == 1


async def test_an_invalid_document_keeps_its_last_good_version(h: Harness) -> None:
    h.write("web-up.yaml", manifest())
    await h.watcher.scan_once()
    h.write("web-up.yaml", manifest(amount=0))
    await h.watcher.scan_once()
    assert config_of(h.active().receiver.spec, "scaleServiceConfig")["amount"] == 1
    assert [p.path for p in await h.store.list_problems()] == ["spec.scaleServiceConfig.amount"]


async def test_one_broken_document_among_two_lets_the_good_one_load(h: Harness) -> None:
    h.write("pair.yaml", manifest("web-up") + "---\n" + manifest("web-down", amount=-1))
    await h.watcher.scan_once()
    assert h.receiver_set.keys() == {"default/web-up"}
    assert [(p.document, p.path) for p in await h.store.list_problems()] == [
        (1, "spec.scaleServiceConfig.amount")
    ]


async def test_valid_edits_take_effect_beside_an_invalid_document(h: Harness) -> None:
    h.write("pair.yaml", manifest("web-up") + "---\n" + manifest("web-down"))
    await h.watcher.scan_once()
    h.write("pair.yaml", manifest("web-up", amount=4) + "---\n" + manifest("web-down", amount="many"))
    await h.watcher.scan_once()
    assert config_of(h.active("web-up").receiver.spec, "scaleServiceConfig")["amount"] == 4
    assert config_of(h.active("web-down").receiver.spec, "scaleServiceConfig")["amount"] == 1


async def test_a_document_removed_from_a_file_removes_its_receiver(h: Harness) -> None:
    h.write("pair.yaml", manifest("web-up") + "---\n" + manifest("web-down"))
    await h.watcher.scan_once()
    old = h.active("web-down").token
    h.write("pair.yaml", manifest("web-up"))
    await h.watcher.scan_once()
    assert h.receiver_set.keys() == {"default/web-up"}
    with pytest.raises(TokenRevoked):
        h.check_token(old)


async def test_removing_the_file_revokes_the_token(h: Harness) -> None:
    path = h.write("web-up.yaml", manifest())
    await h.watcher.scan_once()
    old = h.active().token
    path.unlink()
    assert await h.watcher.scan_once()
    with pytest.raises(TokenRevoked):
        h.check_token(old)
    assert await h.store.list_tokens() == []


async def test_a_name_in_two_files_keeps_the_first_and_lists_a_problem(h: Harness) -> None:
    a = h.write("a.yaml", manifest())
    b = h.write("b.yaml", manifest(service="1s8"))
    await h.watcher.scan_once()
    assert h.active().receiver.source == str(a)
    assert [(p.file, p.path) for p in await h.store.list_problems()] == [(str(b), "metadata.name")]


async def test_a_missing_folder_is_a_problem_then_watched_for(h: Harness) -> None:
    h.dir.rmdir()
    assert await h.watcher.scan_once()
    assert [p.message for p in await h.store.list_problems()] == ["the receivers folder does not exist"]
    assert h.receiver_set.loaded
    h.dir.mkdir()
    h.write("web-up.yaml", manifest())
    assert await h.watcher.scan_once()
    assert h.receiver_set.keys() == {"default/web-up"}
    assert await h.store.list_problems() == []


async def test_a_rewrite_within_one_timestamp_tick_is_still_seen(h: Harness) -> None:
    h.now = FILE_TIME + 1  # the file is read in the same instant it was written
    path = h.write("web-up.yaml", manifest(amount=1), mtime_ns=int(h.now * 10**9))
    await h.watcher.scan_once()
    h.write("web-up.yaml", manifest(amount=2), mtime_ns=int(h.now * 10**9))  # same size, mtime and inode
    assert await h.watcher.scan_once()
    assert config_of(h.active().receiver.spec, "scaleServiceConfig")["amount"] == 2
    assert h.loader.reads == [path, path]


async def test_problems_are_logged_once_per_change(h: Harness, caplog: pytest.LogCaptureFixture) -> None:
    path = h.write("web-up.yaml", manifest(amount=0))
    await h.watcher.scan_once()
    os.utime(path, ns=(FILE_TIME * 10**9 + 7, FILE_TIME * 10**9 + 7))
    await h.watcher.scan_once()
    await h.watcher.scan_once()
    warnings = [
        r for r in caplog.records if r.name == "controller.receivers.watcher" and r.levelno == logging.WARNING
    ]
    assert len(warnings) == 1


async def test_a_failed_apply_is_retried_on_the_next_scan(h: Harness) -> None:
    h.write("web-up.yaml", manifest())
    await h.store.close()
    with pytest.raises(StoreUnavailable):
        await h.watcher.scan_once()
    await h.store.open()
    assert await h.watcher.scan_once()
    assert h.receiver_set.keys() == {"default/web-up"}


async def test_run_keeps_scanning_after_a_failed_scan(h: Harness, caplog: pytest.LogCaptureFixture) -> None:
    h.write("web-up.yaml", manifest())
    loaded = asyncio.Event()
    calls = 0

    def flaky(path: Path, drivers: Mapping[str, Driver], schema: ReceiverSchema) -> FileLoad:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("disk hiccup")
        loaded.set()
        return load_documents(path, drivers, schema)

    task = asyncio.create_task(h.build(flaky).run())  # its first read fails, as a disk error would
    try:
        await asyncio.wait_for(loaded.wait(), timeout=5)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert any("failed" in r.getMessage() for r in caplog.records if r.levelno == logging.ERROR)


async def test_a_folder_that_reappears_empty_clears_its_problem(h: Harness) -> None:
    h.dir.rmdir()
    await h.watcher.scan_once()
    h.dir.mkdir()
    assert await h.watcher.scan_once()
    assert await h.store.list_problems() == []


async def test_a_folder_that_vanishes_keeps_its_receivers(h: Harness) -> None:
    path = h.write("web-up.yaml", manifest())
    await h.watcher.scan_once()
    token = h.active().token
    path.unlink()
    h.dir.rmdir()
    assert await h.watcher.scan_once()
    h.check_token(token)
    assert [p.message for p in await h.store.list_problems()] == ["the receivers folder does not exist"]


async def test_a_scan_that_fails_half_way_applies_what_it_read_next_time(h: Harness) -> None:
    def fails_on_b(path: Path, drivers: Mapping[str, Driver], schema: ReceiverSchema) -> FileLoad:
        if path.name == "b.yaml":
            raise RuntimeError("disk hiccup")
        return load_documents(path, drivers, schema)

    watcher = h.build(fails_on_b)
    h.write("a.yaml", manifest())
    await watcher.scan_once()
    h.write("a.yaml", manifest(amount=2))
    b = h.write("b.yaml", manifest("web-down"))
    with pytest.raises(RuntimeError):
        await watcher.scan_once()  # a.yaml was read again before b.yaml failed
    b.unlink()
    assert await watcher.scan_once()
    assert config_of(h.active().receiver.spec, "scaleServiceConfig")["amount"] == 2


# -- following the folder: through inotify's events, and by polling where there is no inotify

FOLLOW = pytest.mark.parametrize("events", [True, False], ids=["inotify", "polling"])


@contextlib.asynccontextmanager
async def following(h: Harness, *, events: bool) -> AsyncIterator[ReceiverWatcher]:
    watcher = h.build(h.loader, events=events, interval=0.01)
    task = asyncio.create_task(watcher.run())
    try:
        await until(lambda: h.receiver_set.loaded, within=5, what="the first scan")
        yield watcher
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def amount(h: Harness, name: str = "web-up") -> object:
    active = h.receiver_set.get(f"default/{name}")
    return None if active is None else config_of(active.receiver.spec, "scaleServiceConfig")["amount"]


@FOLLOW
async def test_following_applies_an_added_file(h: Harness, events: bool) -> None:
    async with following(h, events=events):
        h.write("web-up.yaml", manifest())
        await until(lambda: h.receiver_set.get("default/web-up"), within=5, what="the new receiver")


@FOLLOW
async def test_following_applies_a_file_rewritten_in_place(h: Harness, events: bool) -> None:
    h.write("web-up.yaml", manifest(amount=1))
    async with following(h, events=events):
        h.write("web-up.yaml", manifest(amount=2))
        await until(lambda: amount(h) == 2, within=5, what="the new amount")


@FOLLOW
async def test_following_revokes_the_receivers_of_a_deleted_file(h: Harness, events: bool) -> None:
    path = h.write("web-up.yaml", manifest())
    async with following(h, events=events):
        path.unlink()
        await until(lambda: not h.receiver_set.keys(), within=5, what="the revocation")


@FOLLOW
async def test_following_reads_a_file_in_a_folder_created_later(h: Harness, events: bool) -> None:
    async with following(h, events=events):
        (h.dir / "team").mkdir()
        h.write("team/web-up.yaml", manifest())
        await until(lambda: h.receiver_set.get("default/web-up"), within=5, what="the receiver")


@FOLLOW
async def test_following_sees_a_configmap_update_swap_its_data_symlink(h: Harness, events: bool) -> None:
    """A mounted ConfigMap: visible symlinks into ``..data``, itself a symlink renamed over on update."""
    for version, value in (("..v1", 1), ("..v2", 2)):
        (h.dir / version).mkdir()
        h.write(f"{version}/web-up.yaml", manifest(amount=value))
    (h.dir / "..data").symlink_to("..v1")
    (h.dir / "web-up.yaml").symlink_to("..data/web-up.yaml")
    async with following(h, events=events):
        assert amount(h) == 1
        (h.dir / "..data_tmp").symlink_to("..v2")
        os.replace(h.dir / "..data_tmp", h.dir / "..data")
        await until(lambda: amount(h) == 2, within=5, what="the swapped version")


@FOLLOW
async def test_following_sees_a_missing_folder_appear(h: Harness, events: bool) -> None:
    h.dir.rmdir()
    async with following(h, events=events):
        h.dir.mkdir()
        h.write("web-up.yaml", manifest())
        await until(lambda: h.receiver_set.get("default/web-up"), within=5, what="the receiver")


async def test_following_events_lists_an_idle_folder_no_more(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    listings: list[Path] = []

    def counting(directory: Path) -> tuple[list[Path], list[Path]]:
        listings.append(directory)
        return manifest_tree(directory)

    monkeypatch.setattr(watcher_module, "manifest_tree", counting)
    h.write("web-up.yaml", manifest())
    async with following(h, events=True):
        await until(lambda: listings, what="the first listing")
        listed = len(listings)
        await asyncio.sleep(0.2)  # twenty polling intervals
        assert len(listings) == listed


async def test_following_polls_where_there_is_no_inotify(h: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Inotify, "open", classmethod(lambda cls: None))
    async with following(h, events=True):
        h.write("web-up.yaml", manifest())
        await until(lambda: h.receiver_set.get("default/web-up"), within=5, what="the new receiver")
