"""runtime.cr.podman: what a podman archive's restore needs, rebuilt from spec.dump and runc's files.

The spec below is podman 4.3's (abridged) for ``podman run --network ns:PATH``.
"""

from __future__ import annotations

import io
import json
import os
import tarfile

import pytest

from runtime.cr import podman
from runtime.cr.criu_options import MountRecord
from runtime.cr.meta import read_meta
from runtime.errors import ArchiveError, RestoreError

USERDATA = "/var/lib/podman/run/overlay-containers/abc/userdata"


def _spec(root="/nowhere/merged"):
    binds = [("/etc/hosts", "hosts"), ("/dev/shm", "shm"), ("/run/.containerenv", ".containerenv"),
             ("/etc/hostname", "hostname"), ("/etc/resolv.conf", "resolv.conf")]
    return {
        "root": {"path": root}, "hostname": "web",
        "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"},
                   {"destination": "/dev", "type": "tmpfs", "source": "tmpfs"},
                   *({"destination": d, "type": "bind", "source": f"{USERDATA}/{s}", "options": ["bind", "rprivate"]}
                     for d, s in binds),
                   {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup"}],
        "linux": {"namespaces": [{"type": "pid"}, {"type": "network", "path": "/run/netns/n1"},
                                 {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}],
                  "cgroupsPath": "/libpod_parent/libpod-abc", "seccomp": {"defaultAction": "SCMP_ACT_ERRNO"},
                  "maskedPaths": ["/proc/acpi", "/proc/keys"]},
        "annotations": {"io.container.manager": "libpod"},
    }


def test_mounts_keyed_as_runc_keyed_them():
    recs = podman.podman_mounts(_spec(), sources={"/etc/hosts": "/new/hosts"}, masked_files=["/proc/keys"],
                                cgroup_mountpoints=["/sys/fs/cgroup/cpu", "/sys/fs/cgroup/systemd"])
    assert MountRecord(mountpoint="/etc/hosts", kind="bind", detail="/new/hosts") in recs
    assert MountRecord(mountpoint="/dev/shm", kind="bind", detail=f"{USERDATA}/shm") in recs  # no new source given
    # every masked file is one key, "/dev/null": runc's value at dump, which CRIU keeps as the key
    assert MountRecord(mountpoint="/dev/null", kind="devtmpfs", detail="null") in recs
    assert MountRecord(mountpoint="/sys/fs/cgroup/cpu", kind="cgroup", detail="cpu") in recs
    assert MountRecord(mountpoint="/sys/fs/cgroup/systemd", kind="cgroup", detail="name=systemd") in recs
    assert not [r for r in recs if r.mountpoint in ("/proc", "/dev")]


def test_no_cgroup_mount_no_cgroup_records():
    spec = _spec()
    spec["mounts"] = [m for m in spec["mounts"] if m["type"] != "cgroup"]
    recs = podman.podman_mounts(spec, sources={}, masked_files=[], cgroup_mountpoints=["/sys/fs/cgroup/cpu"])
    assert not [r for r in recs if r.kind in ("cgroup", "devtmpfs")]


def test_stdio_from_descriptors():
    assert podman.stdio_names(["/dev/null", "pipe:[11]", "pipe:[12]"]) == {"stdout": "pipe:[11]",
                                                                         "stderr": "pipe:[12]"}
    assert podman.stdio_names(["/dev/pts/0", "/dev/pts/0", "/dev/pts/0"]) == {}  # a tty: nothing to hand in
    assert podman.stdio_names([]) == {}


def test_meta_namespaces_are_the_joined_ones():
    meta = podman.podman_meta(_spec(), container_id="web", bundle="/b", descriptors=["/dev/null", "pipe:[1]"],
                              mounts=(), rootfs_diff=True)
    assert meta.namespaces == {"network": "/run/netns/n1"}
    assert meta.stdio == {"stdout": "pipe:[1]"} and meta.rootfs_diff and meta.container_id == "web"


def test_mount_targets_outside_dev_with_parents():
    # the sources are not here: files (a source that is a directory here gives a directory)
    assert podman.mount_targets(_spec()) == [("etc", True), ("etc/hostname", False), ("etc/hosts", False),
                                             ("etc/resolv.conf", False), ("run", True),
                                             ("run/.containerenv", False)]


def test_fresh_files():
    assert "localhost" in podman.fresh_file("/etc/hosts", "web") and "web" in podman.fresh_file("/etc/hosts", "web")
    assert podman.fresh_file("/etc/hostname", "web") == "web\n"
    assert podman.fresh_file("/run/.containerenv", "web") == ""


def _tar(path, members):
    with tarfile.open(path, "w") as tar:
        for ti, data in members:
            if data is not None:
                ti.size = len(data)
            tar.addfile(ti, io.BytesIO(data) if data is not None else None)


