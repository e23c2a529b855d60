"""runtime.container.runc: adopt a container that the real runc created (the test runs runc; the product never does)."""

from __future__ import annotations

import json
import os
import random
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from runtime.container.runc import proc_start_time, read_runc_state
from runtime.errors import ContainerNotFoundError, ContainerStateError
from runtime.linux.cgroups import Cgroups
from runtime.net.netns import create_netns, netns_path, setup_veth, teardown
from tests.conftest import require

BUSYBOX = "/bin/busybox"
LOOP = ["sh", "-c", "while true; do sleep 1; done"]


@dataclass
class RuncContainer:
    id: str
    bundle: Path
    runc_root: Path
    pid: int
    cgroups_path: str
    netns: str | None


def _runc(root: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
    """Run runc; output goes to files because `run -d` hands its stdio to the container."""
    runc = shutil.which("runc")
    assert runc is not None
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.run([runc, "--root", str(root), *args], stdin=subprocess.DEVNULL,
                              stdout=out, stderr=err, timeout=30)
        out.seek(0)
        err.seek(0)
        result = subprocess.CompletedProcess(proc.args, proc.returncode, out.read(), err.read())
    if check and result.returncode != 0:
        raise AssertionError(f"runc {' '.join(args)} failed: {result.stderr.decode(errors='replace')}")
    return result


def _bundle(tmp: Path, cgroups_path: str, netns: str | None) -> Path:
    bundle = tmp / "bundle"
    rootfs = bundle / "rootfs"
    for d in ("bin", "proc", "sys", "dev", "tmp"):
        (rootfs / d).mkdir(parents=True)
    shutil.copy2(BUSYBOX, rootfs / "bin" / "busybox")
    for applet in ("sh", "sleep"):
        (rootfs / "bin" / applet).symlink_to("busybox")
    _runc(tmp, "spec", "--bundle", str(bundle))
    config = json.loads((bundle / "config.json").read_text())
    config["process"]["terminal"] = False
    config["process"]["args"] = LOOP
    config["linux"]["cgroupsPath"] = cgroups_path
    if netns:
        for ns in config["linux"]["namespaces"]:
            if ns["type"] == "network":
                ns["path"] = netns_path(netns)
    (bundle / "config.json").write_text(json.dumps(config))
    return bundle


def _start(tmp: Path, netns: str | None = None) -> Iterator[RuncContainer]:
    require(shutil.which("runc") is not None, "runc not installed (apt-get install runc)")
    require(os.path.exists(BUSYBOX), "busybox-static not installed")
    cid = f"criu-cr-adopt-{secrets.token_hex(4)}"
    cgroups_path = f"/criu-cr-test-{cid}"
    runc_root = tmp / "runc-root"
    bundle = _bundle(tmp, cgroups_path, netns)
    pid_file = tmp / "pid"
    try:
        _runc(runc_root, "run", "-d", "--bundle", str(bundle), "--pid-file", str(pid_file), cid)
        yield RuncContainer(id=cid, bundle=bundle, runc_root=runc_root, pid=int(pid_file.read_text()),
                            cgroups_path=cgroups_path, netns=netns)
    finally:
        _runc(runc_root, "kill", cid, "KILL", check=False)
        _runc(runc_root, "delete", "-f", cid, check=False)
        Cgroups(cgroups_path, cid).remove()  # runc may leave empty directories behind


@pytest.fixture
def runc_ctr(tmp_path: Path, need_root: None) -> Iterator[RuncContainer]:
    yield from _start(tmp_path)


@pytest.fixture
def runc_ctr_in_netns(tmp_path: Path, need_root: None) -> Iterator[RuncContainer]:
    suffix = secrets.token_hex(3)
    name, host_if = f"criu-cr-t-{suffix}", f"vh{suffix}"
    base = 4 * random.randrange(1, 63)
    try:
        create_netns(name)
        setup_veth(netns=name, host_ifname=host_if, ns_ifname="eth0",
                   host_addr=f"10.231.1.{base + 1}/30", ns_addr=f"10.231.1.{base + 2}/30")
        yield from _start(tmp_path, name)
    finally:
        teardown(netns=name, host_ifname=host_if)


def test_adopt_reads_runc_state(runc_ctr: RuncContainer) -> None:
    a = read_runc_state(runc_ctr.id, str(runc_ctr.runc_root))
    assert a.id == runc_ctr.id
    assert a.init_pid == runc_ctr.pid
    assert a.init_start_time == proc_start_time(runc_ctr.pid)
    assert a.status == "running"
    assert a.bundle == str(runc_ctr.bundle)
    assert a.rootfs == str(runc_ctr.bundle / "rootfs")
    assert a.created
    # the namespaces the config asked for, all created by runc
    assert a.namespaces == {"pid": None, "network": None, "ipc": None, "uts": None, "mount": None}
    for ns_type, name in (("pid", "pid"), ("network", "net"), ("mount", "mnt"), ("uts", "uts"), ("ipc", "ipc")):
        path = a.namespace_paths[ns_type]
        assert path == f"/proc/{runc_ctr.pid}/ns/{name}"
        assert os.readlink(path) != os.readlink(f"/proc/self/ns/{name}")  # not the host's
    # every cgroup directory exists, holds the init pid, and sits at the cgroupsPath
    assert a.cgroup_paths
    for ctrl, path in a.cgroup_paths.items():
        assert str(runc_ctr.pid) in Path(path, "cgroup.procs").read_text().split(), ctrl
    cg = a.cgroups()
    assert all(rel == runc_ctr.cgroups_path for _, rel in cg.cg_roots())
    assert runc_ctr.pid in cg.pids()


def test_adopted_cgroups_pause_the_container(runc_ctr: RuncContainer) -> None:
    a = read_runc_state(runc_ctr.id, str(runc_ctr.runc_root))
    cg = a.cgroups()
    cg.freeze()
    try:
        assert read_runc_state(runc_ctr.id, str(runc_ctr.runc_root)).status == "paused"
        assert b"paused" in _runc(runc_ctr.runc_root, "state", runc_ctr.id).stdout  # runc agrees
    finally:
        cg.thaw()
    assert read_runc_state(runc_ctr.id, str(runc_ctr.runc_root)).status == "running"


def test_adopt_joined_netns(runc_ctr_in_netns: RuncContainer) -> None:
    c = runc_ctr_in_netns
    assert c.netns is not None
    a = read_runc_state(c.id, str(c.runc_root))
    assert a.namespaces["network"] == netns_path(c.netns)
    assert os.stat(a.namespace_paths["network"]).st_ino == os.stat(netns_path(c.netns)).st_ino


def test_killed_container_is_not_adopted(runc_ctr: RuncContainer) -> None:
    _runc(runc_ctr.runc_root, "kill", runc_ctr.id, "KILL")
    for _ in range(200):
        if proc_start_time(runc_ctr.pid) is None:
            break
        time.sleep(0.02)
    with pytest.raises(ContainerStateError, match="exited"):
        read_runc_state(runc_ctr.id, str(runc_ctr.runc_root))
    assert read_runc_state(runc_ctr.id, str(runc_ctr.runc_root), allow_stopped=True).status == "stopped"


def test_unknown_id(tmp_path: Path, need_root: None) -> None:
    with pytest.raises(ContainerNotFoundError):
        read_runc_state("no-such-container", str(tmp_path))
