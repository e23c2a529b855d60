"""The container's filesystem: overlay root on the host, mounts inside the new mount namespace.

Host side: the writable root is an overlay (lower = bundle rootfs, upper/work
under the container directory) mounted at ``<root>/<id>/rootfs`` in the host
mount namespace, so CRIU can later use it as the restore root.

Container side (run by the init process after ``unshare(CLONE_NEWNS)``):
``/`` made private recursively, the spec's mounts, default devices,
``pivot_root``, then masked and read-only paths and a read-only root.
"""

from __future__ import annotations

import errno
import os
import stat

from runtime.linux import syscalls as sc
from runtime.linux.fsmode import makedirs_private, open_private
from runtime.linux.procfs import mounts_under, read_mountinfo
from runtime.oci.spec import Mount, Spec

__all__ = [
    "parse_options", "mount_overlay", "unmount", "mounts_under", "cgroup_binds",
    "setup_rootfs", "pivot_into", "finish_rootfs", "DEFAULT_DEVICES", "ROOT_PROPAGATION",
]

# option -> (flags to set, flags to clear)
_FLAGS = {
    "ro": (sc.MS_RDONLY, 0), "rw": (0, sc.MS_RDONLY),
    "nosuid": (sc.MS_NOSUID, 0), "suid": (0, sc.MS_NOSUID),
    "nodev": (sc.MS_NODEV, 0), "dev": (0, sc.MS_NODEV),
    "noexec": (sc.MS_NOEXEC, 0), "exec": (0, sc.MS_NOEXEC),
    "sync": (sc.MS_SYNCHRONOUS, 0), "async": (0, sc.MS_SYNCHRONOUS),
    "dirsync": (sc.MS_DIRSYNC, 0), "remount": (sc.MS_REMOUNT, 0),
    "mand": (sc.MS_MANDLOCK, 0), "nomand": (0, sc.MS_MANDLOCK),
    "atime": (0, sc.MS_NOATIME), "noatime": (sc.MS_NOATIME, 0),
    "diratime": (0, sc.MS_NODIRATIME), "nodiratime": (sc.MS_NODIRATIME, 0),
    "relatime": (sc.MS_RELATIME, 0), "norelatime": (0, sc.MS_RELATIME),
    "strictatime": (sc.MS_STRICTATIME, 0), "nostrictatime": (0, sc.MS_STRICTATIME),
    "lazytime": (sc.MS_LAZYTIME, 0), "nolazytime": (0, sc.MS_LAZYTIME),
    "bind": (sc.MS_BIND, 0), "rbind": (sc.MS_BIND | sc.MS_REC, 0),
}
_PROPAGATION = {
    "private": sc.MS_PRIVATE, "rprivate": sc.MS_PRIVATE | sc.MS_REC,
    "shared": sc.MS_SHARED, "rshared": sc.MS_SHARED | sc.MS_REC,
    "slave": sc.MS_SLAVE, "rslave": sc.MS_SLAVE | sc.MS_REC,
    "unbindable": sc.MS_UNBINDABLE, "runbindable": sc.MS_UNBINDABLE | sc.MS_REC,
}
# Flags that a bind mount only takes through a second, remounting call.
_BIND_REMOUNT_FLAGS = (sc.MS_RDONLY | sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC | sc.MS_NOATIME
                       | sc.MS_NODIRATIME | sc.MS_RELATIME | sc.MS_STRICTATIME)

# linux.rootfsPropagation -> what "/" of the new mount namespace becomes. The default is
# private (runc uses rslave): nothing propagates between the container and the host, which
# keeps CRIU's view of the container's mounts self-contained. Shared kinds are refused.
ROOT_PROPAGATION = {
    "": sc.MS_PRIVATE | sc.MS_REC, "private": sc.MS_PRIVATE, "rprivate": sc.MS_PRIVATE | sc.MS_REC,
    "slave": sc.MS_SLAVE, "rslave": sc.MS_SLAVE | sc.MS_REC,
}

