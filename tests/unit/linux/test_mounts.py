"""runtime.linux.mounts pure parts: option parsing, mountinfo, cgroup bind discovery."""

from __future__ import annotations

from runtime.linux import mounts
from runtime.linux import syscalls as sc


def test_parse_options_flags_propagation_and_data():
    flags, prop, data = mounts.parse_options(["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620",
                                              "gid=5"])
    assert flags == sc.MS_NOSUID | sc.MS_NOEXEC
    assert prop == 0
    assert data == "newinstance,ptmxmode=0666,mode=0620,gid=5"


def test_parse_options_bind_ro_rprivate():
    flags, prop, data = mounts.parse_options(["rbind", "ro", "rprivate"])
    assert flags == sc.MS_BIND | sc.MS_REC | sc.MS_RDONLY
    assert prop == sc.MS_PRIVATE | sc.MS_REC
    assert data == ""


def test_later_option_wins():
    assert mounts.parse_options(["ro", "rw"])[0] == 0
    assert mounts.parse_options(["rw", "ro"])[0] == sc.MS_RDONLY


def test_mounts_under(tmp_path):
    info = tmp_path / "mountinfo"
    info.write_text(
        "22 27 0:21 / /proc rw - proc proc rw\n"
        "90 27 0:50 / /run/criu-cr/web/rootfs rw - overlay overlay rw,lowerdir=/b\n"
        "91 27 0:51 / /run/criu-cr/web2/rootfs rw - overlay overlay rw\n"
        "92 27 0:52 / /run/criu-cr/a\\040b rw - tmpfs tmpfs rw\n"
    )
    assert mounts.mounts_under("/run/criu-cr/web", str(info)) == ["/run/criu-cr/web/rootfs"]
    assert mounts.mounts_under("/run/criu-cr/a b", str(info)) == ["/run/criu-cr/a b"]


def test_cgroup_binds_of_this_process():
    binds = mounts.cgroup_binds()
    assert binds, "every supported host mounts some cgroup hierarchy"
    for src, name in binds:
        assert src.startswith("/sys/fs/cgroup")
        assert not name.startswith("/")
