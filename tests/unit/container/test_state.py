"""runtime.container.state: state root, ids, atomic state.json, lock, pid start-time checks (no root needed)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from runtime.container.state import ContainerState, StateStore, state_root, validate_id
from runtime.errors import ContainerBusyError, ContainerExistsError, ContainerNotFoundError
from runtime.linux.procfs import proc_start_time, process_alive


def test_state_root_precedence(monkeypatch, tmp_path):
    monkeypatch.delenv("CRIU_CR_ROOT", raising=False)
    assert state_root() == "/run/criu-cr"
    monkeypatch.setenv("CRIU_CR_ROOT", str(tmp_path / "env"))
    assert state_root() == str(tmp_path / "env")
    assert state_root(str(tmp_path / "explicit")) == str(tmp_path / "explicit")


@pytest.mark.parametrize("bad", ["", "..", ".hidden", "a/b", "x" * 200, "sp ace"])
def test_invalid_ids(bad):
    with pytest.raises(ValueError, match="invalid container id"):
        validate_id(bad)


def test_valid_ids():
    for good in ("web", "a.b-c_1", "0abc"):
        assert validate_id(good) == good


def test_roundtrip_and_atomic_write(tmp_path):
    store = StateStore(str(tmp_path))
    store.create_dir("c1")
    st = ContainerState(id="c1", status="created", bundle="/b", init_pid=42, init_start_time=7,
                        namespaces={"pid": "/proc/42/ns/pid"}, stdio={"stdout": "pipe:[1]"})
    store.write(st)
    assert store.read("c1") == st
    assert sorted(os.listdir(store.dir("c1"))) == ["state.json"]  # no temporary file left
    assert store.ids() == ["c1"]
    assert [s.id for s in store.iter_states()] == ["c1"]


def test_unknown_fields_are_ignored_and_status_checked(tmp_path):
    data = ContainerState(id="c", status="running", bundle="/b").to_dict()
    data["future_field"] = 1
    assert ContainerState.from_dict(data).status == "running"
    with pytest.raises(ValueError, match="unknown container status"):
        ContainerState(id="c", status="exploded", bundle="/b")


def test_create_twice_and_missing(tmp_path):
    store = StateStore(str(tmp_path))
    store.create_dir("c")
    with pytest.raises(ContainerExistsError):
        store.create_dir("c")
    with pytest.raises(ContainerNotFoundError):
        store.read("other")
    with pytest.raises(ContainerNotFoundError):
        store.lock("other")


def test_second_lock_is_busy_even_from_another_process(tmp_path):
    store = StateStore(str(tmp_path))
    store.create_dir("c")
    with store.lock("c"):
        with pytest.raises(ContainerBusyError, match="busy"):
            store.lock("c")
        code = (
            "import sys; from runtime.container.state import StateStore\n"
            "from runtime.errors import ContainerBusyError\n"
            f"try:\n    StateStore({str(tmp_path)!r}).lock('c')\n"
            "except ContainerBusyError:\n    sys.exit(3)\n"
        )
        r = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[3])
        assert r.returncode == 3
    with store.lock("c"):  # released
        pass


def test_remove(tmp_path):
    store = StateStore(str(tmp_path))
    store.create_dir("c")
    store.write(ContainerState(id="c", status="stopped", bundle="/b"))
    store.remove("c")
    assert not store.exists("c") and store.ids() == []


def test_start_time_detects_reuse():
    me = os.getpid()
    start = proc_start_time(me)
    assert isinstance(start, int) and start > 0
    assert process_alive(me, start)
    assert not process_alive(me, start + 1)  # same pid, another process
    assert not process_alive(0, 0)


def test_zombie_counts_as_gone():
    child = os.fork()
    if child == 0:
        os._exit(0)
    try:
        import time

        for _ in range(200):
            with open(f"/proc/{child}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    break
            time.sleep(0.01)
        assert proc_start_time(child) is None
    finally:
        os.waitpid(child, 0)