DEFAULT_DEVICES = ("null", "zero", "full", "random", "urandom", "tty")
_DEV_SYMLINKS = (("/proc/self/fd", "fd"), ("/proc/self/fd/0", "stdin"), ("/proc/self/fd/1", "stdout"),
                 ("/proc/self/fd/2", "stderr"), ("pts/ptmx", "ptmx"))


def parse_options(options: tuple[str, ...] | list[str]) -> tuple[int, int, str]:
    """Split OCI mount options into (mount flags, propagation flags, data string). Pure."""
    flags = 0
    propagation = 0
    data: list[str] = []
    for opt in options:
        if opt in _FLAGS:
            set_, clear = _FLAGS[opt]
            flags = (flags | set_) & ~clear
        elif opt in _PROPAGATION:
            propagation |= _PROPAGATION[opt]
        else:
            data.append(opt)
    return flags, propagation, ",".join(data)


# -- host side ------------------------------------------------------------------

def mount_overlay(lower: str, upper: str, work: str, target: str) -> None:
    """Mount an overlay at ``target`` (directories are created). Raises OSError.

    The upper directory is the container's ``/`` (0755, as a root directory
    is), the mount point 0755 as well, the work directory ours (0700);
    whatever the umask.
    """
    makedirs_private(upper, 0o755)
    makedirs_private(work)
    makedirs_private(target, 0o755)
    for p in (lower, upper, work):
        if any(c in p for c in ",:\\"):
            raise OSError(errno.EINVAL, "overlay: path holds ',', ':' or '\\'", p)
    sc.mount("overlay", target, "overlay", 0, f"lowerdir={lower},upperdir={upper},workdir={work}")


def unmount(target: str) -> None:
    """Unmount ``target``; lazily when busy; nothing when it is not a mount point."""
    try:
        sc.umount2(target, 0)
    except OSError as exc:
        if exc.errno in (errno.EINVAL, errno.ENOENT):
            return
        if exc.errno != errno.EBUSY:
            raise
        sc.umount2(target, sc.MNT_DETACH)


def cgroup_binds(proc_cgroup: str = "/proc/self/cgroup") -> list[tuple[str, str]]:
    """(host cgroup dir of this process, name under /sys/fs/cgroup) per hierarchy.

    Read before a cgroup namespace is made (paths must be the host's). The
    name is "" on a pure cgroup v2 host (bind straight onto the mount point).
    """
    with open(proc_cgroup, encoding="utf-8") as f:
        lines = [ln.rstrip("\n").split(":", 2) for ln in f if ln.strip()]
    binds = []
    for e in read_mountinfo():
        mp, root, fstype, super_opts = e.mountpoint, e.root, e.fstype, e.super_option_set
        if fstype not in ("cgroup", "cgroup2") or not mp.startswith("/sys/fs/cgroup"):
            continue
        for _hid, controllers, path in lines:
            if fstype == "cgroup2" and controllers == "":
                pass
            elif fstype == "cgroup" and controllers and set(controllers.split(",")) <= super_opts:
                pass
            else:
                continue
            rel = os.path.relpath(path, root) if path.startswith(root) else path.lstrip("/")
            src = os.path.normpath(os.path.join(mp, rel))
            name = os.path.relpath(mp, "/sys/fs/cgroup")
            binds.append((src, "" if name == "." else name))
            break
    return binds


# -- container side ---------------------------------------------------------------

def _in_root(rootfs: str, dest: str) -> str:
    """Host path of container path ``dest``, refusing symlinks that lead out of the rootfs."""
    target = os.path.join(rootfs, dest.lstrip("/"))
    real = os.path.realpath(target)
    if real != rootfs and not real.startswith(rootfs + "/"):
        raise OSError(errno.EXDEV, "mount destination resolves outside the rootfs", dest)
    return real


