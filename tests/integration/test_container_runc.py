"""runc's default spec runs under criu-cr unchanged; a runc-created container is adopted.

runc is executed here only: by the test, to produce a spec to compare with and
a container to adopt. The product never runs it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time

import pytest

from runtime.container import Container
from runtime.errors import ContainerStateError
from runtime.testing import build_busybox_bundle, default_spec
from tests.conftest import require

from .container_helpers import cli, need_container_prereqs, runc_available, until


@pytest.fixture(autouse=True)
def _prereqs() -> None:
    need_container_prereqs()


def _runc_spec(tmp_path) -> dict:
    require(runc_available(), "needs runc (apt-get install runc)")
    d = tmp_path / "runc-spec"
    d.mkdir()
    subprocess.run(["runc", "spec"], cwd=d, check=True, capture_output=True)
    return json.loads((d / "config.json").read_text())


def test_default_spec_matches_runc_spec(tmp_path):
    assert default_spec() == _runc_spec(tmp_path)


def test_run_detached_runc_default_spec_unchanged(tmp_path, state_root):
    """`runc spec`'s config, untouched (args ["sh"], terminal true, readonly root): runs and ends.

    With no terminal, sh reads EOF from /dev/null and exits 0; `run -d` must
    return at once without holding our stdout (a held pipe would hang `$(...)`).
    """
    spec = _runc_spec(tmp_path)
    bundle = build_busybox_bundle(str(tmp_path / "bundle"), spec=spec)
    with open(os.path.join(bundle, "config.json"), "w") as f:
        json.dump(spec, f)  # exactly runc's file, not the builder's adjusted copy
    started = time.monotonic()
    r = cli(state_root, "run", "-d", "--bundle", bundle, "runcdefault", timeout=20)
    assert r.returncode == 0, r.stderr
    assert time.monotonic() - started < 10
    ctr = Container.load("runcdefault", state_root)
    assert ctr.wait(timeout=10) == 0
    assert cli(state_root, "delete", "runcdefault").returncode == 0


def test_runc_default_spec_with_a_long_running_process(tmp_path, state_root):
    spec = _runc_spec(tmp_path)
    spec["process"]["args"] = ["sh", "-c", "hostname; touch /x || echo readonly-root; sleep 1000"]
    bundle = build_busybox_bundle(str(tmp_path / "bundle"), spec=spec)
    with open(os.path.join(bundle, "config.json"), "w") as f:
        json.dump(spec, f)
    r = cli(state_root, "run", "-d", "--bundle", bundle, "longrun", timeout=20)
    assert r.returncode == 0, r.stderr
    assert r.stdout == ""
    ctr = Container.load("longrun", state_root)
    assert ctr.status == "running"
    until(lambda: b"readonly-root" in ctr.logs(), what="the container's output")
    assert ctr.logs().startswith(b"runc\n")
    r = cli(state_root, "logs", "longrun")
    assert "readonly-root" in r.stdout
    r = cli(state_root, "list")
    assert r.returncode == 0 and "longrun" in r.stdout and "running" in r.stdout
    listed = json.loads(cli(state_root, "list", "--json").stdout)
    assert [c["id"] for c in listed] == ["longrun"]
    r = cli(state_root, "exec", "longrun", "cat", "/proc/1/cmdline")
    assert r.returncode == 0 and r.stdout == "sleep\x001000\x00"  # sh exec()s its last command
    # What the default spec asks of the process and the filesystem.
    with open(f"/proc/{ctr.init_pid}/limits") as f:
        nofile = next(line for line in f if line.startswith("Max open files")).split()
    assert nofile[3:5] == ["1024", "1024"]
    with open(f"/proc/{ctr.init_pid}/status") as f:
        assert "NoNewPrivs:\t1" in f.read()
    # Masked: files read empty (/dev/null), directories are empty tmpfs; /proc/sys is read-only.
    masked_file = next(p for p in ("/proc/keys", "/proc/timer_list", "/proc/kcore") if os.path.exists(p))
    masked = ctr.exec(["sh", "-c", f"wc -c < {masked_file}; ls /sys/firmware | wc -l; "
                                   "echo 1 > /proc/sys/net/ipv4/ip_forward"])
    assert masked.stdout.split() == [b"0", b"0"], masked
    assert b"Read-only" in masked.stderr
    dev = ctr.exec(["sh", "-c", "ls /dev; readlink /dev/ptmx; echo ok > /dev/null"])
    for name in (b"null", b"zero", b"urandom", b"tty", b"pts", b"shm", b"mqueue", b"fd"):
        assert name in dev.stdout.split(), dev
    assert b"pts/ptmx" in dev.stdout and dev.exit_code == 0
    r = cli(state_root, "ps", "longrun")
    assert str(ctr.init_pid) in r.stdout.split()
    assert cli(state_root, "pause", "longrun").returncode == 0
    assert json.loads(cli(state_root, "state", "longrun").stdout)["status"] == "paused"
    assert cli(state_root, "resume", "longrun").returncode == 0
    assert cli(state_root, "kill", "longrun", "KILL").returncode == 0
    assert ctr.wait(timeout=10) == 137
    assert cli(state_root, "delete", "longrun").returncode == 0
    assert not os.path.exists(ctr.directory)


@pytest.fixture
def runc_container(tmp_path, busybox_bundle):
    """A container created and started by runc (in a private runc root), always removed."""
    require(runc_available(), "needs runc (apt-get install runc)")
    runc_root = str(tmp_path / "runc-root")
    cid = f"adopt{os.getpid()}"
    bundle = busybox_bundle(["sleep", "1000"], hostname="runc-made",
                            cgroups_path=f"/criu-cr-adopt-test/{cid}")
    base = ["runc", "--root", runc_root]
    # The container inherits runc's stdio: give it files, so nothing waits for a pipe's EOF.
    with open(tmp_path / "runc.log", "w+") as log:
        r = subprocess.run([*base, "run", "-d", "--bundle", bundle, cid], timeout=30,
                           stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        log.seek(0)
        assert r.returncode == 0, log.read()
    yield runc_root, cid
    subprocess.run([*base, "delete", "-f", cid], timeout=30, capture_output=True)
    for h in os.scandir("/sys/fs/cgroup"):
        for d in (os.path.join(h.path, "criu-cr-adopt-test"), "/sys/fs/cgroup/criu-cr-adopt-test"):
            if os.path.isdir(d):
                try:
                    os.rmdir(d)
                except OSError:
                    pass
    shutil.rmtree(runc_root, ignore_errors=True)


def test_adopt_runc_container(runc_container, state_root):
    runc_root, cid = runc_container
    with open(os.path.join(runc_root, cid, "state.json")) as f:
        runc_state = json.load(f)
    ctr = Container.adopt_runc(cid, runc_root=runc_root, root=state_root)
    st = ctr.state()
    assert st["status"] == "running"
    assert st["pid"] == runc_state["init_process_pid"]
    assert st["adoptedFrom"] == "runc"
    assert st["monitorPid"] == 0
    assert st["namespaces"]["pid"] == runc_state["namespace_paths"]["NEWPID"]
    assert set(st["cgroups"]["paths"].values()) >= {p for p in runc_state["cgroup_paths"].values()
                                                     if os.path.isdir(p) and "criu-cr-adopt-test" in p}
    assert ctr.ps() == [st["pid"]]
    r = ctr.exec(["hostname"])
    assert r.exit_code == 0 and r.stdout == b"runc-made\n"
    ctr.pause()
    assert ctr.status == "paused"
    ctr.resume()
    # Via the CLI too, then forget it: runc still owns it.
    r = cli(state_root, "state", cid)
    assert json.loads(r.stdout)["adoptedFrom"] == "runc"
    with pytest.raises(ContainerStateError, match="force"):
        ctr.delete()
    ctr.delete(force=True)
    assert not os.path.exists(ctr.directory)
