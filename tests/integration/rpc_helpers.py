"""Helpers for the RPC integration tests: a counting process tree we start,
dump and restore, and clean up by its own pids only."""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import time
from pathlib import Path

from tests.conftest import require, require_criu

CLONE_NEWNET = 0x40000000
# A shell that counts in memory and writes each value to a file; `sleep`
# makes it a tree (sh + a short-lived child) most of the time.
COUNTER_SCRIPT = 'i=0; while :; do i=$((i+1)); echo $i > "$1"; sleep 0.05; done'


def criu_path() -> str:
    require(os.geteuid() == 0, "needs root")
    return require_criu()


def stat_fields(pid: int) -> list[str] | None:
    """/proc/PID/stat fields after the command name (state is [0]), None if gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def pid_in_use(pid: int) -> bool:
    """True while pid is a task, or the process group/session id of one."""
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = stat_fields(int(entry))
            if fields and (int(entry) == pid or int(fields[2]) == pid or int(fields[3]) == pid):
                return True
    return False


def _enter(netns: str | None, cgroup: str | None) -> None:
    """In the child before exec: join ``netns`` and ``cgroup``."""
    if cgroup:
        with open(os.path.join(cgroup, "cgroup.procs"), "w") as f:
            f.write(str(os.getpid()))
    if netns:
        libc = ctypes.CDLL(None, use_errno=True)
        fd = os.open(netns, os.O_RDONLY)
        try:
            if libc.setns(fd, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns", netns)
        finally:
            os.close(fd)


def wait_until(cond, timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


class Counter:
    """A counting shell we started (its own session), and what became of it."""

    def __init__(self, workdir: Path, *, netns: str | None = None, cgroup: str | None = None) -> None:
        """``netns``: a netns path to start in; ``cgroup``: a cgroup dir to start in."""
        self.file = workdir / "counter"
        self.proc = subprocess.Popen(["sh", "-c", COUNTER_SCRIPT, "counter", str(self.file)],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True,
                                     preexec_fn=(lambda: _enter(netns, cgroup)) if netns or cgroup else None)
        self.pid = self.proc.pid
        self.restored_pids: list[int] = []
        wait_until(lambda: self.value() >= 3, what="the counter to start")

    def value(self) -> int:
        try:
            return int(self.file.read_text().strip() or 0)
        except (FileNotFoundError, ValueError):
            return 0

    def is_running_unfrozen(self) -> bool:
        fields = stat_fields(self.pid)
        return fields is not None and fields[0] in ("R", "S", "D")

    def keeps_counting(self, timeout: float = 5.0) -> bool:
        start = self.value()
        try:
            wait_until(lambda: self.value() >= start + 3, timeout, "the counter to grow")
        except AssertionError:
            return False
        return True

    def wait_dumped_away(self) -> int:
        """After a dump that killed the tree: reap it, wait until its pid is free; its last value."""
        self.proc.wait(timeout=10)
        wait_until(lambda: not pid_in_use(self.pid), 15, f"pid {self.pid} to be free")
        return self.value()

    def restored(self, pid: int) -> None:
        self.restored_pids.append(pid)

    def cleanup(self) -> None:
        """Kill what we started (the tree, or its restored copies) by pid / own process group."""
        for pid in [self.pid, *self.restored_pids]:
            fields = stat_fields(pid)
            if fields is None:
                continue
            try:
                if int(fields[2]) == pid:  # still the group leader of our own tree
                    os.killpg(pid, signal.SIGKILL)
                else:
                    os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
        for pid in self.restored_pids:
            wait_until(lambda: stat_fields(pid) is None or stat_fields(pid)[0] == "Z", 10, f"{pid} to die")