def _make_target(target: str, is_dir: bool) -> None:
    if is_dir:
        os.makedirs(target, exist_ok=True)
    elif not os.path.exists(target):
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "a"):
            pass


def _bind(src: str, target: str, flags: int, propagation: int = 0) -> None:
    _make_target(target, os.path.isdir(src))
    sc.mount(src, target, None, sc.MS_BIND | (flags & sc.MS_REC))
    if flags & _BIND_REMOUNT_FLAGS:
        sc.mount(None, target, None, sc.MS_BIND | sc.MS_REMOUNT | (flags & _BIND_REMOUNT_FLAGS))
    if propagation:
        sc.mount(None, target, None, propagation)


def _mount_cgroup(target: str, flags: int, binds: list[tuple[str, str]]) -> None:
    bind_flags = (flags & _BIND_REMOUNT_FLAGS) | sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC
    if len(binds) == 1 and binds[0][1] == "":
        _bind(binds[0][0], target, bind_flags)
        return
    os.makedirs(target, exist_ok=True)
    sc.mount("tmpfs", target, "tmpfs", sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC, "mode=755")
    for src, name in binds:
        _bind(src, os.path.join(target, name), bind_flags | sc.MS_BIND)
    if flags & sc.MS_RDONLY:
        sc.mount(None, target, None, sc.MS_REMOUNT | sc.MS_RDONLY | sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC)


def _mount_entry(rootfs: str, m: Mount, binds: list[tuple[str, str]]) -> None:
    target = _in_root(rootfs, m.destination)
    flags, propagation, data = parse_options(m.options)
    if m.is_bind:
        _bind(m.source, target, flags, propagation)
        return
    if m.type == "cgroup":
        _mount_cgroup(target, flags, binds)
        return
    _make_target(target, True)
    sc.mount(m.source or m.type, target, m.type, flags, data or None)
    if propagation:
        sc.mount(None, target, None, propagation)


def _setup_devices(rootfs: str, spec: Spec) -> None:
    dev = _in_root(rootfs, "/dev")
    os.makedirs(dev, exist_ok=True)
    for name in DEFAULT_DEVICES:
        target = os.path.join(dev, name)
        if os.path.exists(target) and not os.path.isfile(target):
            continue
        _bind(f"/dev/{name}", target, 0)
    for link, name in _DEV_SYMLINKS:
        path = os.path.join(dev, name)
        if not os.path.lexists(path):
            os.symlink(link, path)
    kinds = {"c": stat.S_IFCHR, "u": stat.S_IFCHR, "b": stat.S_IFBLK, "p": stat.S_IFIFO}
    for d in spec.devices:
        path = _in_root(rootfs, d.path)
        if os.path.lexists(path):
            continue
        os.makedirs(os.path.dirname(path), exist_ok=True)
        os.mknod(path, kinds[d.type] | (d.file_mode if d.file_mode is not None else 0o666),
                 os.makedev(d.major, d.minor))
        os.chown(path, d.uid or 0, d.gid or 0)


def setup_rootfs(spec: Spec, rootfs: str, binds: list[tuple[str, str]]) -> None:
    """In a new mount namespace: private propagation, spec mounts and devices under ``rootfs``.

    ``binds`` comes from :func:`cgroup_binds`. Raises OSError naming the path.
    """
    sc.mount(None, "/", None, ROOT_PROPAGATION[spec.rootfs_propagation])
    rootfs = os.path.realpath(rootfs)
    for m in spec.mounts:
        _mount_entry(rootfs, m, binds)
    _setup_devices(rootfs, spec)


def pivot_into(rootfs: str) -> None:
    """Make ``rootfs`` the root: ``pivot_root(".", ".")`` then detach the old root stacked on it."""
    os.chdir(rootfs)
    sc.pivot_root(".", ".")
    sc.umount2(".", sc.MNT_DETACH)
    os.chdir("/")


