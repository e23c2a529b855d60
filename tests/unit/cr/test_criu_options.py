"""runtime.cr.criu_options: what CRIU is told about a container, in both directions (pure)."""

from __future__ import annotations

import pytest

from criu_rpc import CgroupRoot, CriuOptions, ExternalMount, InheritFd, JoinNamespace
from runtime.cr import criu_options
from runtime.cr.criu_options import DUMP, RESTORE, CrContext, MountRecord

# A criu-cr container's mountinfo on a hybrid-cgroup host (shape as read from a real one).
MOUNTINFO = """\
600 500 0:80 / / rw,relatime - overlay overlay rw,lowerdir=/b/rootfs,upperdir=/s/c/overlay/upper
601 600 0:81 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw
602 600 0:82 / /dev rw,nosuid - tmpfs tmpfs rw,size=65536k,mode=755
603 602 0:83 / /dev/pts rw,nosuid,noexec - devpts devpts rw,gid=5,mode=620,ptmxmode=666
604 602 0:84 / /dev/shm rw,nosuid,nodev,noexec - tmpfs shm rw,size=65536k
605 600 0:85 / /sys ro,nosuid,nodev,noexec - sysfs sysfs ro
606 605 0:86 / /sys/fs/cgroup ro,nosuid,nodev,noexec - tmpfs tmpfs ro,mode=755
607 606 0:29 /criu-cr/c1 /sys/fs/cgroup/cpu rw,nosuid - cgroup cgroup rw,cpu
608 606 0:33 /criu-cr/c1 /sys/fs/cgroup/memory rw,nosuid - cgroup cgroup rw,memory
609 606 0:38 /criu-cr/c1 /sys/fs/cgroup/systemd rw,nosuid - cgroup cgroup rw,name=systemd
610 606 0:39 /criu-cr/c1 /sys/fs/cgroup/unified rw,nosuid - cgroup2 cgroup2 rw
611 602 0:5 /null /dev/null rw,nosuid - devtmpfs udev rw,size=12334492k,mode=755
612 602 0:5 /tty /dev/tty rw,nosuid - devtmpfs udev rw,size=12334492k,mode=755
613 601 0:87 / /proc/acpi ro,relatime - tmpfs tmpfs ro
614 601 0:5 /null /proc/kcore rw,nosuid - devtmpfs udev rw,size=12334492k,mode=755
615 601 0:81 /bus /proc/bus ro,relatime - proc proc rw
616 601 0:81 /sys /proc/sys ro,relatime - proc proc rw
617 600 254:1 /srv/data /data rw,relatime - ext4 /dev/vda rw
618 600 0:90 / /sys/fs/cgroup/x\\040y rw - cgroup2 cgroup2 rw
"""


def test_external_mounts_finds_what_comes_from_outside():
    recs = criu_options.external_mounts(MOUNTINFO, {"/data": "/srv/data"})
    by_mp = {r.mountpoint: r for r in recs}
    # cgroup hierarchies bound at the container's cgroup (not cgroupns-relative ones)
    assert by_mp["/sys/fs/cgroup/cpu"] == MountRecord(mountpoint="/sys/fs/cgroup/cpu", kind="cgroup", detail="cpu")
    assert by_mp["/sys/fs/cgroup/systemd"].detail == "name=systemd"
    assert by_mp["/sys/fs/cgroup/unified"].detail == ""
    assert "/sys/fs/cgroup/x y" not in by_mp
    # host device nodes bound in
    assert by_mp["/dev/null"] == MountRecord(mountpoint="/dev/null", kind="devtmpfs", detail="/null")
    assert by_mp["/dev/tty"].detail == "/tty"
    # a masked path shows the same file as /dev/null: CRIU binds it from that (external) mount
    assert "/proc/kcore" not in by_mp
    # a bind from the host, named by the spec's source
    assert by_mp["/data"] == MountRecord(mountpoint="/data", kind="bind", detail="/srv/data")
    # what CRIU recreates itself: the root, filesystems it mounts, binds of the container's own /proc
    for internal in ("/", "/proc", "/dev", "/dev/pts", "/sys/fs/cgroup", "/proc/acpi", "/proc/bus", "/proc/sys"):
        assert internal not in by_mp


def test_mount_record_round_trips():
    rec = MountRecord(mountpoint="/dev/null", kind="devtmpfs", detail="/null")
    assert MountRecord.from_dict(rec.to_dict()) == rec


