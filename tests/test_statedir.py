"""The state folder (tokens and signing keys) is readable by the service's user only: made 0700 with
files 0600 whatever existed before, and a new database's -wal and -shm are 0600 too."""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.cli import main
from controller.statedir import secure_state_dir
from controller.store.sqlite import SqliteStore
from tests.test_store_conformance import hit


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


@pytest.fixture(autouse=True)
def lax_umask() -> Iterator[None]:
    """The common default umask: without care, files come out 0644 and folders 0755."""
    old = os.umask(0o022)
    yield
    os.umask(old)


@pytest.fixture
def lax_state(tmp_path: Path) -> Path:
    """A state folder as an older version left it: everything readable by others."""
    state = tmp_path / "state"
    (state / "keys").mkdir(parents=True, mode=0o755)
    state.chmod(0o755)
    for name in ("webhook.db", "webhook.db-wal", "webhook.db-shm", "keys/k1.pem"):
        (state / name).write_text("x")
        (state / name).chmod(0o644)
    return state


def test_an_existing_state_folder_and_everything_in_it_are_made_private(lax_state: Path) -> None:
    secure_state_dir(lax_state)
    assert mode(lax_state) == mode(lax_state / "keys") == 0o700
    for name in ("webhook.db", "webhook.db-wal", "webhook.db-shm", "keys/k1.pem"):
        assert mode(lax_state / name) == 0o600, name


def test_what_was_fixed_is_logged_as_one_warning_naming_it(
    lax_state: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fixed = secure_state_dir(lax_state)
    assert f"{lax_state} 0755->0700" in fixed
    assert f"{lax_state / 'webhook.db'} 0644->0600" in fixed
    assert len(fixed) == 6
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert all(f in warnings[0].getMessage() for f in fixed)


def test_a_private_folder_is_left_as_it_is_and_nothing_is_logged(
    lax_state: Path, caplog: pytest.LogCaptureFixture
) -> None:
    secure_state_dir(lax_state)
    caplog.clear()
    assert secure_state_dir(lax_state) == []
    assert caplog.records == []


def test_a_missing_folder_is_created_0700(tmp_path: Path) -> None:
    state = tmp_path / "deep" / "state"
    assert secure_state_dir(state) == []
    assert mode(state) == 0o700


def test_symbolic_links_inside_are_not_followed(lax_state: Path, tmp_path: Path) -> None:
    outside = tmp_path / "shared.txt"
    outside.write_text("not ours")
    outside.chmod(0o644)
    (lax_state / "link").symlink_to(outside)
    secure_state_dir(lax_state)
    assert mode(outside) == 0o644


async def test_a_new_database_its_wal_and_shm_are_0600(tmp_path: Path) -> None:
    db = tmp_path / "state" / "webhook.db"
    store = SqliteStore(db)
    await store.open()
    try:
        await store.record_hit(hit())
        files = [db, db.with_name("webhook.db-wal"), db.with_name("webhook.db-shm")]
        assert {f.name: mode(f) for f in files} == {f.name: 0o600 for f in files}
        assert mode(db.parent) == 0o700
    finally:
        await store.close()


def test_keys_rotate_creates_the_state_folder_0700(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "new" / "state"
    assert main(["keys", "rotate", "--state", str(state)]) == 0
    assert mode(state) == mode(state / "keys") == 0o700
    assert [mode(p) for p in (state / "keys").iterdir()] == [0o600]
    assert capsys.readouterr().out.strip()  # the new key id


def test_keys_rotate_makes_an_existing_folder_private(
    lax_state: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["keys", "rotate", "--state", str(lax_state)]) == 0
    assert mode(lax_state) == 0o700
    assert mode(lax_state / "webhook.db") == 0o600
