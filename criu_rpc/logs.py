"""Pick the lines that explain a CRIU failure out of its log.

CRIU marks errors with ``Error (file:line): message``.  Some of them are
harmless on our machines and would hide the real cause if shown first:
without CAP_SYS_RESOURCE every run logs that it cannot raise
RLIMIT_NOFILE, and the run goes on fine.

Reading is bounded: a CRIU stuck in a loop can write gigabytes of log
(CRIU 4.2.1 restoring a truncated ``pages-*.img`` logs "Advanced iov 0
bytes" at ~50 MB/s), and the caller is usually already reporting a failure.
So only the first :data:`LOG_SCAN_BYTES` are looked at, a line is cut at
:data:`LOG_LINE_BYTES`, and reading stops at the ``limit``-th error.
"""

from __future__ import annotations

import io
import os
import re

__all__ = ["HARMLESS_ERRORS", "LOG_SCAN_BYTES", "LOG_LINE_BYTES", "first_errors", "is_harmless"]

#: Substrings of CRIU error lines that never explain a failure.
HARMLESS_ERRORS = ("rlimit: Can't setup RLIMIT_NOFILE",)

#: How much of a log :func:`first_errors` reads at most.  CRIU's first real
#: error comes within the first few hundred KiB of every failed log seen
#: here (log level 4 included); 16 MiB takes ~0.1 s to scan.
LOG_SCAN_BYTES = 16 << 20
#: Longest line kept whole; the rest of a longer line is skipped.
LOG_LINE_BYTES = 4096

_MARK = b"Error ("
# "(00.041893) " -- the time stamp CRIU puts in front of every line.
_STAMP_RE = re.compile(r"^\(\s*\d+\.\d+\)\s*")


def is_harmless(line: str) -> bool:
    """True if ``line`` is one of CRIU's errors that never explain a failure.

    The one place that decides it: the log scan below, ``cr_errmsg``
    (CRIU 4.2 fills it with the *first* error it logged, which on our
    machines is the RLIMIT_NOFILE line, on success and on failure alike)
    and CRIU's stderr all ask here.
    """
    return any(harmless in line for harmless in HARMLESS_ERRORS)


def first_errors(log_path: str | os.PathLike[str] | None, limit: int = 3,
                 max_bytes: int = LOG_SCAN_BYTES) -> list[str]:
    """Return up to ``limit`` real error lines of a CRIU log, in log order.

    A line counts when it contains ``Error (`` and none of
    :data:`HARMLESS_ERRORS`.  Lines come back stripped, without CRIU's
    leading time stamp (a ``PID:`` prefix of a child's line is kept), cut
    at :data:`LOG_LINE_BYTES`.  Only the first ``max_bytes`` of the file
    are read, and reading stops at the ``limit``-th error: memory and time
    stay bounded whatever the log's size.  A missing or unreadable log (or
    ``log_path=None``) gives ``[]``: the caller is already reporting a
    failure and must not fail again here.  Raises ValueError when
    ``limit`` or ``max_bytes`` is below 1.
    """
    if limit < 1:
        raise ValueError(f"limit must be at least 1, not {limit}")
    if max_bytes < 1:
        raise ValueError(f"max_bytes must be at least 1, not {max_bytes}")
    if log_path is None:
        return []
    found: list[str] = []
    left = max_bytes
    try:
        with open(log_path, "rb") as log:
            while left > 0 and len(found) < limit:
                line = log.readline(min(LOG_LINE_BYTES, left))
                if not line:
                    break
                left -= len(line)
                if not line.endswith(b"\n") and len(line) == LOG_LINE_BYTES:
                    left -= _skip_rest_of_line(log, left)
                if _MARK not in line:
                    continue
                text = line.decode("utf-8", "replace")
                if not is_harmless(text):
                    found.append(_STAMP_RE.sub("", text).strip())
    except OSError:
        return found
    return found


def _skip_rest_of_line(log: io.BufferedReader, left: int) -> int:
    """Skip what remains of an over-long line (within ``left`` bytes); bytes skipped."""
    skipped = 0
    while skipped < left:
        piece = log.readline(min(1 << 16, left - skipped))
        skipped += len(piece)
        if not piece or piece.endswith(b"\n"):
            break
    return skipped
