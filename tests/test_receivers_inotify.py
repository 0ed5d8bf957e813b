"""The inotify binding: folders watched once, events drained, missing folders refused."""

from __future__ import annotations

import select
from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.receivers.inotify import Inotify


@pytest.fixture
def events() -> Iterator[Inotify]:
    opened = Inotify.open()
    assert opened is not None, "this suite runs on Linux, which has inotify"
    yield opened
    opened.close()


def readable(events: Inotify) -> bool:
    return bool(select.select([events.fileno()], [], [], 5.0)[0])


def test_a_folder_watched_again_keeps_its_descriptor(events: Inotify, tmp_path: Path) -> None:
    assert events.watch(tmp_path) is not None
    assert events.watch(tmp_path) == events.watch(tmp_path)


def test_a_missing_folder_cannot_be_watched(events: Inotify, tmp_path: Path) -> None:
    assert events.watch(tmp_path / "missing") is None


def test_a_file_is_not_a_folder_to_watch(events: Inotify, tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("")
    assert events.watch(tmp_path / "a.yaml") is None


def test_a_written_file_makes_the_descriptor_readable_until_drained(events: Inotify, tmp_path: Path) -> None:
    events.watch(tmp_path)
    assert not events.drain()
    (tmp_path / "a.yaml").write_text("kind: Receiver\n")
    assert readable(events)
    assert events.drain()
    assert not events.drain()


def test_a_renamed_symlink_is_an_event(events: Inotify, tmp_path: Path) -> None:
    (tmp_path / "..v2").mkdir()
    events.watch(tmp_path)
    (tmp_path / "..data_tmp").symlink_to("..v2")
    events.drain()
    (tmp_path / "..data_tmp").replace(tmp_path / "..data")
    assert readable(events)
    assert events.drain()
