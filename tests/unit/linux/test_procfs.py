"""runtime.linux.procfs: mountinfo lines, /proc/PID/stat fields, wait statuses (stored text; no root)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from runtime.linux.procfs import exit_status_of, parse_mountinfo, proc_start_time, proc_state, process_alive

MOUNTINFO = (
    "22 1 0:21 / /run rw,nosuid shared:5 - tmpfs tmpfs rw,mode=755\n"
    "40 22 0:35 / /run/criu-cr/a\\040b/rootfs rw - overlay overlay rw,lowerdir=/x\n"
    "41 27 0:29 /criu-cr/web /sys/fs/cgroup/cpu,cpuacct rw - cgroup none rw,cpu,cpuacct\n"
    "not a mountinfo line\n"
)


def test_mountinfo_lines_become_entries_with_escapes_decoded() -> None:
    run, overlay, cg = parse_mountinfo(MOUNTINFO)
    assert (run.mount_id, run.parent_id, run.dev, run.mountpoint, run.fstype) == (22, 1, "0:21", "/run", "tmpfs")
    assert overlay.mountpoint == "/run/criu-cr/a b/rootfs" and overlay.source == "overlay"
    assert cg.root == "/criu-cr/web" and cg.super_option_set == {"rw", "cpu", "cpuacct"}


def test_start_time_tells_a_live_process_from_a_zombie_and_a_reused_pid() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        start = proc_start_time(child.pid)
        assert start is not None and process_alive(child.pid, start)
        assert not process_alive(child.pid, start + 1)  # another process under the same pid
        assert proc_state(child.pid) in ("S", "R")
        child.send_signal(signal.SIGKILL)
        while proc_state(child.pid) != "Z":
            pass
        assert proc_start_time(child.pid) is None  # a zombie never runs again
    finally:
        child.kill()
        child.wait()
    assert proc_state(child.pid) is None and not process_alive(child.pid, start)
    assert proc_start_time(os.getpid()) is not None


def test_wait_statuses_read_as_a_shell_shows_them() -> None:
    assert exit_status_of(3 << 8) == 3
    assert exit_status_of(signal.SIGKILL) == 128 + signal.SIGKILL
