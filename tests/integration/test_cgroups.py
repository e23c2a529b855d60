"""runtime.linux.cgroups on the real kernel: every layout this host offers (v1 via hybrid, and v2).

On a hybrid host the v2 hierarchy at /sys/fs/cgroup/unified is also used on
its own, as if it were a pure-v2 host, so both freezer kinds are exercised.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from runtime.errors import CgroupError
from runtime.linux.cgroups import DEFAULT_ROOT, UNIFIED, Cgroups, detect_layout, read_proc_cgroup
from runtime.oci.spec import Resources
from tests.conftest import require

# A child that counts into a file; once <file>.fork exists it forks one
# grandchild (to see pids() find a process born inside the cgroup).
COUNTER = """
import os, sys, time
n = 0
forked = False
while True:
    if not forked and os.path.exists(sys.argv[1] + ".fork"):
        forked = True
        if os.fork() == 0:
            time.sleep(600)
            os._exit(0)
    n += 1
    # Write then rename: a freeze between truncate and write would leave the file empty.
    with open(sys.argv[1] + ".tmp", "w") as f:
        f.write(str(n))
    os.replace(sys.argv[1] + ".tmp", sys.argv[1])
    time.sleep(0.01)
"""


def _roots() -> list[str]:
    roots = []
    try:
        layout = detect_layout(DEFAULT_ROOT)
    except CgroupError:
        return roots
    roots.append(DEFAULT_ROOT)
    if layout == "hybrid":
        roots.append(os.path.join(DEFAULT_ROOT, "unified"))
    return roots


def _made_cgroups(root: str) -> Iterator[Cgroups]:
    cgroups = Cgroups(f"/criu-cr-test-{secrets.token_hex(4)}", "unused", root=root)
    try:
        yield cgroups
    finally:
        for pid in cgroups.pids() if cgroups.exists() else []:
            _kill(pid)
        if cgroups.exists():
            cgroups.thaw()
        cgroups.remove()
        assert not cgroups.exists()


@pytest.fixture(params=_roots() or ["none"])
def cg(request: pytest.FixtureRequest, need_root: None) -> Iterator[Cgroups]:
    """A cgroup on each layout this host offers (on hybrid: v1+v2, and v2 alone)."""
    require(request.param != "none", "no cgroup filesystem mounted")
    yield from _made_cgroups(request.param)


@pytest.fixture
def host_cg(need_root: None) -> Iterator[Cgroups]:
    """A cgroup on the host's own layout, where resource controllers are."""
    require(bool(_roots()), "no cgroup filesystem mounted")
    yield from _made_cgroups(DEFAULT_ROOT)