def _ti(name, **kw):
    ti = tarfile.TarInfo(name)
    for k, v in kw.items():
        setattr(ti, k, v)
    return ti


@pytest.fixture
def unpacked(tmp_path):
    """An unpacked podman archive: spec.dump's root is a real directory (0555, as podman's image roots)."""
    root = tmp_path / "rootfs"
    root.mkdir()
    os.chmod(root, 0o555)
    work = tmp_path / "work"
    images = work / "checkpoint"
    images.mkdir(parents=True)
    (images / "network.status").write_text("null")
    (images / "descriptors.json").write_text(json.dumps(["/dev/null", "pipe:[7]", "pipe:[8]"]))
    _tar(images / "rootfs-diff.tar", [(_ti("etc", type=tarfile.DIRTYPE, mode=0o755), None),
                                      (_ti("etc/resolv.conf", mode=0o644), b"nameserver 10.0.0.53\n")])
    _tar(work / "devshm-checkpoint.tar", [(_ti("./", type=tarfile.DIRTYPE, mode=0o1777), None),
                                          (_ti("seg", mode=0o600), b"shared")])
    (work / "deleted.files").write_text(json.dumps(["/www/old.html"]))
    (work / "artifacts").mkdir()
    (work / "artifacts" / "hosts").write_text("10.1.2.3 db\n")
    yield str(work), str(images), _spec(str(root))
    os.chmod(root, 0o755)


def test_prepare_recreates_podmans_files(unpacked):
    work, images, spec = unpacked
    out = podman.prepare_podman_import("a.tar", work, images, spec, "web", "/final/bundle", shm_tmpfs=False)
    src = {m["destination"]: m["source"] for m in out["mounts"] if m["type"] == "bind"}
    assert all(s.startswith(os.path.join(work, "podman") + "/") for s in src.values())
    with open(src["/etc/resolv.conf"]) as f:
        assert f.read() == "nameserver 10.0.0.53\n"  # the container's own, from its filesystem changes
    with open(src["/etc/hosts"]) as f:
        assert f.read() == "10.1.2.3 db\n"  # from the archive's artifacts/
    with open(src["/etc/hostname"]) as f:
        assert f.read() == "web\n"
    assert os.path.getsize(src["/run/.containerenv"]) == 0
    with open(os.path.join(src["/dev/shm"], "seg")) as f:
        assert f.read() == "shared"
    assert "seccomp" not in out["linux"]  # CRIU restores the filters; criu-cr does not install any
    meta = read_meta(images)
    assert meta.stdio == {"stdout": "pipe:[7]", "stderr": "pipe:[8]"} and meta.bundle == "/final/bundle"
    assert not os.path.exists(os.path.join(images, "network.status"))  # podman's null says nothing
    with tarfile.open(os.path.join(images, "rootfs-diff.tar")) as tar:
        names = {os.path.normpath(m.name): m for m in tar}
    assert names["."].mode == 0o555  # the image root's mode, which CRIU checks at "/"
    assert names["run/.containerenv"].isreg() and names["run"].isdir()
    assert names["www/old.html"].ischr() and names["www/old.html"].devmajor == 0  # a whiteout hides it


@pytest.mark.parametrize("listed", [["../../etc/passwd"], ["/"], "not a list", [1]])
def test_hostile_deleted_files_refused(unpacked, listed):
    work, images, spec = unpacked
    with open(os.path.join(work, "deleted.files"), "w") as f:
        json.dump(listed, f)
    with pytest.raises(ArchiveError) as ei:
        podman.prepare_podman_import("a.tar", work, images, spec, "web", "/final/bundle", shm_tmpfs=False)
    assert ei.value.member == "deleted.files"


@pytest.mark.parametrize("member", [
    _ti("../escape", mode=0o644),
    _ti("/abs", mode=0o644),
    _ti("link", type=tarfile.SYMTYPE, linkname="/etc/passwd"),
    _ti("dev", type=tarfile.CHRTYPE),
    _ti("suid", mode=0o4755),
])
def test_hostile_devshm_refused(unpacked, member):
    work, images, spec = unpacked
    _tar(os.path.join(work, "devshm-checkpoint.tar"), [(member, b"x" if member.isreg() else None)])
    with pytest.raises(ArchiveError) as ei:
        podman.prepare_podman_import("a.tar", work, images, spec, "web", "/final/bundle", shm_tmpfs=False)
    assert "devshm-checkpoint.tar" in ei.value.member
    assert not os.path.exists(os.path.join(os.path.dirname(work), "escape"))


def test_terminal_container_refused(unpacked):
    work, images, spec = unpacked
    with open(os.path.join(images, "descriptors.json"), "w") as f:
        json.dump(["/dev/pts/0", "/dev/pts/0", "/dev/pts/0"], f)
    with pytest.raises(RestoreError, match="terminal"):
        podman.prepare_podman_import("a.tar", work, images, spec, "web", "/final/bundle", shm_tmpfs=False)
