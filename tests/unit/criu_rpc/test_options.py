"""CriuOptions and its parts: validation on construction, criu_opts mapping."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from criu_rpc._pb import rpc_pb2
from criu_rpc.errors import InvalidOptionError
from criu_rpc.option_types import (CLONE_NEWNET, CgroupMode, CgroupRoot, ExternalMount, InheritFd, JoinNamespace,
                                   NetworkLock, PageServer, PreDumpMode)
from criu_rpc.options import CriuOptions


def opts(**kw):
    kw.setdefault("images_dir", "/imgs")
    return CriuOptions(**kw)


def invalid(field: str, **kw) -> InvalidOptionError:
    with pytest.raises(InvalidOptionError) as info:
        opts(**kw)
    assert info.value.field == field, info.value
    return info.value


# -- construction ---------------------------------------------------------

def test_minimal_options_send_only_the_images_dir() -> None:
    msg = opts().to_proto()
    assert msg == rpc_pb2.criu_opts(images_dir_fd=-1, images_dir="/imgs")


def test_keyword_only_and_frozen() -> None:
    with pytest.raises(TypeError):
        CriuOptions("/imgs")  # type: ignore[misc]
    o = opts()
    with pytest.raises(dataclasses.FrozenInstanceError):
        o.pid = 3  # type: ignore[misc]


def test_paths_are_normalised_to_str_and_kept() -> None:
    o = opts(images_dir=Path("/a/b"), work_dir=Path("/w"), root=Path("/r"))
    assert (o.images_dir, o.work_dir, o.root) == ("/a/b", "/w", "/r")


def test_images_dir_xor_fd() -> None:
    with pytest.raises(InvalidOptionError) as info:
        CriuOptions()
    assert info.value.field == "images_dir"
    invalid("images_dir", images_dir_fd=3)
    assert CriuOptions(images_dir_fd=3).to_proto().images_dir_fd == 3


def test_work_dir_and_fd_conflict() -> None:
    invalid("work_dir", work_dir="/w", work_dir_fd=4)


@pytest.mark.parametrize("level", [-1, 5, True, "4", 2.0])
def test_log_level_range_and_type(level) -> None:
    invalid("log_level", log_level=level)


@pytest.mark.parametrize("name", ["sub/dump.log", "..", ".", ""])
def test_log_file_is_a_bare_name(name: str) -> None:
    invalid("log_file", log_file=name)


def test_parent_img_must_be_relative() -> None:
    err = invalid("parent_img", parent_img="/abs/parent")
    assert "relative" in err.problem
    assert opts(parent_img="../pre1").to_proto().parent_img == "../pre1"


def test_root_must_be_absolute() -> None:
    invalid("root", root="rootfs")


@pytest.mark.parametrize("kw, field", [
    ({"pid": 0}, "pid"),
    ({"pid": -4}, "pid"),
    ({"timeout": -1}, "timeout"),
    ({"ghost_limit": 1 << 32}, "ghost_limit"),
    ({"status_fd": -1}, "status_fd"),
    ({"leave_running": 1}, "leave_running"),
    ({"shell_job": "yes"}, "shell_job"),
    ({"manage_cgroups": "yes"}, "manage_cgroups"),
    ({"external": "mnt[a]:b"}, "external"),
    ({"external": ("",)}, "external"),
    ({"inherit_fd": [("pipe:[1]", 3)]}, "inherit_fd"),
    ({"ps": ("host", 1)}, "ps"),
    ({"raw": b"\x08\x01"}, "raw"),
    ({"lsm_profile": ""}, "lsm_profile"),
])
def test_invalid_values_name_their_field(kw, field) -> None:
    invalid(field, **kw)


def test_conflicting_switches() -> None:
    invalid("leave_stopped", leave_running=True, leave_stopped=True)
    invalid("tcp_close", tcp_established=True, tcp_close=True)
    invalid("empty_ns", empty_ns=CLONE_NEWNET,
            join_ns=[JoinNamespace(ns="net", ns_file="/proc/1/ns/net")])


def test_empty_ns_only_net() -> None:
    err = invalid("empty_ns", empty_ns=CLONE_NEWNET | 0x04000000)
    assert "net" in err.problem
    assert opts(empty_ns=CLONE_NEWNET).to_proto().empty_ns == CLONE_NEWNET


def test_same_inherit_fd_twice_is_rejected() -> None:
    invalid("inherit_fd", inherit_fd=[InheritFd(key="a", fd=5), InheritFd(key="b", fd=5)])


def test_enums_accept_names_case_insensitively() -> None:
    o = opts(network_lock="nftables", manage_cgroups_mode="Soft", pre_dump_mode="vm_read")
    assert o.network_lock is NetworkLock.NFTABLES
    assert o.manage_cgroups_mode is CgroupMode.SOFT
    assert o.pre_dump_mode is PreDumpMode.VM_READ
    err = invalid("network_lock", network_lock="ebtables")
    assert "iptables" in err.problem


def test_sequences_become_tuples_and_options_hash() -> None:
    o = opts(external=["net[1]:x"], inherit_fd=[InheritFd(key="k", fd=3)])
    assert o.external == ("net[1]:x",)
    assert isinstance(o.inherit_fd, tuple)
    assert hash(o) == hash(opts(external=("net[1]:x",), inherit_fd=(InheritFd(key="k", fd=3),)))


def test_replace_revalidates() -> None:
    with pytest.raises(InvalidOptionError):
        dataclasses.replace(opts(), log_level=9)


# -- parts ----------------------------------------------------------------

def test_parts_validate() -> None:
    with pytest.raises(InvalidOptionError):
        InheritFd(key="", fd=3)
    with pytest.raises(InvalidOptionError):
        InheritFd(key="pipe:[1]", fd=-1)
    with pytest.raises(InvalidOptionError) as info:
        JoinNamespace(ns="pid", ns_file="/proc/1/ns/pid")
    assert "pid namespace" in info.value.problem
    with pytest.raises(InvalidOptionError):
        JoinNamespace(ns="bogus", ns_file="/x")
    with pytest.raises(InvalidOptionError):
        CgroupRoot(path="relative")
    with pytest.raises(InvalidOptionError):
        PageServer()
    with pytest.raises(InvalidOptionError):
        PageServer(address="h", port=70000)
    with pytest.raises(InvalidOptionError):
        ExternalMount(key="k", value="")


# -- to_proto ---------------------------------------------------------------

def test_full_mapping() -> None:
    raw_in = rpc_pb2.criu_opts(cpu_cap=1)  # required fields may stay unset
    o = opts(
        pid=42, log_level=4, log_file="dump.log", leave_running=True, shell_job=True,
        tcp_established=True, tcp_skip_in_flight=True, ext_unix_sk=True, file_locks=True,
        root="/rootfs", external=("net[4026531992]:extNet",),
        inherit_fd=(InheritFd(key="pipe:[77]", fd=5),),
        join_ns=(JoinNamespace(ns="net", ns_file="/run/netns/t", extra_opt="x"),),
        ext_mounts=(ExternalMount(key="/etc/hosts", value="hosts"),),
        cg_root=(CgroupRoot(path="/ct1"), CgroupRoot(ctrl="memory", path="/m")),
        manage_cgroups=True, manage_cgroups_mode=CgroupMode.FULL, freeze_cgroup="/sys/fs/cgroup/freezer/ct",
        network_lock=NetworkLock.SKIP, lazy_pages=True, ps=PageServer(address="10.231.0.1", port=27),
        parent_img="../p", track_mem=True, auto_dedup=True, orphan_pts_master=True,
        rst_sibling=True, lsm_profile="apparmor:x", lsm_mount_context="ctx", timeout=10,
        notify_scripts=True, evasive_devices=True, ghost_limit=1 << 20, raw=raw_in,
    )
    msg = o.to_proto(images_dir_fd=9, work_dir_fd=10)
    assert msg.images_dir_fd == 9 and not msg.HasField("images_dir")
    assert msg.work_dir_fd == 10
    assert (msg.pid, msg.log_level, msg.log_file) == (42, 4, "dump.log")
    for flag in ("leave_running", "shell_job", "tcp_established", "tcp_skip_in_flight",
                 "ext_unix_sk", "file_locks", "lazy_pages", "track_mem", "auto_dedup",
                 "orphan_pts_master", "rst_sibling", "notify_scripts", "evasive_devices"):
        assert getattr(msg, flag) is True, flag
    assert not msg.HasField("tcp_close")
    assert msg.root == "/rootfs"
    assert list(msg.external) == ["net[4026531992]:extNet"]
    assert [(i.key, i.fd) for i in msg.inherit_fd] == [("pipe:[77]", 5)]
    assert [(j.ns, j.ns_file, j.extra_opt) for j in msg.join_ns] == [("net", "/run/netns/t", "x")]
    assert [(m.key, m.val) for m in msg.ext_mnt] == [("/etc/hosts", "hosts")]
    assert [(c.HasField("ctrl"), c.ctrl, c.path) for c in msg.cg_root] == [
        (False, "", "/ct1"), (True, "memory", "/m")]
    assert msg.manage_cgroups is True and msg.manage_cgroups_mode == rpc_pb2.FULL
    assert msg.freeze_cgroup == "/sys/fs/cgroup/freezer/ct"
    assert msg.network_lock == rpc_pb2.SKIP
    assert (msg.ps.address, msg.ps.port, msg.ps.HasField("fd")) == ("10.231.0.1", 27, False)
    assert msg.parent_img == "../p"
    assert (msg.lsm_profile, msg.lsm_mount_context, msg.timeout) == ("apparmor:x", "ctx", 10)
    assert msg.ghost_limit == 1 << 20
    assert msg.cpu_cap == 1  # from raw
    msg.SerializeToString()  # every required field is set


def test_raw_is_copied_and_merged_last() -> None:
    raw = rpc_pb2.criu_opts(log_level=1)
    o = opts(log_level=4, raw=raw)
    raw.log_level = 3
    assert o.to_proto().log_level == 1
    assert o.raw is not raw


def test_unset_enums_keep_crius_defaults() -> None:
    msg = opts().to_proto()
    assert not msg.HasField("network_lock")
    assert msg.network_lock == rpc_pb2.IPTABLES  # CRIU's default, not sent


def test_fd_arguments_of_to_proto() -> None:
    o = CriuOptions(images_dir_fd=3, work_dir_fd=4)
    assert o.to_proto().work_dir_fd == 4
    assert o.to_proto(images_dir_fd=3).images_dir_fd == 3
    with pytest.raises(InvalidOptionError):
        o.to_proto(images_dir_fd=5)
    with pytest.raises(InvalidOptionError):
        opts().to_proto(images_dir_fd=-2)
    assert not opts(work_dir="/w").to_proto().HasField("work_dir_fd")


def test_cgroup_v2_is_named_by_an_empty_controller() -> None:
    # cgroup v2 is "" in /proc/PID/cgroup: a cg_root for it alone and a dump list holding it
    msg = opts(cg_root=(CgroupRoot(path="/all"), CgroupRoot(ctrl="", path="/v2")),
               cgroup_dump_controller=("cpu,cpuacct", "")).to_proto(images_dir_fd=3)
    assert [(c.HasField("ctrl"), c.ctrl, c.path) for c in msg.cg_root] == [(False, "", "/all"), (True, "", "/v2")]
    assert list(msg.cgroup_dump_controller) == ["cpu,cpuacct", ""]
    with pytest.raises(InvalidOptionError):
        opts(external=("",))  # elsewhere an empty name stays an error
