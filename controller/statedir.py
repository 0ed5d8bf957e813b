"""The state folder holds every receiver's token (in ``webhook.db``) and the signing keys: only the
service's user may read it.

``secure_state_dir`` is called by every command that may create the folder (``run``, ``keys
rotate``), before anything is written to it (``run`` first takes the folder's lock, whose file is
created 0600 in a folder made 0700: ``controller.statelock``). It makes the folder if needed and
then *forces* the modes, whatever was there before: a folder made by an older version (or by hand,
or restored from a backup) keeps the umask's 0755/0644 otherwise, and creating files 0600 from now
on would not help the ones already there. What it had to fix is logged as a WARNING, since it means
the tokens were readable by other users until now.

SQLite creates ``-wal`` and ``-shm`` with the database file's mode, so once ``webhook.db`` is 0600
they are too (the store creates a new database 0600 for the same reason).
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path
from typing import Final

logger = logging.getLogger(__name__)

FOLDER_MODE: Final = 0o700
FILE_MODE: Final = 0o600


def secure_state_dir(path: Path) -> list[str]:
    """Make ``path`` (and its parents) if missing; force it and every folder in it to 0700 and every
    file to 0600. Symbolic links inside are left alone and not followed (``path`` itself may be
    one). Returns what was fixed, as ``"<path> 0755->0700"``."""
    path.mkdir(mode=FOLDER_MODE, parents=True, exist_ok=True)
    changes = [_force(path, FOLDER_MODE, follow=True)]
    for folder, folders, files in os.walk(path):
        changes += [_force(Path(folder, name), FOLDER_MODE) for name in folders]
        changes += [_force(Path(folder, name), FILE_MODE) for name in files]
    fixed = [change for change in changes if change is not None]
    if fixed:
        logger.warning(
            "the state folder %s holds tokens and signing keys, now for this user only; fixed: %s",
            path,
            ", ".join(fixed),
        )
    return fixed


def _force(path: Path, mode: int, *, follow: bool = False) -> str | None:
    """Set ``path``'s permission bits to ``mode`` (not through a symbolic link unless ``follow``);
    what changed, if anything."""
    try:
        st = os.stat(path, follow_symlinks=follow)
    except FileNotFoundError:  # gone since the folder was listed (SQLite removes -wal and -shm at close)
        return None
    if stat.S_ISLNK(st.st_mode):
        return None
    old = stat.S_IMODE(st.st_mode)
    if old == mode:
        return None
    os.chmod(path, mode)
    return f"{path} {old:04o}->{mode:04o}"