@pytest.fixture
def counter(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    out = tmp_path / "count"
    proc = subprocess.Popen([sys.executable, "-c", COUNTER, str(out)])
    try:
        yield proc, out
    finally:
        proc.kill()
        proc.wait()


def _kill(pid: int) -> None:
    try:
        os.kill(pid, 9)
    except ProcessLookupError:
        pass


def _count(path: Path) -> int:
    for _ in range(200):
        text = path.read_text() if path.exists() else ""
        if text:
            return int(text)
        time.sleep(0.01)
    raise AssertionError(f"{path} never written")


def test_layout_detected() -> None:
    require(bool(_roots()), "no cgroup filesystem mounted")
    assert detect_layout() in ("v1", "hybrid", "v2")


def test_create_add_and_proc_cgroup(cg: Cgroups, counter: tuple[subprocess.Popen[bytes], Path]) -> None:
    proc, out = counter
    cg.create()
    assert all(os.path.isdir(p) for p in cg.paths.values())
    cg.add(proc.pid)
    seen = read_proc_cgroup(proc.pid)
    for ctrl, path in cg.cg_roots():
        if cg.layout == "v2" and cg.root != DEFAULT_ROOT:
            # the unified hierarchy of a hybrid host, used alone: /proc shows it under "0::"
            assert seen[UNIFIED] == path
        else:
            assert seen[ctrl] == path, ctrl
    _count(out)
    # a grandchild forked after add() is in the cgroup too
    Path(f"{out}.fork").touch()
    for _ in range(100):
        if len(cg.pids()) >= 2:
            break
        time.sleep(0.02)
    pids = cg.pids()
    assert proc.pid in pids and len(pids) == 2


def test_freeze_stops_the_counter_and_thaw_resumes_it(cg: Cgroups,
                                                      counter: tuple[subprocess.Popen[bytes], Path]) -> None:
    proc, out = counter
    cg.create()
    cg.add(proc.pid)
    _count(out)
    cg.freeze()
    assert cg.is_frozen()
    frozen_at = _count(out)
    time.sleep(0.3)
    assert _count(out) == frozen_at
    cg.thaw()
    assert not cg.is_frozen()
    time.sleep(0.3)
    assert _count(out) > frozen_at


def test_memory_and_pids_limits(host_cg: Cgroups, counter: tuple[subprocess.Popen[bytes], Path]) -> None:
    proc, _ = counter
    host_cg.create()
    host_cg.apply(Resources(memory_limit=64 << 20, pids_limit=32))
    host_cg.add(proc.pid)
    if host_cg.layout == "v2":
        assert Path(host_cg.paths[UNIFIED], "memory.max").read_text().strip() == str(64 << 20)
        assert Path(host_cg.paths[UNIFIED], "pids.max").read_text().strip() == "32"
    else:
        assert Path(host_cg.paths["memory"], "memory.limit_in_bytes").read_text().strip() == str(64 << 20)
        assert Path(host_cg.paths["pids"], "pids.max").read_text().strip() == "32"


def test_cpu_settings(host_cg: Cgroups) -> None:
    host_cg.create()
    host_cg.apply(Resources(cpu_shares=512, cpu_quota=20000, cpu_period=100000))
    if host_cg.layout == "v2":
        assert Path(host_cg.paths[UNIFIED], "cpu.max").read_text().split() == ["20000", "100000"]
        assert Path(host_cg.paths[UNIFIED], "cpu.weight").read_text().strip() == "20"
    else:
        assert Path(host_cg.paths["cpu"], "cpu.shares").read_text().strip() == "512"
        assert Path(host_cg.paths["cpu"], "cpu.cfs_quota_us").read_text().strip() == "20000"


def test_cpuset_usable_after_create(host_cg: Cgroups) -> None:
    host_cg.create()
    if host_cg.layout == "v2":  # create() enabled cpuset down the tree
        leaf = Path(host_cg.paths[UNIFIED])
        assert (leaf / "cpuset.cpus.effective").read_text().strip() != ""
    else:  # v1: an empty cpuset.cpus would refuse every task; create() copied the parent's
        leaf = Path(host_cg.paths["cpuset"])
        assert (leaf / "cpuset.cpus").read_text() == (leaf.parent / "cpuset.cpus").read_text()
        assert (leaf / "cpuset.mems").read_text().strip() != ""


def test_remove_waits_for_exiting_tasks(cg: Cgroups, counter: tuple[subprocess.Popen[bytes], Path]) -> None:
    proc, _ = counter
    cg.create()
    cg.add(proc.pid)
    for pid in cg.pids():
        _kill(pid)
    proc.wait()
    cg.remove()
    assert not cg.exists()


def test_remove_busy_names_the_directory(cg: Cgroups, counter: tuple[subprocess.Popen[bytes], Path]) -> None:
    proc, _ = counter
    cg.create()
    cg.add(proc.pid)
    with pytest.raises(CgroupError) as ei:
        cg.remove(timeout=0.1)
    assert ei.value.path in cg.paths.values() and "pids still inside" in str(ei.value)


def test_state_record_drives_the_same_cgroup(cg: Cgroups, counter: tuple[subprocess.Popen[bytes], Path]) -> None:
    proc, _ = counter
    cg.create()
    cg.add(proc.pid)
    again = Cgroups.from_dict(cg.to_dict())
    again.freeze()
    assert cg.is_frozen()
    again.thaw()
    assert proc.pid in again.pids()