def _ctx(**kw):
    base = dict(rootfs="/s/c/rootfs", pid=4242, namespaces={"network": "/run/netns/n1"},
                ns_inodes={"network": 4026532000},
                mounts=(MountRecord(mountpoint="/dev/null", kind="devtmpfs", detail="/null"),
                        MountRecord(mountpoint="/sys/fs/cgroup/memory", kind="cgroup", detail="memory"),
                        MountRecord(mountpoint="/data", kind="bind", detail="/srv/old")),
                cgroup_paths={"memory": "/sys/fs/cgroup/memory/criu-cr/c2", "": "/sys/fs/cgroup/unified/criu-cr/c2"},
                cg_roots=(("", "/criu-cr/c2"), ("memory", "/criu-cr/c2")),
                freezer_path="/sys/fs/cgroup/freezer/criu-cr/c1",
                bind_sources={"/data": "/srv/new"}, stdio_fds={"pipe:[11]": 7, "pipe:[12]": 8},
                network_lock="nftables")
    base.update(kw)
    return CrContext(**base)


def test_dump_direction():
    plan = criu_options.build(_ctx(), DUMP)
    kwargs = dict(plan.fields)
    assert plan.open_paths == () and plan.inherit == () and plan.direction is DUMP
    assert kwargs["pid"] == 4242 and kwargs["root"] == "/s/c/rootfs"
    assert kwargs["external"] == ("net[4026532000]:extRootNetNS",)
    assert kwargs["ext_mounts"] == tuple(ExternalMount(key=m, value=m)
                                         for m in ("/dev/null", "/sys/fs/cgroup/memory", "/data"))
    assert kwargs["freeze_cgroup"] == "/sys/fs/cgroup/freezer/criu-cr/c1"
    assert kwargs["manage_cgroups"] is True and kwargs["network_lock"] == "nftables"
    assert "inherit_fd" not in kwargs and "rst_sibling" not in kwargs and "cg_root" not in kwargs
    opts = plan.options(images_dir="/tmp", log_file="dump.log", log_level=4)  # CRIU's options accept all of it
    assert opts.pid == 4242 and opts.inherit_fd == ()


def test_restore_direction():
    plan = criu_options.build(_ctx(tcp_established=True, file_locks=True), RESTORE)
    kwargs = dict(plan.fields)
    # the netns is handed back as an fd under the key it was dumped with
    assert plan.open_paths == (("extRootNetNS", "/run/netns/n1"),)
    assert "external" not in kwargs and "pid" not in kwargs and "freeze_cgroup" not in kwargs
    assert dict((m.key, m.value) for m in kwargs["ext_mounts"]) == {
        "/dev/null": "/dev/null",
        "/sys/fs/cgroup/memory": "/sys/fs/cgroup/memory/criu-cr/c2",  # the target container's cgroup
        "/data": "/srv/new",  # the target spec's source wins over the recorded one
    }
    assert set(plan.inherit) == {InheritFd(key="pipe:[11]", fd=7), InheritFd(key="pipe:[12]", fd=8)}
    # v2's root under an empty controller, not CRIU's default root (which would catch other hierarchies)
    assert kwargs["cg_root"] == (CgroupRoot(ctrl="", path="/criu-cr/c2"), CgroupRoot(ctrl="memory", path="/criu-cr/c2"))
    assert kwargs["manage_cgroups_mode"] == "soft" and "cgroup_dump_controller" not in kwargs
    assert kwargs["rst_sibling"] is True and kwargs["tcp_established"] is True and kwargs["file_locks"] is True
    netns = InheritFd(key="extRootNetNS", fd=9)
    opts = plan.options(images_dir="/tmp", log_file="restore.log", log_level=4, opened=[netns])
    assert set(opts.inherit_fd) == set(plan.inherit) | {netns}


# /proc/PID/cgroup of a container's init on a hybrid host with co-mounted cpu,cpuacct, a
# hierarchy criu-cr leaves alone (net_cls,net_prio) and another tool's named one.
PROC_CGROUP = """\
12:name=elogind:/
11:net_cls,net_prio:/
9:name=systemd:/criu-cr/c1
4:memory:/criu-cr/c1
2:cpu,cpuacct:/criu-cr/c1
0::/criu-cr/c1
"""
MANAGED = {"memory": "/m", "cpu": "/c", "cpuacct": "/a", "name=systemd": "/s", "": "/u"}


def test_dump_names_only_the_managed_hierarchies_as_the_kernel_does():
    kwargs = criu_options.build(_ctx(proc_cgroup=PROC_CGROUP, cgroup_paths=MANAGED), DUMP).fields
    assert kwargs["cgroup_dump_controller"] == ("name=systemd", "memory", "cpu,cpuacct", "")
    assert kwargs["manage_cgroups_mode"] == "soft"
    CriuOptions(images_dir="/tmp", **kwargs)  # "" (v2) is a valid controller name there


