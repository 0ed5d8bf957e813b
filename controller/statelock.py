"""One service per state folder: an exclusive lock held by ``run`` for its whole life.

Two services on one folder would share one SQLite store and one key ring, each believing it owns the
pending intents; the second would also rewrite the store's notes about the first (its Cattle, its
public URL) before failing on the busy port. So ``run`` takes the lock before it writes anything to
the folder — before the modes are forced, the keys created or the store opened.

The lock is ``fcntl.flock`` on ``<state>/service.lock``, not the file's existence: the kernel releases
it when the process ends however it ends (a crash, SIGKILL), so there is never a stale lock to clean
up. The file holds the holder's pid, written only once the lock is held, so the refused ``run`` can
name it; creating that file on the first run is the only write a refused ``run`` may cause, and only
when no service has ever run on the folder (then nothing was there to disturb).

Read-only commands (``status``, ``trigger-url``) never take it: reading a live service's folder is
what they are for.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import Final

from controller.errors import WebhookServiceError

LOCK_NAME: Final = "service.lock"


class StateFolderBusy(WebhookServiceError):
    """Another live process holds the state folder's lock."""


class StateLock:
    """The held lock; ``release`` (or the process's end) lets the next service take it."""

    def __init__(self, fd: int, path: Path) -> None:
        self._fd = fd
        self.path = path

    def release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # closing the last descriptor releases the flock
            self._fd = -1


def lock_state_dir(state_dir: Path) -> StateLock:
    """Take ``state_dir``'s lock or raise ``StateFolderBusy`` naming the holder's pid.

    A missing folder is made (0700, as ``secure_state_dir`` would make it): the lock file has to live
    somewhere, and a folder that did not exist holds nothing a refused run could disturb."""
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = state_dir / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
        os.close(fd)
        raise StateFolderBusy(
            f"the state folder {state_dir} is in use by another webhook-service (pid {holder})"
        ) from None
    except BaseException:
        os.close(fd)
        raise
    pid = f"{os.getpid()}\n".encode("ascii")
    os.ftruncate(fd, 0)
    os.pwrite(fd, pid, 0)
    return StateLock(fd, path)
