"""Hostile and transient receivers files: each is that file's problem and costs nothing else.

Every hostile file sits beside an ordinary one. The ordinary receiver must load, the hostile file's
problem must be listed (store, metric), and removing another receiver's file must still revoke its
token at once — a file that makes the loader fail must never freeze the folder. Transient states of
a file being rewritten in place (empty, half written) and a broken file at a restart must keep the
last good receivers and their tokens.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest

from controller.drivers import load_drivers
from controller.drivers.contract import Driver
from controller.metrics import Metrics
from controller.model import MAX_PROBLEM_CHARS
from controller.receiver_set import ReceiverSet
from controller.receivers.loader import FileLoad, load_documents
from controller.receivers.schema import ReceiverSchema
from controller.receivers.sync import ReceiverSync
from controller.receivers.watcher import ReceiverWatcher
from controller.receivers.yamlsafe import MAX_DOCUMENTS, MAX_FILE_BYTES
from controller.store.sqlite import SqliteStore
from controller.tokens import TokenRevoked
from tests.processes import run_cli
from tests.specs import config_of
from tests.test_receivers_watcher import Harness, manifest

BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n"
    for p, c in zip("abcdefgh", "bcdefghi", strict=True)
)


def write_bytes(folder: Path, name: str, data: bytes) -> Path:
    path = folder / name
    path.write_bytes(data)
    return path


def symlink(folder: Path, name: str, target: str) -> Path:
    path = folder / name
    path.symlink_to(target)
    return path


def fifo(folder: Path, name: str) -> Path:
    path = folder / name
    os.mkfifo(path)
    return path


HOSTILE: dict[str, Callable[[Path], Path]] = {
    "billion laughs": lambda d: write_bytes(d, "bomb.yaml", BOMB.encode()),
    "nesting 3,000 deep": lambda d: write_bytes(d, "deep.yaml", b"[" * 3000 + b"]" * 3000),
    "nesting 40 deep": lambda d: write_bytes(d, "deep40.yaml", b"[" * 40 + b"]" * 40),
    "a 5,000-digit integer": lambda d: write_bytes(d, "int.yaml", b"spec: " + b"9" * 5000 + b"\n"),
    "a file over the size cap": lambda d: write_bytes(d, "huge.yaml", b"# " + b"x" * MAX_FILE_BYTES + b"\n"),
    "10,000 documents": lambda d: write_bytes(d, "many.yaml", b"---\na: 1\n" * 10_000),
    "a symlink to a device": lambda d: symlink(d, "zero.yaml", "/dev/zero"),
    "a FIFO": lambda d: fifo(d, "pipe.yaml"),
    "an unreadable file": lambda d: symlink(d, "mem.yaml", "/proc/self/mem"),  # read() fails: EIO
    "bytes that are not UTF-8": lambda d: write_bytes(d, "latin.yaml", b"kind: Rec\xe9iver\n"),
}


@pytest.fixture
def h(tmp_path: Path, store: SqliteStore) -> Harness:
    return Harness(tmp_path, store)


def restarted(h: Harness) -> tuple[ReceiverWatcher, ReceiverSet]:
    """A second watcher and receiver set over the same folder, store and keys: the service restarted."""
    receiver_set = ReceiverSet()
    metrics = Metrics()
    sync = ReceiverSync(store=h.store, keyring=h.keyring, receiver_set=receiver_set, metrics=metrics)
    watcher = ReceiverWatcher(
        directory=h.dir,
        drivers=load_drivers(),
        sync=sync,
        store=h.store,
        metrics=metrics,
        interval=0.0,
        clock=lambda: h.now,
    )
    return watcher, receiver_set


@pytest.mark.parametrize("kind", sorted(HOSTILE))
async def test_a_hostile_file_is_its_own_problem_and_removals_still_revoke(
    h: Harness, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    h.write("web-up.yaml", manifest("web-up"))
    other = h.write("web-down.yaml", manifest("web-down"))
    await h.watcher.scan_once()
    doomed = h.active("web-down").token
    hostile = HOSTILE[kind](h.dir)
    other.unlink()
    h.write("web-new.yaml", manifest("web-new"))
    assert await h.watcher.scan_once()
    assert h.receiver_set.keys() == {"default/web-up", "default/web-new"}
    with pytest.raises(TokenRevoked):
        h.check_token(doomed)
    [problem] = await h.store.list_problems()
    assert problem.file == str(hostile)
    assert h.problem_count() == 1
    assert all(len(r.getMessage()) < 2 * MAX_PROBLEM_CHARS for r in caplog.records)


async def test_each_hostile_kind_gets_a_message_that_says_what_is_wrong(tmp_path: Path) -> None:
    messages = {
        kind: load_documents(make(tmp_path), load_drivers()).problems for kind, make in HOSTILE.items()
    }
    said = {kind: problems[0].message for kind, problems in messages.items()}
    assert said == {
        "billion laughs": "more than 20000 values once aliases are expanded",
        "nesting 3,000 deep": "not valid YAML: line 1, column 1001: exceeded maximum nesting depth",
        "nesting 40 deep": "nested more than 32 levels deep",
        "a 5,000-digit integer": "a value cannot be read (a number too large?)",
        "a file over the size cap": f"the file is larger than {MAX_FILE_BYTES} bytes",
        "10,000 documents": f"more than {MAX_DOCUMENTS} documents in one file",
        "a symlink to a device": "not a regular file",
        "a FIFO": "not a regular file",
        "an unreadable file": "cannot read the file: Input/output error",
        "bytes that are not UTF-8": "not UTF-8 text (byte 9)",
    }


async def test_a_huge_value_in_a_wrong_field_is_quoted_short(h: Harness) -> None:
    big = "big: &big [" + ", ".join(["[x, x, x, x, x, x, x, x, x, x]"] * 400) + "]\n"
    h.write("web-up.yaml", manifest() + "---\n" + big + "apiVersion: *big\nkind: *big\n")
    await h.watcher.scan_once()
    problems = await h.store.list_problems()
    assert problems and all(len(p.message) <= MAX_PROBLEM_CHARS for p in problems)
    assert h.receiver_set.keys() == {"default/web-up"}


async def test_an_empty_file_keeps_its_receivers_and_their_tokens(h: Harness) -> None:
    h.write("web-up.yaml", manifest())
    await h.watcher.scan_once()
    token = h.active().token
    h.write("web-up.yaml", "")
    await h.watcher.scan_once()
    h.check_token(token)
    assert [p.message for p in await h.store.list_problems()] == [
        "the file has no documents (to remove its receivers, delete it)"
    ]
    h.write("web-up.yaml", manifest())
    await h.watcher.scan_once()
    assert h.active().token == token
    assert await h.store.list_problems() == []


async def test_a_half_written_file_keeps_its_missing_receivers_until_it_is_still(h: Harness) -> None:
    h.write("pair.yaml", manifest("web-up") + "---\n" + manifest("web-down"))
    await h.watcher.scan_once()
    token = h.active("web-down").token
    h.write("pair.yaml", manifest("web-up"), mtime_ns=int(h.now * 1e9))  # written just now
    await h.watcher.scan_once()
    h.check_token(token)
    h.now += 5  # the file has been still for longer than a rewrite takes: the removal is real
    await h.watcher.scan_once()
    with pytest.raises(TokenRevoked):
        h.check_token(token)


async def test_a_broken_file_at_a_restart_keeps_its_receivers_and_tokens(h: Harness) -> None:
    h.write("pair.yaml", manifest("web-up") + "---\n" + manifest("web-down", amount=3))
    await h.watcher.scan_once()
    tokens = {name: h.active(name).token for name in ("web-up", "web-down")}
    h.write("pair.yaml", "spec: [unclosed\n")
    watcher, receiver_set = restarted(h)
    await watcher.scan_once()
    assert {a.receiver.name: a.token for a in receiver_set} == tokens
    web_down = receiver_set.get("default/web-down")
    assert web_down is not None and config_of(web_down.receiver.spec, "scaleServiceConfig")["amount"] == 3


async def test_an_empty_file_at_a_restart_keeps_its_receivers(h: Harness) -> None:
    h.write("web-up.yaml", manifest())
    await h.watcher.scan_once()
    token = h.active().token
    h.write("web-up.yaml", "")
    watcher, receiver_set = restarted(h)
    await watcher.scan_once()
    assert [a.token for a in receiver_set] == [token]


async def test_an_invalid_document_at_a_restart_keeps_its_last_good_version(h: Harness) -> None:
    h.write("web-up.yaml", manifest(amount=2))
    await h.watcher.scan_once()
    token = h.active().token
    h.write("web-up.yaml", manifest(amount=0))
    watcher, receiver_set = restarted(h)
    await watcher.scan_once()
    [active] = receiver_set
    assert (active.token, config_of(active.receiver.spec, "scaleServiceConfig")["amount"]) == (token, 2)


async def test_a_missing_folder_at_a_restart_keeps_the_receivers(h: Harness) -> None:
    path = h.write("web-up.yaml", manifest())
    await h.watcher.scan_once()
    token = h.active().token
    path.unlink()
    h.dir.rmdir()
    watcher, receiver_set = restarted(h)
    await watcher.scan_once()
    assert [a.token for a in receiver_set] == [token]


async def test_a_file_deleted_while_stopped_is_revoked_at_the_restart(h: Harness) -> None:
    h.write("web-up.yaml", manifest())
    path = h.write("web-down.yaml", manifest("web-down"))
    await h.watcher.scan_once()
    path.unlink()
    watcher, receiver_set = restarted(h)
    await watcher.scan_once()
    assert receiver_set.keys() == {"default/web-up"}
    assert [t.name for t in await h.store.list_tokens()] == ["web-up"]


async def test_files_are_parsed_off_the_event_loop(h: Harness) -> None:
    threads: list[int] = []

    def loader(path: Path, drivers: Mapping[str, Driver], schema: ReceiverSchema) -> FileLoad:
        threads.append(threading.get_ident())
        return load_documents(path, drivers, schema)

    watcher = h.build(loader)
    h.write("web-up.yaml", manifest())
    await watcher.scan_once()
    assert threads and threading.get_ident() not in threads


async def test_the_problems_show_in_readyz_notes_without_failing_it(h: Harness) -> None:
    h.write("broken.yaml", "spec: [unclosed\n")
    await h.watcher.scan_once()
    assert h.watcher.problems_note() == "1 receiver manifest problem(s); see `webhook-service status`"


def test_validate_lists_hostile_files_as_problems_without_a_traceback(tmp_path: Path) -> None:
    for make in HOSTILE.values():
        make(tmp_path)
    result = run_cli("validate", str(tmp_path))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr + result.stdout
    assert len(result.stdout.splitlines()) == len(HOSTILE)
    assert f"{len(HOSTILE)} problem(s) in receiver manifests" in result.stderr
