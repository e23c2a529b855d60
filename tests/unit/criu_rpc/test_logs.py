"""first_errors: the lines that explain a CRIU failure."""

from __future__ import annotations

from pathlib import Path

import pytest

from criu_rpc.logs import first_errors, is_harmless

# Lines as CRIU 4.2.1 wrote them for `criu dump -t 999999` on this kind of machine.
FAILED_DUMP = """\
(00.041080) Version: 4.2.1 (gitid 0)
(00.041156) Warn  (criu/seize.c:63): Failed to open /proc/999999/comm: No such file or directory
(00.041171) Error (criu/util.c:1534): rlimit: Can't setup RLIMIT_NOFILE for self: Operation not permitted
(00.041884) net: Unlock network
(00.041893) Error (compel/src/lib/infect.c:417): Unable to detach from 999999: No such process
(00.041902) Error (criu/cr-dump.c:1975): Dumping FAILED.
"""


def write(tmp_path: Path, text: str | bytes) -> Path:
    path = tmp_path / "criu.log"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def test_skips_the_rlimit_line_and_strips_time_stamps(tmp_path: Path) -> None:
    assert first_errors(write(tmp_path, FAILED_DUMP)) == [
        "Error (compel/src/lib/infect.c:417): Unable to detach from 999999: No such process",
        "Error (criu/cr-dump.c:1975): Dumping FAILED.",
    ]


def test_limit(tmp_path: Path) -> None:
    log = write(tmp_path, "".join(f"(00.0000{i}) Error (x.c:{i}): e{i}\n" for i in range(9)))
    assert first_errors(log, limit=2) == ["Error (x.c:0): e0", "Error (x.c:1): e1"]
    assert len(first_errors(log)) == 3
    with pytest.raises(ValueError):
        first_errors(log, limit=0)


def test_child_prefix_is_kept(tmp_path: Path) -> None:
    log = write(tmp_path, "(00.100000)   1234: Error (criu/files.c:9): Can't open x\n")
    assert first_errors(log) == ["1234: Error (criu/files.c:9): Can't open x"]


def test_only_harmless_errors_gives_nothing(tmp_path: Path) -> None:
    log = write(tmp_path, FAILED_DUMP.splitlines(keepends=True)[2])
    assert first_errors(log) == []


def test_missing_unreadable_or_none(tmp_path: Path) -> None:
    assert first_errors(tmp_path / "absent.log") == []
    assert first_errors(tmp_path) == []  # a directory
    assert first_errors(None) == []


def test_invalid_utf8_does_not_break(tmp_path: Path) -> None:
    log = write(tmp_path, b"(00.1) Error (a.c:1): bad \xff byte\n")
    assert first_errors(log) == ["Error (a.c:1): bad \ufffd byte"]


def test_is_harmless_on_crius_errmsg() -> None:
    # cr_errmsg of a failed DUMP from CRIU 4.2.1 here: the first logged error.
    errmsg = "Error (criu/util.c:1534): rlimit: Can't setup RLIMIT_NOFILE for self: Operation not permitted\n"
    assert is_harmless(errmsg)
    assert not is_harmless("Error (criu/cr-dump.c:1975): Dumping FAILED.")


# What CRIU 4.2.1 logs, endlessly, restoring a truncated pages-1.img.
LOOP_LINE = b"(00.052231)      1: Advanced iov 0 bytes\n"


def test_reading_stops_at_max_bytes(tmp_path: Path) -> None:
    log = tmp_path / "restore.log"
    with open(log, "wb") as f:
        f.write(FAILED_DUMP.encode().split(b"(00.041884)")[0])  # the harmless error only
        f.write(LOOP_LINE * ((1 << 20) // len(LOOP_LINE) + 1))
        f.write(b"(99.000000) Error (criu/x.c:1): far away\n")
    assert first_errors(log, max_bytes=1 << 20) == []
    assert first_errors(log, max_bytes=2 << 20) == ["Error (criu/x.c:1): far away"]


def test_a_huge_log_is_not_read_whole(tmp_path: Path) -> None:
    import tracemalloc

    log = tmp_path / "restore.log"
    with open(log, "wb") as f:
        f.write(b"(00.000001) Error (criu/a.c:1): first\n" + LOOP_LINE * 1000)
        f.seek(200 << 20)  # a 200 MB sparse hole: NULs, no newline at all
        f.write(b"\n(99.000000) Error (criu/b.c:2): second\n")
    tracemalloc.start()
    try:
        errors = first_errors(log, limit=2)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert errors == ["Error (criu/a.c:1): first"]
    assert peak < 1 << 20  # lines are read piecewise, never the file


def test_stops_at_the_limit_th_error(tmp_path: Path) -> None:
    log = write(tmp_path, "".join(f"(00.1) Error (criu/x.c:{i}): e{i}\n" for i in range(10)))
    assert first_errors(log, limit=2) == ["Error (criu/x.c:0): e0", "Error (criu/x.c:1): e1"]


def test_an_over_long_line_is_cut(tmp_path: Path) -> None:
    log = write(tmp_path, "(00.1) Error (criu/x.c:1): " + "x" * 10000 + "\n(00.2) Error (criu/y.c:2): next\n")
    errors = first_errors(log)
    assert errors[0].startswith("Error (criu/x.c:1): xxx") and len(errors[0]) < 4096
    assert errors[1:] == ["Error (criu/y.c:2): next"]


def test_bad_max_bytes() -> None:
    with pytest.raises(ValueError):
        first_errors("/nonexistent", max_bytes=0)
