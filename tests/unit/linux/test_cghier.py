"""runtime.linux.cghier: the host's cgroup hierarchies and which ones criu-cr manages (pure parts)."""

from __future__ import annotations

import os

from runtime.linux import cghier
from runtime.linux.cghier import Hierarchy

# /proc/self/cgroup and the cgroup lines of /proc/self/mountinfo of a hybrid host with
# another tool's named hierarchy (name=x on /mnt/x, also bound elsewhere), a v1
# hierarchy criu-cr does not use (net_cls,net_prio) and one mounted nowhere (name=gone).
PROC_CGROUP = """\
14:name=gone:/
13:name=x:/
11:net_cls,net_prio:/
9:name=systemd:/user.slice
2:cpu,cpuacct:/
1:memory:/a/b
0::/user.slice
"""
MOUNTINFO = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
33 31 0:30 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
34 31 0:31 / /sys/fs/cgroup/net_cls,net_prio rw,relatime - cgroup cgroup rw,net_cls,net_prio
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw,nsdelegate
90 22 0:60 / /mnt/x rw,relatime - cgroup none rw,name=x
91 22 0:60 /sub /srv/my\\040x rw,relatime - cgroup none rw,name=x
95 22 0:61 / /srv/named rw,relatime - cgroup none rw,name=xy
"""
# What a criu-cr container gets on that host (runtime.linux.cgroups.controller_keys).
KEYS = {"cpu", "cpuacct", "memory", "name=systemd", ""}


def test_parse_proc_cgroup():
    assert cghier.parse_proc_cgroup("2:cpu,cpuacct:/a:b\n0::/\n") == [(2, "cpu,cpuacct", "/a:b"), (0, "", "/")]


def test_is_managed():
    assert cghier.is_managed("memory", KEYS)
    assert cghier.is_managed("cpu,cpuacct", KEYS)  # a co-mount of a managed controller is that hierarchy
    assert cghier.is_managed("name=systemd", KEYS)
    assert cghier.is_managed("", KEYS)
    assert not cghier.is_managed("", {"memory"})  # no v2 on a pure v1 host
    assert not cghier.is_managed("name=x", KEYS)
    assert not cghier.is_managed("net_cls,net_prio", KEYS)


def test_managed_fields_are_the_kernels_names_in_its_order():
    assert cghier.managed_fields(PROC_CGROUP, KEYS) == ("name=systemd", "cpu,cpuacct", "memory", "")
    assert cghier.managed_fields(PROC_CGROUP, ()) == ()


def test_classify_joins_mounts_and_marks_what_is_managed():
    by = {h.controllers: h for h in cghier.classify(PROC_CGROUP, MOUNTINFO, KEYS)}
    assert list(by) == ["name=gone", "name=x", "net_cls,net_prio", "name=systemd", "cpu,cpuacct", "memory", ""]
    assert by["name=x"] == Hierarchy(hid=13, controllers="name=x",
                                     mounts=(("/mnt/x", "/"), ("/srv/my x", "/sub")), managed=False)
    assert by["name=gone"].mounts == () and not by["name=gone"].managed  # name=xy is another hierarchy
    assert by["name=systemd"].managed and by["name=systemd"].mounts == (("/sys/fs/cgroup/systemd", "/"),)
    assert by[""].managed and by[""].label == "v2" and by[""].mounts == (("/sys/fs/cgroup/unified", "/"),)
    assert not by["net_cls,net_prio"].managed
    assert by["name=x"].to_dict() == {"hid": 13, "controllers": "name=x", "label": "name=x", "version": 1,
                                      "mountpoints": ["/mnt/x", "/srv/my x"], "managed": False}
    assert by[""].to_dict()["version"] == 2


def test_remove_strays_removes_only_in_unmanaged_hierarchies_deepest_first(tmp_path):
    # plain directories stand in for cgroup mounts: rmdir works the same on empty ones
    mine = tmp_path / "x" / "criu-cr" / "c1"
    (mine / "criu-cr" / "c1").mkdir(parents=True)  # the nesting CRIU used to make
    other = tmp_path / "x" / "criu-cr" / "c2"
    other.mkdir()
    managed = tmp_path / "m" / "criu-cr" / "c1"
    managed.mkdir(parents=True)
    hs = [Hierarchy(hid=13, controllers="name=x", mounts=((str(tmp_path / "x"), "/"),)),
          Hierarchy(hid=1, controllers="memory", mounts=((str(tmp_path / "m"), "/"),), managed=True)]
    removed, failed = cghier.remove_strays("/criu-cr/c1", hs)
    assert failed == [] and removed[-1] == str(mine) and len(removed) == 3
    assert not mine.exists() and other.is_dir() and managed.is_dir()
    assert cghier.remove_strays("/", hs) == ([], [])  # never a hierarchy's root


def test_host_hierarchies_reads_this_process():
    if not os.path.exists("/proc/self/cgroup"):
        return
    hs = cghier.host_hierarchies(managed_keys=())
    assert hs and not any(h.managed for h in hs)
