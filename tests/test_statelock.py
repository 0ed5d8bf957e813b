"""One service per state folder: the lock ``run`` takes before it writes anything."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from controller.statelock import LOCK_NAME, StateFolderBusy, lock_state_dir
from tests.toolbox import folder_fingerprint


def test_the_lock_file_names_the_holders_pid(tmp_path: Path) -> None:
    lock = lock_state_dir(tmp_path / "state")
    try:
        assert (tmp_path / "state" / LOCK_NAME).read_text() == f"{os.getpid()}\n"
    finally:
        lock.release()


def test_a_second_lock_on_a_held_folder_is_refused_naming_the_holder(tmp_path: Path) -> None:
    lock = lock_state_dir(tmp_path)
    try:
        with pytest.raises(
            StateFolderBusy, match=rf"in use by another webhook-service \(pid {os.getpid()}\)"
        ):
            lock_state_dir(tmp_path)
    finally:
        lock.release()


def test_a_refused_lock_leaves_the_folder_untouched(tmp_path: Path) -> None:
    lock = lock_state_dir(tmp_path)
    (tmp_path / "webhook.db").write_bytes(b"data")
    before = folder_fingerprint(tmp_path)
    try:
        with pytest.raises(StateFolderBusy):
            lock_state_dir(tmp_path)
        assert folder_fingerprint(tmp_path) == before
    finally:
        lock.release()


def test_a_released_lock_can_be_taken_again(tmp_path: Path) -> None:
    lock_state_dir(tmp_path).release()
    lock_state_dir(tmp_path).release()


def test_a_lock_file_left_behind_is_no_lock(tmp_path: Path) -> None:
    (tmp_path / LOCK_NAME).write_text("999999\n")  # a crashed holder's file: the kernel dropped its lock
    lock = lock_state_dir(tmp_path)
    try:
        assert (tmp_path / LOCK_NAME).read_text() == f"{os.getpid()}\n"
    finally:
        lock.release()


def test_the_lock_file_is_for_the_services_user_only(tmp_path: Path) -> None:
    lock_state_dir(tmp_path / "state").release()
    assert (tmp_path / "state" / LOCK_NAME).stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "state").stat().st_mode & 0o777 == 0o700