def test_a_container_without_cgroups_of_its_own_has_none_walked_nor_restored():
    dump = criu_options.build(_ctx(proc_cgroup=PROC_CGROUP, cgroup_paths={}, mounts=()), DUMP).fields
    # never an empty cgroup_dump_controller: to CRIU that means every hierarchy
    assert dump["manage_cgroups_mode"] == "ignore" and "cgroup_dump_controller" not in dump
    rst = criu_options.build(_ctx(cg_roots=(), mounts=()), RESTORE).fields
    assert rst["manage_cgroups_mode"] == "ignore" and "cg_root" not in rst


def test_leave_running_and_tcp_close_only_where_they_belong():
    ctx = _ctx(leave_running=True, tcp_close=True, tcp_skip_in_flight=True)
    dump = criu_options.build(ctx, DUMP).fields
    assert dump["leave_running"] is True and dump["tcp_skip_in_flight"] is True and "tcp_close" not in dump
    rst = criu_options.build(ctx, RESTORE).fields
    assert "leave_running" not in rst and "tcp_skip_in_flight" not in rst and rst["tcp_close"] is True


def test_restore_names_a_cgroup_it_cannot_place():
    ctx = _ctx(cgroup_paths={"": "/sys/fs/cgroup/criu-cr/c2"})  # pure v2 host: no v1 memory hierarchy
    with pytest.raises(LookupError, match="/sys/fs/cgroup/memory.*'memory'"):
        criu_options.build(ctx, RESTORE)


def test_a_direction_is_a_direction():
    with pytest.raises(TypeError, match="Direction"):
        criu_options.build(_ctx(), "sideways")


def test_runtime_exports_every_public_name():
    import runtime

    for name in runtime.__all__:
        assert getattr(runtime, name).__name__ == name
    with pytest.raises(AttributeError):
        runtime.NoSuchThing  # noqa: B018


def test_joined_uts_and_ipc_namespaces_are_joined_again_at_restore():
    joined = {"network": "/run/netns/n1", "uts": "/proc/77/ns/uts", "ipc": "/proc/77/ns/ipc"}
    plan = criu_options.build(_ctx(namespaces=joined), RESTORE)
    assert plan.fields["join_ns"] == (JoinNamespace(ns="uts", ns_file="/proc/77/ns/uts"),
                                      JoinNamespace(ns="ipc", ns_file="/proc/77/ns/ipc"))
    plan.options(images_dir="/tmp", log_file="restore.log", log_level=4)  # CRIU's options accept it
    assert "join_ns" not in criu_options.build(_ctx(namespaces=joined), DUMP).fields  # dumped as any namespace
    assert "join_ns" not in criu_options.build(_ctx(), RESTORE).fields  # nothing joined, nothing to join


def test_pages_to_a_page_server_and_on_a_parent():
    """A migration's dump sends its pages to the destination's page server; a pre-copy's final dump
    builds on the last pre-dump (parent_img, with memory tracking). A restore gets neither."""
    from criu_rpc import PageServer

    ps = PageServer(fd=9)
    dump = criu_options.build(_ctx(page_server=ps, parent_img="../pre/3"), DUMP)
    assert dump.fields["ps"] == ps and dump.fields["parent_img"] == "../pre/3" and dump.fields["track_mem"] is True
    opts = dump.options(images_dir="/tmp", log_file="dump.log", log_level=4)
    assert opts.ps == ps and opts.parent_img == "../pre/3"
    plain = criu_options.build(_ctx(), DUMP).fields
    assert not {"ps", "parent_img", "track_mem"} & set(plain)
    restore = criu_options.build(_ctx(page_server=ps, parent_img="../pre/3"), RESTORE).fields
    assert not {"ps", "parent_img", "track_mem"} & set(restore)


def test_a_private_netns_left_empty_both_ways_as_runc_does():
    from criu_rpc.option_types import CLONE_NEWNET

    ctx = CrContext(rootfs="/r", pid=7, netns_empty=True)
    for direction in (DUMP, RESTORE):
        assert criu_options.build(ctx, direction).fields["empty_ns"] == CLONE_NEWNET
    assert "empty_ns" not in criu_options.build(CrContext(rootfs="/r", pid=7), DUMP).fields
    # a joined netns is external, never "empty"; CRIU refuses empty_ns beside join_ns
    joined = CrContext(rootfs="/r", pid=7, netns_empty=True, namespaces={"network": "/run/netns/x"},
                       ns_inodes={"network": 5})
    assert "empty_ns" not in criu_options.build(joined, DUMP).fields
    with pytest.raises(LookupError):
        criu_options.build(CrContext(rootfs="/r", netns_empty=True, namespaces={"uts": "/proc/1/ns/uts"}), RESTORE)
