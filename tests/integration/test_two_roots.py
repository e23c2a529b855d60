"""The same container id in two state roots: each has a cgroup of its own, and deleting one
never touches the other (an import or a loopback migration on one host does exactly this)."""

from __future__ import annotations

import os

import pytest

from runtime.container.facade import Container
from runtime.container.host import cgroup_parent
from runtime.errors import CgroupError
from runtime.linux.cgroups import Cgroups
from tests.integration.container_helpers import counter, until

LOOP = "i=0; while true; do i=$((i+1)); echo $i > /tmp/count; sleep 0.05; done"

pytestmark = pytest.mark.usefixtures("container_prereqs")


def test_same_id_in_two_roots_has_two_cgroups_and_delete_spares_the_other(busybox_bundle, container, tmp_path,
                                                                         state_root):
    first = container(busybox_bundle(["sh", "-c", LOOP]))
    other_root = str(tmp_path / "other-root")
    images = str(tmp_path / "ckpt")
    first.checkpoint(leave_running=True, image_path=images)
    Container.restore_new(first.id, images, root=other_root)
    copy = Container.load(first.id, other_root)
    try:
        mine, theirs = (Cgroups.from_dict(c.refresh().cgroups) for c in (first, copy))
        assert mine.path != theirs.path
        assert os.path.dirname(theirs.path) == cgroup_parent(other_root) != cgroup_parent(state_root)
        first.delete(force=True)
        before = counter(copy)
        until(lambda: counter(copy) > before, what="the copy in the other root counts on after the delete")
        assert theirs.pids(), "the other root's container lost its processes"
    finally:
        copy.delete(force=True)
    assert not any(os.path.isdir(p) for p in theirs.paths.values())
    assert not any(os.path.isdir(os.path.dirname(p)) for p in theirs.paths.values()), "the root's parent cgroup stays"


def test_a_cgroup_holding_another_containers_processes_is_refused(busybox_bundle, container, tmp_path):
    first = container(busybox_bundle(["sleep", "1000"], cgroups_path=f"/criu-cr-test-shared-{os.getpid()}"))
    with pytest.raises(CgroupError, match="already holds processes"):
        Container.run("second", busybox_bundle(["sleep", "1000"], cgroups_path=f"/criu-cr-test-shared-{os.getpid()}"),
                      root=str(tmp_path / "r2"))
    assert first.refresh().status == "running" and Cgroups.from_dict(first.refresh().cgroups).pids()
