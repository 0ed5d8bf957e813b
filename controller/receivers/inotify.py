"""Being told when a folder changes: Linux inotify through ctypes, no extra dependency.

The watcher only needs to know *that* something under the receivers folders changed, not what: it
then lists the folders again (a listing is cheap; reading is what costs, and only changed files are
read). So this module exposes a file descriptor to wait on and ``drain`` to empty it, and keeps no
event history. A queue overflow or a watch that vanished needs nothing special for the same reason.

The mask covers every way a manifest can change: written and closed, created, deleted, renamed in
or out, and attributes (``touch``, ``chmod``). A mounted ConfigMap is updated by renaming its
``..data`` symlink over the old one, which shows as ``IN_MOVED_TO`` in the mounted folder. Events on
the folder itself (deleted or moved away) matter too: its watch is then gone, and the watcher's next
listing adds it again once it is back.

``Inotify.open`` returns None where inotify is missing (not Linux, or the per-user limit of
instances reached); the watcher then polls.
"""

from __future__ import annotations

import ctypes
import errno
import os
from collections.abc import Callable
from pathlib import Path

IN_ATTRIB = 0x004
IN_CLOSE_WRITE = 0x008
IN_MOVED_FROM = 0x040
IN_MOVED_TO = 0x080
IN_CREATE = 0x100
IN_DELETE = 0x200
IN_DELETE_SELF = 0x400
IN_MOVE_SELF = 0x800
IN_ONLYDIR = 0x01000000
IN_NONBLOCK = 0o4000  # Linux values (the only platform with inotify): O_NONBLOCK
IN_CLOEXEC = 0o2000000  # O_CLOEXEC

MASK = (
    IN_ATTRIB
    | IN_CLOSE_WRITE
    | IN_MOVED_FROM
    | IN_MOVED_TO
    | IN_CREATE
    | IN_DELETE
    | IN_DELETE_SELF
    | IN_MOVE_SELF
    | IN_ONLYDIR
)
_READ_SIZE = 64 * 1024


class Inotify:
    """One inotify instance: ``watch`` folders, wait until ``fileno()`` is readable, then ``drain``."""

    def __init__(self, fd: int, add_watch: Callable[[int, bytes, int], int]) -> None:
        self._fd = fd
        self._add_watch = add_watch

    @classmethod
    def open(cls) -> Inotify | None:
        """A new instance, or None where the platform has no inotify (the caller then polls)."""
        try:
            libc = ctypes.CDLL(None, use_errno=True)  # the process's own symbols, libc's among them
            init, add_watch = libc.inotify_init1, libc.inotify_add_watch
        except (OSError, AttributeError):
            return None
        init.argtypes, init.restype = [ctypes.c_int], ctypes.c_int
        add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
        add_watch.restype = ctypes.c_int
        fd = init(IN_NONBLOCK | IN_CLOEXEC)
        if fd < 0:
            return None
        return cls(fd, add_watch)

    def fileno(self) -> int:
        return self._fd

    def watch(self, folder: Path) -> int | None:
        """Watch ``folder``; its watch descriptor, or None if it can't be watched (gone, not a folder,
        the per-user limit of watches reached). Watching a watched folder again returns the same
        descriptor, so a new one means the folder was not watched until now."""
        wd = self._add_watch(self._fd, os.fsencode(folder), MASK)
        return wd if wd >= 0 else None

    def drain(self) -> bool:
        """Read every pending event; whether there was any."""
        seen = False
        while True:
            try:
                data = os.read(self._fd, _READ_SIZE)
            except BlockingIOError:
                return seen
            except OSError as e:
                if e.errno == errno.EINTR:
                    continue
                raise
            if not data:
                return seen
            seen = True

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
