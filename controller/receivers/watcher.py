"""Following the receivers folder: re-reads only changed files, keeps last-good versions.

How changes are noticed: where the platform has inotify (``controller.receivers.inotify``), every
folder listed is watched and an event (a file written, created, deleted, renamed, touched; a mounted
ConfigMap's ``..data`` symlink renamed over) triggers a scan a moment later, one scan for a burst.
Inotify misses what happens on another host (NFS) or past the kernel's watch limit, so a full scan
also runs every ``RESCAN_SECONDS``; while a folder cannot be watched (the main one missing, a limit
reached), a failed apply waits to be retried, or a file is not yet settled (below), scans run every
``interval`` seconds instead. Without inotify (``events=False``, or another platform) the folder is
polled every ``interval`` seconds. Either way a scan lists the folders with ``os.scandir`` and stats
each file on a worker thread, so an idle service with thousands of files does no work per second and
its loop never waits on a listing.

A file's signature is (mtime_ns, size, inode) from ``stat`` — which follows symlinks, so a ConfigMap
swap shows as a new inode. The stat is taken *before* the read: a file written during the read has a
newer signature by the next scan and is read again. Timestamps tick coarsely, so a file modified
within ``RACY_SECONDS`` of a scan is read again on the next one ("racy git"). A re-read that yields
the same receivers and problems (a touch) changes nothing.

Last-good rule: a mistake in a file must not take a working receiver down, and neither must the
states a file passes through while a tool rewrites it in place (truncated to nothing, half written).
When a file is empty, unreadable or no longer parses, all its receivers keep their last good
versions; when it parses but a document is invalid, that receiver keeps its last good version while
the file's valid documents take effect. A receiver whose document is gone from a file that parses,
or whose file is gone, is removed (token revoked) — but a removal from a file modified in the last
``RACY_SECONDS`` waits until the file has been still that long, since a half-written file can parse
and lack its later documents. The last good versions are in the store (with each token), so the rule
holds across restarts: a file that is broken when the service starts keeps the receivers it had.
A missing folder is reported as a problem and watched for; if it vanishes (or is missing at start),
the receivers are kept — an unmounted volume should not revoke every trigger URL.

Reading and parsing run on a worker thread, bounded (``yamlsafe``), so no file stalls the listener,
in batches of ``READ_BATCH`` files per hand-off (a start reads thousands); a file whose bytes are
unchanged since its last read (a touch, or the racy re-read) is not parsed again.

The watcher may follow more folders than the one people write (``also``): the folder the receivers
API manages (``controller.receivers.api_store``). Their files are read the same way and make one set,
so a name declared in both is reported like any duplicate. Only the main folder's absence is a problem
(an ``also`` folder that is not there yet holds no receivers). Scans never overlap: the API awaits a
scan of its own after each change while ``run`` follows the folders, and both go through one lock.

Any scan that changes something applies the full set through ``ReceiverSync`` (which skips the
receivers of files not re-read) and records the problems in the store; if that fails, the next scan
tries again.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from controller.drivers.contract import Driver
from controller.metrics import Metrics
from controller.model import API_VERSION, KIND, TOKEN_GENERATION_ANNOTATION, Problem, Receiver
from controller.receivers.inotify import Inotify
from controller.receivers.loader import (
    FileLoad,
    check_object,
    drop_duplicates,
    load_documents,
    manifest_tree,
    path_order,
)
from controller.receivers.schema import ReceiverSchema
from controller.receivers.sync import ReceiverSync
from controller.receivers.yamlsafe import ManifestError, read_bounded
from controller.store.base import Store, StoredToken

logger = logging.getLogger(__name__)

Signature = tuple[int, int, int]  # (st_mtime_ns, st_size, st_ino)
# Filesystem timestamps tick coarsely (jiffies, or whole seconds on some), so a same-size rewrite in the
# same tick as our read keeps its signature. Files modified this recently are read again next scan.
RACY_SECONDS = 2.0
# With inotify, a full scan anyway this often: for events it cannot see (NFS, a watch limit reached).
RESCAN_SECONDS = 30.0
SETTLE_SECONDS = 0.05  # after an event, wait this long for the rest of a burst before scanning
READ_BATCH = 64  # files read per hand-off to the worker thread
Loader = Callable[[Path, Mapping[str, Driver], ReceiverSchema], FileLoad]


@dataclass
class _FileState:
    signature: Signature
    receivers: dict[str, Receiver] = field(default_factory=dict)  # effective: new valid + last good
    documents: dict[str, int | None] = field(default_factory=dict)  # where each one was declared
    problems: list[Problem] = field(default_factory=list)
    settled: bool = False  # modified long enough before it was read that a same-tick edit is impossible
    load: FileLoad | None = None  # what the bytes last read yielded (None: rebuilt from the store)


class ReceiverWatcher:
    def __init__(
        self,
        *,
        directory: Path,
        also: Sequence[Path] = (),
        drivers: Mapping[str, Driver],
        sync: ReceiverSync,
        store: Store,
        metrics: Metrics,
        interval: float,
        events: bool = True,
        rescan: float = RESCAN_SECONDS,
        settle: float = SETTLE_SECONDS,
        schema: ReceiverSchema | None = None,
        loader: Loader = load_documents,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._directory = directory
        self._also = tuple(also)
        self._scanning = asyncio.Lock()
        self._drivers = drivers
        self._sync = sync
        self._store = store
        self._metrics = metrics
        self._interval = interval
        self._events = events
        self._rescan = rescan
        self._settle = settle
        self._events_source: Inotify | None = None  # while ``run`` follows inotify's events
        self._watches: set[int] = set()  # watch descriptors seen: a new one is a folder not yet watched
        self._new_watches = False
        self._unwatched = False  # a folder could not be watched (or the main one is missing): poll
        self._schema = schema or ReceiverSchema.load(drivers.values())
        self._load = loader
        self._clock = clock
        self._files: dict[Path, _FileState] = {}
        self._order: list[Path] | None = None  # ``_files`` sorted; None when a file came or went
        self._folder_problem: Problem | None = None
        self._logged_problems: list[Problem] = []
        self._unapplied = True  # nothing applied yet: the first scan applies even an empty folder
        # Each file's stored tokens (with its receivers' last good declarations), until the folder is
        # first listed; rebuilt into receivers only where the file can't stand for itself.
        self._stored: dict[Path, list[StoredToken]] | None = None
        self._problem_count = 0

    async def run(self) -> None:
        """Follow the folders until cancelled: on inotify's word where the platform has it, else by
        polling every ``interval`` seconds. A failed scan is logged and retried."""
        events = Inotify.open() if self._events else None
        if events is None:
            logger.info("polling the receivers folder %s every %gs", self._directory, self._interval)
            while True:
                await self._scan_logged()
                await asyncio.sleep(self._interval)
        changed = asyncio.Event()

        def on_events() -> None:
            events.drain()
            changed.set()

        loop = asyncio.get_running_loop()
        loop.add_reader(events.fileno(), on_events)
        self._events_source = events
        logger.info("watching the receivers folder %s with inotify", self._directory)
        try:
            while True:
                changed.clear()
                await self._scan_logged()
                if self._new_watches:  # a folder watched only now may have changed while it was listed
                    continue
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(changed.wait(), self._next_scan())
                await asyncio.sleep(
                    self._settle
                )  # one scan for a burst of events (a tool writing many files)
        finally:
            loop.remove_reader(events.fileno())
            self._events_source = None
            events.close()

    async def _scan_logged(self) -> None:
        try:
            await self.scan_once()
        except Exception:
            logger.exception("scanning the receivers folder %s failed; trying again", self._directory)
            self._unapplied = True

    def _next_scan(self) -> float:
        """Seconds until a scan is due without any event: soon while something waits (an apply to
        retry, a folder that could not be watched, a file not yet settled), else the safety rescan."""
        if self._unapplied or self._unwatched:
            return self._interval
        if any(not state.settled for state in self._files.values()):
            return RACY_SECONDS
        return self._rescan

    async def scan_once(self) -> bool:
        """Re-read what changed; apply and record if anything did (or the last apply failed, or this is
        the first scan). Returns whether it applied."""
        async with self._scanning:
            return await self._scan_once()

    async def _scan_once(self) -> bool:
        if self._stored is None:
            self._stored = {}
            for token in await self._store.list_tokens():
                self._stored.setdefault(Path(token.source), []).append(token)
        await self._scan_folder()
        if not self._unapplied:
            return False
        receivers, problems = self._current()
        await self._sync.apply(receivers)
        await self._store.set_problems(problems)
        self._unapplied = False
        self._metrics.manifest_problems.set(len(problems))
        self._problem_count = len(problems)
        self._log_problems(problems)
        return True

    def problems_note(self) -> str | None:
        """For /readyz: the service is serving, but some manifests are not as written."""
        if not self._problem_count:
            return None
        return f"{self._problem_count} receiver manifest problem(s); see `webhook-service status`"

    def _last_good(self, tokens: list[StoredToken]) -> _FileState:
        """A file's stored receivers, rebuilt from their last good declarations."""
        state = _FileState(signature=(0, 0, 0))
        for token in tokens:
            receiver = _rebuild(token, self._drivers, self._schema)
            if receiver is not None:
                state.receivers[receiver.key] = receiver
                state.documents[receiver.key] = None
        return state

    async def _scan_folder(self) -> None:
        """Update the per-file states; every real change sets ``_unapplied`` at once, so a scan that
        fails half-way still applies what it did read on the next one."""
        if not self._directory.is_dir():
            if self._folder_problem is None:
                self._folder_problem = Problem(
                    "", "the receivers folder does not exist", file=str(self._directory)
                )
                self._unapplied = True
            self._unwatched = True  # polled for until it is back
            if not self._files and self._stored:  # keep what the store remembers
                self._files = {path: self._last_good(tokens) for path, tokens in self._stored.items()}
                self._order = None
                self._stored = {}
            return
        if self._folder_problem is not None:
            self._folder_problem = None
            self._unapplied = True
        # Taken before the stats: a file modified after this instant is never mistaken for settled.
        settled_before = self._clock() - RACY_SECONDS
        present = await asyncio.to_thread(self._survey)
        for gone in self._files.keys() - present.keys():
            logger.info("receivers file %s was removed", gone)
            del self._files[gone]
            self._order = None
            self._unapplied = True
        stored, self._stored = self._stored or {}, {}
        due = [
            (path, signature, old)
            for path, signature in present.items()
            if (old := self._files.get(path)) is None or old.signature != signature or not old.settled
        ]
        for start in range(0, len(due), READ_BATCH):
            batch = due[start : start + READ_BATCH]
            loads = await asyncio.to_thread(self._read_all, [(path, old) for path, _, old in batch])
            for (path, signature, old), load in zip(batch, loads, strict=True):
                settled = signature[0] < settled_before * 1e9
                new = self._merge(path, load, signature, old, settled, stored.get(path, []))
                new.settled = settled
                if old is None:
                    self._order = None
                self._files[path] = new
                if old is None or _content(old) != _content(new):
                    self._unapplied = True

    def _survey(self) -> dict[Path, Signature]:
        """On the worker thread: every manifest file's signature; each folder listed is watched first
        when events are followed, so nothing written after its listing goes unnoticed."""
        present: dict[Path, Signature] = {}
        events, self._new_watches, self._unwatched = self._events_source, False, False
        for root in (self._directory, *(f for f in self._also if f.is_dir())):
            files, folders = manifest_tree(root)
            if events is not None:
                for folder in folders:
                    wd = events.watch(folder)
                    if wd is None:
                        self._unwatched = True
                    elif wd not in self._watches:
                        self._watches.add(wd)
                        self._new_watches = True
            for path in files:
                if (sig := _signature(path)) is not None:
                    present[path] = sig
        return present

    def _merge(
        self,
        path: Path,
        load: FileLoad,
        signature: Signature,
        old: _FileState | None,
        settled: bool,
        remembered: list[StoredToken],
    ) -> _FileState:
        """The file's new state from what its bytes yielded. ``remembered``: what the store kept of it,
        for its first read after a start, rebuilt only when the file can't stand for itself
        (unreadable, invalid or unsettled)."""
        valid = {r.key for r in load.receivers}
        if old is None and remembered and (not load.readable or load.names - valid or not settled):
            old = self._last_good(remembered)
        state = _FileState(signature=signature, problems=load.problems, load=load)
        if load.readable or old is None:
            state.receivers = {r.key: r for r in load.receivers}
            state.documents = {key: load.documents.get(key) for key in state.receivers}
        if old is None:
            return state
        if not load.readable:
            keep = set(old.receivers)
        else:
            keep = (load.names - state.receivers.keys()) & old.receivers.keys()  # invalid now, good before
            if not settled:  # maybe half written: what is missing may still come
                keep |= old.receivers.keys() - load.names
        for key in keep:
            state.receivers[key] = old.receivers[key]
            state.documents[key] = old.documents.get(key)
        if keep and _content(old) != _content(state):
            # INFO: the file's problem itself is the WARNING (logged once per change); a file being
            # rewritten in place passes through this state on every rewrite.
            logger.info(
                "receivers %s keep their last good version until %s is fixed", ", ".join(sorted(keep)), path
            )
        return state

    def _read_all(self, files: list[tuple[Path, _FileState | None]]) -> list[FileLoad]:
        """On the worker thread: the loads of a batch of files (one hand-off for many small files)."""
        return [self._read(path, old.load if old is not None else None) for path, old in files]

    def _read(self, path: Path, cached: FileLoad | None) -> FileLoad:
        """On the worker thread: the file's load; the cached one when its bytes have not changed."""
        if cached is not None and cached.digest:
            try:
                if hashlib.sha256(read_bounded(path)).hexdigest() == cached.digest:
                    return cached
            except ManifestError:
                pass  # the loader reports it
        return self._load(path, self._drivers, self._schema)

    def _current(self) -> tuple[list[Receiver], list[Problem]]:
        if self._order is None:
            self._order = sorted(self._files, key=path_order)
        states = [self._files[path] for path in self._order]
        found = [
            (receiver, state.documents.get(key))
            for state in states
            for key, receiver in state.receivers.items()
        ]
        receivers, duplicates = drop_duplicates(found)
        problems = [p for state in states for p in state.problems]
        if self._folder_problem is not None:
            problems.insert(0, self._folder_problem)
        return receivers, problems + duplicates

    def _log_problems(self, problems: list[Problem]) -> None:
        if problems == self._logged_problems:
            return
        self._logged_problems = problems
        for problem in problems:
            logger.warning("receiver manifest problem: %s", problem)
        if not problems:
            logger.info("receiver manifests have no problems")


def _content(state: _FileState) -> tuple[dict[str, tuple[Receiver, str]], list[Problem]]:
    """What a file contributes, to tell a real change from a touch or a same-content rewrite."""
    return {key: (r, r.spec_fingerprint()) for key, r in state.receivers.items()}, state.problems


def _rebuild(token: StoredToken, drivers: Mapping[str, Driver], schema: ReceiverSchema) -> Receiver | None:
    """A stored receiver's last good declaration, checked again (None if it no longer passes: a
    driver or schema that changed since is the file's to fix)."""
    if not token.source or not token.spec:
        return None
    try:
        spec = json.loads(token.spec)
    except ValueError:
        return None
    annotations = {TOKEN_GENERATION_ANNOTATION: token.token_generation} if token.token_generation else {}
    declared = {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": token.name, "namespace": token.namespace, "annotations": annotations},
        "spec": spec,
    }
    receiver, problems = check_object(declared, drivers, schema)
    if receiver is None or problems:
        return None
    return dataclasses.replace(receiver, source=token.source)


def _signature(path: Path) -> Signature | None:
    try:
        st = os.stat(path)
    except OSError:
        return None  # removed (or a dangling symlink) between listing and stat
    return (st.st_mtime_ns, st.st_size, st.st_ino)
