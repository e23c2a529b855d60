"""Cgroup hierarchies criu-cr does not manage are left alone by checkpoint, restore and delete.

Another tool's v1 named hierarchy holds every container's processes at its
root. CRIU used to dump it whole into cgroup.img and the restore recreated
it below the container's cgroup path: it grew with every checkpoint/restore
(issue 14). The ``foreign_cgroup`` fixture mounts a throwaway one
(``name=ccrt-<hex>``) and removes it afterwards, even when the test fails.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess

import pytest

from runtime.container.facade import Container
from runtime.linux import syscalls as sc
from runtime.linux.cghier import is_managed
from runtime.linux.cgroups import Cgroups, controller_keys
from runtime.testing.foreign_cgroup import ForeignHierarchy, foreign_hierarchy
from tests.conftest import require, require_criu
from tests.integration.container_helpers import cli, need_container_prereqs

LOOP = "i=0; while true; do i=$((i+1)); echo $i > /tmp/count; sleep 0.05; done"


@pytest.fixture(autouse=True)
def _prereqs() -> None:
    need_container_prereqs()
    require_criu()
    require(os.path.isdir("/sys/fs/cgroup/unified") or not os.path.exists("/sys/fs/cgroup/cgroup.controllers"),
            "needs cgroup v1 (named hierarchies)")


def _ids() -> list[str]:
    tag = secrets.token_hex(3)
    return [f"fc{tag}-{i}" for i in range(3)]


def _ours(h: ForeignHierarchy, ids: list[str]) -> list[str]:
    """Cgroups of the hierarchy that are about this test's containers."""
    return [d for d in h.dirs() if any(i in d.split("/") for i in ids)]


def _unexplained(h: ForeignHierarchy, ids: list[str]) -> list[str]:
    """Every cgroup of the hierarchy but those another criu-cr run on this host made meanwhile.

    (A parallel test run with a criu-cr older than this fix restores its own
    containers at criu-cr/<their id> here; those are not this test's doing.)
    """
    def others(d: str) -> bool:
        parts = d.split("/")
        return parts[0].startswith("criu-cr") and (len(parts) == 1 or parts[1] not in ids)

    return [d for d in h.dirs() if not others(d)]


def test_repeated_checkpoint_restore_leaves_a_foreign_hierarchy_as_it_was(foreign_cgroup, busybox_bundle,
                                                                          container):
    h: ForeignHierarchy = foreign_cgroup
    ids = _ids()
    ctrs = [container(busybox_bundle(["sh", "-c", LOOP]), id=cid) for cid in ids]
    assert all(h.cgroup_of(c.init_pid) == "/" for c in ctrs)  # at the root, as every process
    assert _unexplained(h, ids) == []
    for _round in range(2):
        for c in ctrs:
            res = c.checkpoint()
            with open(os.path.join(res.image_dir, "cgroup.img"), "rb") as f:
                img = f.read()
            assert h.controllers.encode() not in img  # never dumped, not even as a membership
            assert b"name=systemd" in img  # while the hierarchies criu-cr manages are
            c.restore()
            assert c.status == "running"
            # where the restoring process is: its root; and nothing made for the container
            assert h.cgroup_of(c.init_pid) == "/"
            assert _unexplained(h, ids) == [], "the foreign hierarchy grew"
    for c in ctrs:
        c.delete(force=True)
    assert _ours(h, ids) == []


def test_a_copy_restored_into_a_new_container_leaves_it_alone_too(foreign_cgroup, busybox_bundle, container,
                                                                  state_root, tmp_path):
    h: ForeignHierarchy = foreign_cgroup
    ids = _ids()[:2]
    ctr = container(busybox_bundle(["sh", "-c", LOOP]), id=ids[0])
    images = str(tmp_path / "ckpt")
    ctr.checkpoint(leave_running=True, image_path=images)
    Container.restore_new(ids[1], images, root=state_root)
    copy = Container.load(ids[1], state_root)
    try:
        assert h.cgroup_of(copy.init_pid) == "/" and h.cgroup_of(ctr.init_pid) == "/"
        assert _unexplained(h, ids) == []
    finally:
        copy.delete(force=True)
    assert _ours(h, ids) == []


def test_delete_removes_what_older_restores_left_in_a_foreign_hierarchy(foreign_cgroup, busybox_bundle,
                                                                       container):
    h: ForeignHierarchy = foreign_cgroup
    [cid] = _ids()[:1]
    ctr = container(busybox_bundle(["sh", "-c", LOOP]), id=cid)
    # what a restore before the fix left: the hierarchy recreated under the container's path
    path = Cgroups.from_dict(ctr.refresh().cgroups).path.lstrip("/")
    stray = os.path.join(h.path, path, path)
    os.makedirs(stray)
    ctr.delete(force=True)
    assert not os.path.exists(os.path.join(h.path, path))


def test_check_names_the_hierarchies_and_which_are_managed(foreign_cgroup, state_root):
    h: ForeignHierarchy = foreign_cgroup
    out = cli(state_root, "check", "--json")
    facts = json.loads(out.stdout)
    by = {x["controllers"]: x for x in facts["cgroups"]["hierarchies"]}
    assert by[h.controllers]["managed"] is False and by[h.controllers]["mountpoints"] == [h.path]
    keys = controller_keys()  # what criu-cr makes a container's cgroup in on this host
    assert all(x["managed"] == is_managed(c, keys) for c, x in by.items()) and len(by) > 1
    assert any(h.controllers in f["finding"] for f in facts["findings"])
    text = cli(state_root, "check").stdout
    assert f"not managed: {h.controllers} ({h.path})" in text


def test_the_throwaway_hierarchy_is_gone_after_removal(tmp_path):
    with subprocess.Popen(["sleep", "30"]) as child:
        try:
            with foreign_hierarchy(str(tmp_path)) as h:
                # a cgroup still holding a process at removal (as another criu-cr's restored
                # container would): the removal moves it to the root, the hierarchy has no controllers
                os.makedirs(os.path.join(h.path, "a", "b"))
                with open(os.path.join(h.path, "a", "b", "cgroup.procs"), "w") as f:
                    f.write(str(child.pid))
                assert h.cgroup_of(child.pid) == "/a/b"
                # unmounted while it has cgroups (as when a CRIU's cgroup yard goes), then mounted
                # again by name: the kernel now keeps it past the next clean unmount
                sc.umount2(h.path)
                assert h.exists()
                sc.mount("none", h.path, "cgroup", 0, f"none,name={h.name}")
                assert os.path.isdir(os.path.join(h.path, "a", "b"))
            assert child.poll() is None  # untouched otherwise
        finally:
            child.kill()
    with open("/proc/self/mountinfo") as f:
        mountinfo = f.read()
    assert h.path not in mountinfo and h.name not in mountinfo and not os.path.exists(h.path)
    # a new process is not in it: the kernel dropped the hierarchy
    out = subprocess.run(["cat", "/proc/self/cgroup"], capture_output=True, text=True, check=True).stdout
    assert h.controllers not in out