def finish_rootfs(spec: Spec) -> None:
    """After pivot_root: masked paths, read-only paths, read-only root. Missing paths are skipped."""
    for path in spec.masked_paths:
        try:
            if os.path.isdir(path):
                sc.mount("tmpfs", path, "tmpfs", sc.MS_RDONLY)
            else:
                sc.mount("/dev/null", path, None, sc.MS_BIND)
        except FileNotFoundError:
            continue
    for path in spec.readonly_paths:
        try:
            sc.mount(path, path, None, sc.MS_BIND | sc.MS_REC)
            sc.mount(None, path, None, sc.MS_BIND | sc.MS_REMOUNT | sc.MS_RDONLY | sc.MS_REC)
        except FileNotFoundError:
            continue
    if spec.root.readonly:
        sc.mount(None, "/", None, sc.MS_BIND | sc.MS_REMOUNT | sc.MS_RDONLY)


# -- the overlay's upper layer, kept with a checkpoint ----------------------------

def archive_upper(upper: str, tar_path: str) -> None:
    """Write the overlay's upper directory (the container's filesystem changes) to ``tar_path``.

    Whiteouts (0/0 character devices) and ownership are kept. Raises OSError (tarfile's
    own errors too, so that callers need not import tarfile to catch them).
    """
    import tarfile

    try:
        with open_private(tar_path, "wb") as f, \
                tarfile.open(fileobj=f, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for name in sorted(os.listdir(upper)):
                tar.add(os.path.join(upper, name), arcname=name)
    except tarfile.TarError as exc:
        raise OSError(f"{tar_path}: {exc}") from exc


def extract_upper(tar_path: str, upper: str) -> None:
    """Unpack an :func:`archive_upper` tarball into a new container's upper directory.

    The tarball may come from another machine: members that would land
    outside ``upper`` (absolute, ``..``, links leading out) are refused
    (tarfile's "tar" filter), and so is any device node but overlayfs's
    whiteouts (0/0 character devices) -- a container without CAP_MKNOD
    could not have made one. Raises OSError, tarfile.TarError (naming the member).
    """
    import tarfile

    def only_whiteouts(member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo:
        member = tarfile.tar_filter(member, dest)
        if (member.ischr() or member.isblk()) and not (member.ischr() and member.devmajor == 0
                                                       and member.devminor == 0):
            raise tarfile.FilterError(f"{member.name!r} is a device node ({member.devmajor}:{member.devminor}), "
                                      "not a whiteout: refused")
        return member

    with tarfile.open(tar_path, "r") as tar:
        tar.extractall(upper, numeric_owner=True, filter=only_whiteouts)


def bind_mount(source: str, target: str) -> None:
    """Bind ``source`` (recursively) onto ``target`` in this mount namespace. Raises OSError."""
    sc.mount(source, target, None, sc.MS_BIND | sc.MS_REC)


# -- removing a directory that something may be mounted under ---------------------

def unmount_under(path: str) -> list[str]:
    """Unmount everything mounted at or below ``path``, deepest first; return what was unmounted.

    CRIU leaves its ``.criu.cgyard.*`` mounts of the host's cgroup
    hierarchies in the image directory when it is killed during a restore;
    this is how they go. Raises OSError when a mount point cannot be unmounted.
    """
    done = []
    for mp in sorted(mounts_under(path), key=len, reverse=True):
        unmount(mp)
        done.append(mp)
    return done


def remove_tree(path: str) -> None:
    """Remove the directory ``path`` and everything in it, never through a mount point.

    What is mounted below ``path`` is unmounted first (a recursive remove
    would otherwise delete what the mount shows: a host cgroup tree, a
    bind-mounted directory); if anything is still mounted there, nothing is
    removed. A missing ``path`` is fine. Raises OSError (EBUSY naming the mount).
    """
    import shutil

    if not os.path.lexists(path):
        return
    unmount_under(path)
    left = mounts_under(path)
    if left:
        raise OSError(errno.EBUSY, "still mounted; not removing what it shows", left[0])
    shutil.rmtree(path)
