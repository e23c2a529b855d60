"""Reading and writing cgroupfs files, with errors that name the file (and a hint for a missing controller)."""

from __future__ import annotations

import errno

from runtime.errors import CgroupError

__all__ = ["read_file", "write_file"]


def read_file(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError as exc:
        raise CgroupError(path, f"cannot read: {exc.strerror}") from exc


def write_file(path: str, value: str, hint: str = "") -> None:
    try:
        with open(path, "w", encoding="utf-8") as f:
            f.write(value)
    except OSError as exc:
        msg = f"cannot write {value!r}: {exc.strerror}"
        if hint and exc.errno in (errno.ENOENT, errno.EACCES):
            msg += f" ({hint})"
        raise CgroupError(path, msg) from exc
