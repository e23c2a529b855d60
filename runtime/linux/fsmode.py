"""Files and directories only root can read, whatever the umask.

criu-cr's files (state, checkpoint metadata, memory images, logs of the
container's output) hold secrets, and a caller's umask may be anything
(``umask 000`` would make them world-readable). Every file criu-cr writes
goes through :func:`open_private` (0600) and every directory it creates
through :func:`makedirs_private` (0700 unless told otherwise): the mode is
set with ``fchmod``/``chmod`` after creation, so the umask can neither widen
nor narrow it.
"""

from __future__ import annotations

import os
from typing import IO, Any

__all__ = ["FILE_MODE", "DIR_MODE", "open_private", "makedirs_private"]

FILE_MODE = 0o600
DIR_MODE = 0o700


def open_private(path: str | os.PathLike[str], mode: str = "w", **kwargs: Any) -> IO[Any]:
    """``open(path, mode)`` for writing, the file created (or truncated) with mode 0600.

    ``mode`` is "w", "wb", "a" or "ab"; ``kwargs`` go to :func:`os.fdopen`
    (``encoding``...). An existing file gets 0600 too. Raises OSError.
    """
    if mode.rstrip("b") not in ("w", "a"):
        raise ValueError(f"open_private writes only ('w', 'a', with 'b'), not {mode!r}")
    flags = os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | (os.O_APPEND if mode.startswith("a") else os.O_TRUNC)
    fd = os.open(path, flags, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
        return os.fdopen(fd, mode, **kwargs)
    except BaseException:
        os.close(fd)
        raise


def makedirs_private(path: str | os.PathLike[str], mode: int = DIR_MODE) -> None:
    """``os.makedirs(path, exist_ok=True)``: ``path`` gets exactly ``mode``, the parents it
    creates 0700, if it creates them.

    Directories that already exist keep their mode (they are not ours to
    change). Raises OSError.
    """
    leaf = os.path.abspath(os.fspath(path))
    path = os.path.abspath(os.fspath(path))
    missing = []
    while not os.path.isdir(path):
        missing.append(path)
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    for d in reversed(missing):
        try:
            os.mkdir(d, mode)
        except FileExistsError:
            if not os.path.isdir(d):
                raise
            continue  # made meanwhile by someone else: theirs
        os.chmod(d, mode if d == leaf else DIR_MODE)
