"""What criu-cr reads from /proc, read one way: mountinfo, a process's start time and state, wait statuses.

Pure parsers take the file's text (so tests feed them stored text); the
``read_*`` helpers open the file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

__all__ = ["MountEntry", "parse_mountinfo", "read_mountinfo", "mounts_under", "proc_stat_fields", "proc_start_time",
           "proc_state", "process_alive", "exit_status_of"]


@dataclass(frozen=True, slots=True, kw_only=True)
class MountEntry:
    """One line of ``/proc/PID/mountinfo``, octal escapes (``\\040``...) decoded."""

    mount_id: int
    parent_id: int
    dev: str  # major:minor of the filesystem
    root: str  # the directory of the filesystem that is mounted
    mountpoint: str
    fstype: str
    source: str
    super_options: str

    @property
    def super_option_set(self) -> frozenset[str]:
        return frozenset(self.super_options.split(",")) if self.super_options else frozenset()


def _unescape(s: str) -> str:
    if "\\" not in s:
        return s
    return s.encode("latin-1", "backslashreplace").decode("unicode_escape")


def parse_mountinfo(text: str) -> list[MountEntry]:
    """Every mount of a mountinfo text, in its order (parents before children)."""
    out = []
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        f, r = left.split(), right.split()
        if not sep or len(f) < 5 or not r:
            continue
        out.append(MountEntry(mount_id=int(f[0]), parent_id=int(f[1]), dev=f[2], root=_unescape(f[3]),
                              mountpoint=_unescape(f[4]), fstype=r[0],
                              source=_unescape(r[1]) if len(r) > 1 else "",
                              super_options=r[2] if len(r) > 2 else ""))
    return out


def read_mountinfo(pid: int | str = "self") -> list[MountEntry]:
    """The mounts ``pid`` sees. Raises OSError (FileNotFoundError when the process is gone)."""
    with open(f"/proc/{pid}/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
        return parse_mountinfo(f.read())


def mounts_under(path: str, mountinfo: str = "/proc/self/mountinfo") -> list[str]:
    """Mount points in the ``mountinfo`` file at or below ``path``."""
    path = os.path.abspath(path)
    with open(mountinfo, encoding="utf-8", errors="surrogateescape") as f:
        entries = parse_mountinfo(f.read())
    return [e.mountpoint for e in entries if e.mountpoint == path or e.mountpoint.startswith(path + "/")]


def proc_stat_fields(pid: int) -> list[str] | None:
    """Fields 3.. of ``/proc/PID/stat`` (state first), or None when there is no such process.

    The command name (field 2) may hold spaces and parentheses: the fields
    after it start at the last ')'.
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return data[data.rfind(b")") + 2:].decode("ascii", "replace").split()


def proc_state(pid: int) -> str | None:
    """The process state letter (R, S, D, Z, T...), or None when there is no such process."""
    fields = proc_stat_fields(pid)
    return fields[0] if fields else None


def proc_start_time(pid: int) -> int | None:
    """Start time in clock ticks since boot (field 22), or None if no such live process.

    A zombie counts as gone: it will never run again.
    """
    fields = proc_stat_fields(pid)
    if not fields or fields[0] in ("Z", "X"):
        return None
    return int(fields[22 - 3])


def process_alive(pid: int, start_time: int) -> bool:
    """True when ``pid`` runs and is the same process (same start time), not a reused pid."""
    return pid > 0 and proc_start_time(pid) == start_time


def exit_status_of(wait_status: int) -> int:
    """A wait status as a shell would show it: exit code, or 128 + signal number."""
    code = os.waitstatus_to_exitcode(wait_status)
    return 128 - code if code < 0 else code
