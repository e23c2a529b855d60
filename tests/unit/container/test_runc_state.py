"""runtime.container.runc against hand-written runc state files (no runc, no root)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from runtime.container.runc import read_runc_state
from runtime.errors import ContainerError, ContainerNotFoundError, ContainerStateError
from runtime.linux.procfs import proc_start_time


def state(pid: int, start: int, **extra: Any) -> dict[str, Any]:
    s = {
        "id": "c1",
        "init_process_pid": pid,
        "init_process_start": start,
        "created": "2026-11-25T22:36:50.328929727Z",
        "cgroup_paths": {},
        "namespace_paths": {"NEWPID": f"/proc/{pid}/ns/pid", "NEWNET": f"/proc/{pid}/ns/net"},
        "config": {
            "rootfs": "/b/rootfs",
            "labels": ["bundle=/b"],
            "namespaces": [{"type": "NEWPID", "path": ""}, {"type": "NEWNET", "path": "/run/netns/x"}],
        },
    }
    s.update(extra)
    return s


def put(root: Path, data: Any, cid: str = "c1") -> None:
    (root / cid).mkdir(parents=True, exist_ok=True)
    (root / cid / "state.json").write_text(data if isinstance(data, str) else json.dumps(data))


@pytest.fixture
def child() -> Any:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield proc
    proc.kill()
    proc.wait()


def test_proc_start_time_of_self() -> None:
    assert proc_start_time(os.getpid()) is not None
    assert proc_start_time(2**22 + 7) is None


def test_reads_live_container(tmp_path: Path, child: Any) -> None:
    put(tmp_path, state(child.pid, proc_start_time(child.pid)))
    a = read_runc_state("c1", str(tmp_path))
    assert (a.id, a.init_pid, a.bundle, a.rootfs, a.status) == ("c1", child.pid, "/b", "/b/rootfs", "running")
    assert a.namespace_paths == {"pid": f"/proc/{child.pid}/ns/pid", "network": f"/proc/{child.pid}/ns/net"}
    assert a.namespaces == {"pid": None, "network": "/run/netns/x"}
    assert a.state_dir == str(tmp_path / "c1")


def test_exec_fifo_means_created(tmp_path: Path, child: Any) -> None:
    put(tmp_path, state(child.pid, proc_start_time(child.pid)))
    (tmp_path / "c1" / "exec.fifo").touch()
    assert read_runc_state("c1", str(tmp_path)).status == "created"


def test_reused_pid_is_refused(tmp_path: Path, child: Any) -> None:
    put(tmp_path, state(child.pid, proc_start_time(child.pid) - 1))
    with pytest.raises(ContainerStateError, match="belongs to another process"):
        read_runc_state("c1", str(tmp_path))
    assert read_runc_state("c1", str(tmp_path), allow_stopped=True).status == "stopped"


def test_exited_init_is_refused(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    start = proc_start_time(proc.pid) or 1
    proc.wait()
    put(tmp_path, state(proc.pid, start))
    with pytest.raises(ContainerStateError, match="has exited"):
        read_runc_state("c1", str(tmp_path))


@pytest.mark.parametrize("cid", ["nope", "../etc", ".."])
def test_not_found(tmp_path: Path, cid: str) -> None:
    with pytest.raises(ContainerNotFoundError):
        read_runc_state(cid, str(tmp_path))


@pytest.mark.parametrize("data", ["{not json", json.dumps({"id": "c1"}), json.dumps([1])])
def test_garbled_state(tmp_path: Path, data: str) -> None:
    put(tmp_path, data)
    with pytest.raises(ContainerError, match="runc state"):
        read_runc_state("c1", str(tmp_path))
