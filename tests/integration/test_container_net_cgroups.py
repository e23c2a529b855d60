"""A container in a pre-created netns serves HTTP to the host; it sits in its cgroups with limits."""

from __future__ import annotations

import os
import uuid

import pytest

from runtime.linux.cgroups import read_proc_cgroup
from runtime.testing import http_get, wait_tcp

from .container_helpers import need_container_prereqs, until


@pytest.fixture(autouse=True)
def _prereqs() -> None:
    need_container_prereqs()


@pytest.fixture
def cgroup_parent():
    """A parent cgroup path unique to the test; its directories are removed afterwards.

    Request it before ``container`` so it is torn down after the container's delete.
    """
    parent = f"/criu-cr-test-{uuid.uuid4().hex[:8]}"
    yield parent
    for entry in os.scandir("/sys/fs/cgroup"):
        for d in (os.path.join(entry.path, parent.lstrip("/")),
                  os.path.join("/sys/fs/cgroup", parent.lstrip("/"))):
            if os.path.isdir(d):
                try:
                    os.rmdir(d)
                except OSError:
                    pass


def test_http_served_in_precreated_netns(busybox_bundle, container, netns):
    bundle = busybox_bundle(["httpd", "-f", "-p", "80", "-h", "/www"], netns_path=netns.path,
                            files={"/www/index.html": "hello from criu-cr\n"})
    ctr = container(bundle)
    wait_tcp(netns.ip, 80, timeout=10)
    status, body = http_get(netns.ip, 80, "/index.html")
    assert status == 200
    assert body == b"hello from criu-cr\n"
    assert ctr.state()["namespaces"]["network"] == netns.path
    assert os.stat(f"/proc/{ctr.init_pid}/ns/net").st_ino == os.stat(netns.path).st_ino


def test_processes_sit_in_cgroups_path_with_limits(cgroup_parent, busybox_bundle, container):
    path = f"{cgroup_parent}/web"
    limit = 64 * 1024 * 1024
    bundle = busybox_bundle(["sh", "-c", "sleep 1000 & sleep 1000"], cgroups_path=path,
                            memory_limit=limit, pids_limit=50)
    ctr = container(bundle)
    until(lambda: len(ctr.ps()) == 2, what="the shell to start its background sleep")
    for pid in [ctr.init_pid, *ctr.ps()]:
        groups = read_proc_cgroup(pid)
        assert groups["memory"] == path, groups  # v1 line
        assert groups["pids"] == path
        assert groups[""] == path  # the v2 (unified) line
    assert len(ctr.ps()) == 2
    paths = ctr.state()["cgroups"]["paths"]
    if "memory" in paths:  # cgroup v1 / hybrid
        with open(os.path.join(paths["memory"], "memory.limit_in_bytes")) as f:
            assert int(f.read()) == limit
    else:
        with open(os.path.join(paths[""], "memory.max")) as f:
            assert int(f.read()) == limit
    with open(os.path.join(paths.get("pids", paths.get("")), "pids.max")) as f:
        assert f.read().strip() == "50"
    # Inside, /sys/fs/cgroup shows the container's own cgroup, read-only.
    r = ctr.exec(["sh", "-c", "cat /sys/fs/cgroup/memory/memory.limit_in_bytes; touch /sys/fs/cgroup/x"])
    assert r.stdout.strip() == str(limit).encode()
    assert b"Read-only" in r.stderr
