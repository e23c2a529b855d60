"""Pick the lines that explain a CRIU failure out of its log.

CRIU marks errors with ``Error (file:line): message``.  Some of them are
harmless on our machines and would hide the real cause if shown first:
without CAP_SYS_RESOURCE every run logs that it cannot raise
RLIMIT_NOFILE, and the run goes on fine.
"""

from __future__ import annotations

import os
import re

__all__ = ["HARMLESS_ERRORS", "first_errors", "is_harmless"]

#: Substrings of CRIU error lines that never explain a failure.
HARMLESS_ERRORS = ("rlimit: Can't setup RLIMIT_NOFILE",)

_MARK = "Error ("
# "(00.041893) " -- the time stamp CRIU puts in front of every line.
_STAMP_RE = re.compile(r"^\(\s*\d+\.\d+\)\s*")


def is_harmless(line: str) -> bool:
    """True if ``line`` is one of CRIU's errors that never explain a failure.

    Useful for ``cr_errmsg`` too: CRIU 4.2 fills it with the *first* error
    it logged, which on our machines is the RLIMIT_NOFILE line, on success
    and on failure alike.
    """
    return any(harmless in line for harmless in HARMLESS_ERRORS)


def first_errors(log_path: str | os.PathLike[str] | None, limit: int = 3) -> list[str]:
    """Return up to ``limit`` real error lines of a CRIU log, in log order.

    A line counts when it contains ``Error (`` and none of
    :data:`HARMLESS_ERRORS`.  Lines come back stripped, without CRIU's
    leading time stamp (a ``PID:`` prefix of a child's line is kept).
    A missing or unreadable log (or ``log_path=None``) gives ``[]``: the
    caller is already reporting a failure and must not fail again here.
    Raises ValueError when ``limit`` is below 1.
    """
    if limit < 1:
        raise ValueError(f"limit must be at least 1, not {limit}")
    if log_path is None:
        return []
    found: list[str] = []
    try:
        with open(log_path, encoding="utf-8", errors="replace") as log:
            for line in log:
                if _MARK not in line or is_harmless(line):
                    continue
                found.append(_STAMP_RE.sub("", line).strip())
                if len(found) == limit:
                    break
    except OSError:
        return found
    return found
