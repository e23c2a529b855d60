"""Restoring podman's checkpoint archives: what criu-cr.json would have said, rebuilt.

An archive of ``podman container checkpoint --export`` (podman 4.3, runc,
CRIU) holds CRIU's images, podman's ``spec.dump`` and runc's
``descriptors.json`` but no criu-cr.json. Everything a restore needs is
found there, the way runc told CRIU at dump:

- namespaces: the ``linux.namespaces`` entries with a path (the
  pre-created netns of ``--network ns:PATH``); ``--netns`` replaces it;
- external mounts, keyed by their mount point as runc keys them: the
  spec's bind mounts and the cgroup v1 hierarchies under /sys/fs/cgroup;
  the masked paths that are files are all keyed ``/dev/null`` (runc's
  value at dump, which CRIU records as the key);
- stdio: ``descriptors.json`` names the init's fds 0-2 as CRIU recorded
  them (``pipe:[inode]`` for conmon's pipes); new pipes are handed in.

podman's bind mounts come from its own run directory, which does not exist
here. They are recreated in the import's ``podman/`` directory as a user
would expect: /etc/hosts, /etc/hostname and /etc/resolv.conf from the
container's own filesystem changes when it wrote them (rootfs-diff.tar) or
the archive's ``artifacts/`` when it holds them (podman 4.3's is empty),
else fresh minimal files; /run/.containerenv empty; /dev/shm a tmpfs
holding ``devshm-checkpoint.tar``. The bundle's spec points at them. The files
listed in ``deleted.files`` become overlay whiteouts in rootfs-diff.tar.
"""

from __future__ import annotations

import copy
import os
import stat
import tarfile
from collections.abc import Iterable
from typing import Any

from runtime.cr.archive import ARTIFACTS_DIR, DELETED_FILES, DEVSHM_TAR, load_json_member
from runtime.cr.criu_options import MountRecord
from runtime.cr.layout import NETWORK_FILE, ROOTFS_DIFF
from runtime.cr.meta import CheckpointMeta
from runtime.errors import ArchiveError, RestoreError
from runtime.linux import syscalls as sc
from runtime.linux.fsmode import DIR_MODE

__all__ = ["DESCRIPTORS", "FILES_DIR", "podman_mounts", "podman_meta", "stdio_names", "fresh_file", "mount_targets",
           "prepare_podman_import"]

DESCRIPTORS = "descriptors.json"  # runc's: what CRIU calls the init's fds 0, 1, 2
FILES_DIR = "podman"  # in the import directory: the recreated sources of podman's bind mounts
DEVSHM_LIMIT = 1 << 30  # what /dev/shm may unpack to
SHM_OPTIONS = "mode=1777,size=65536k"  # podman's default --shm-size (64m)
_CGROUP_DIR_TO_CTRL = {"systemd": "name=systemd"}
# The files podman generates for a container, and how criu-cr recreates them when the archive lacks them.
_GENERATED = ("/etc/hosts", "/etc/hostname", "/etc/resolv.conf", "/run/.containerenv", "/dev/shm")


def fresh_file(destination: str, hostname: str) -> str:
    """The minimal content of a file podman generates, for ``destination``. Pure."""
    if destination == "/etc/hosts":
        return (f"127.0.0.1\tlocalhost localhost.localdomain\n::1\tlocalhost localhost.localdomain\n"
                f"127.0.1.1\t{hostname}\n" if hostname else
                "127.0.0.1\tlocalhost localhost.localdomain\n::1\tlocalhost localhost.localdomain\n")
    if destination == "/etc/hostname":
        return f"{hostname}\n" if hostname else ""
    return ""  # /etc/resolv.conf: no resolver known here; /run/.containerenv: empty, as podman's


def podman_mounts(spec: dict[str, Any], *, sources: dict[str, str], masked_files: Iterable[str],
                  cgroup_mountpoints: Iterable[str]) -> tuple[MountRecord, ...]:
    """The external mounts of a podman container, keyed as runc keyed them at dump. Pure.

    ``sources``: bind mount destination -> its new source here (a bind mount
    without one keeps the spec's source). ``masked_files``: the masked paths
    that are files (runc bound /dev/null on them). ``cgroup_mountpoints``:
    the host's cgroup v1 hierarchies (runc bound each at /sys/fs/cgroup/NAME
    when the spec mounts a cgroup there).
    """
    records: list[MountRecord] = []
    has_cgroup = False
    for m in spec.get("mounts") or ():
        dest = m.get("destination", "")
        if m.get("type") == "bind" or "bind" in (m.get("options") or ()) or "rbind" in (m.get("options") or ()):
            records.append(MountRecord(mountpoint=dest, kind="bind", detail=sources.get(dest, m.get("source", ""))))
        elif m.get("type") == "cgroup" and dest == "/sys/fs/cgroup":
            has_cgroup = True
    if list(masked_files):  # runc named every /dev/null bound on a masked file "/dev/null" in the images
        records.append(MountRecord(mountpoint="/dev/null", kind="devtmpfs", detail="null"))
    if has_cgroup:
        for mp in cgroup_mountpoints:
            name = os.path.basename(mp)
            records.append(MountRecord(mountpoint=mp, kind="cgroup", detail=_CGROUP_DIR_TO_CTRL.get(name, name)))
    return tuple(records)


def stdio_names(descriptors: list[Any]) -> dict[str, str]:
    """stdout/stderr -> CRIU's name of the pipe they were (runc's descriptors.json); others left out. Pure."""
    out = {}
    for fd, key in ((1, "stdout"), (2, "stderr")):
        if fd < len(descriptors) and isinstance(descriptors[fd], str) and descriptors[fd].startswith("pipe:"):
            out[key] = descriptors[fd]
    return out


def podman_meta(spec: dict[str, Any], *, container_id: str, bundle: str, descriptors: list[Any],
                mounts: tuple[MountRecord, ...], rootfs_diff: bool) -> CheckpointMeta:
    """The CheckpointMeta a criu-cr checkpoint of this podman container would have had. Pure."""
    namespaces = {ns["type"]: ns["path"] for ns in (spec.get("linux") or {}).get("namespaces") or ()
                  if ns.get("path") and ns.get("type") != "mount"}
    return CheckpointMeta(container_id=container_id, bundle=bundle, rootfs=(spec.get("root") or {}).get("path", ""),
                          namespaces=namespaces, mounts=mounts, stdio=stdio_names(descriptors),
                          cgroups_path=(spec.get("linux") or {}).get("cgroupsPath", ""),
                          rootfs_diff=rootfs_diff)


# -- the files (I/O) ----------------------------------------------------------------------

def prepare_podman_import(archive_path: str, directory: str, image_dir: str, spec: dict[str, Any],
                          container_id: str, bundle: str, *, shm_tmpfs: bool = True) -> dict[str, Any]:
    """Make a podman archive unpacked at ``directory`` restorable; returns the spec to restore with.

    Recreates the sources of podman's bind mounts under ``directory/podman``,
    writes criu-cr.json into ``image_dir`` and drops podman's ``null``
    network.status. /dev/shm's source is a tmpfs mounted there (a plain
    directory without ``shm_tmpfs``); whoever removes ``directory`` unmounts
    it (``mounts.remove_tree``, the container's delete). Raises ArchiveError
    (a hostile devshm-checkpoint.tar, an unreadable descriptors.json),
    RestoreError (a container with a terminal), OSError.
    """
    descriptors = _descriptors(archive_path, image_dir)
    if any(isinstance(d, str) and d.startswith("/dev/pts/") for d in descriptors[:3]):
        raise RestoreError(container_id, "the podman container ran with a terminal (-t): criu-cr restores "
                           "containers whose stdio are pipes", hint="checkpoint a container started without -t")
    files = os.path.join(directory, FILES_DIR)
    os.mkdir(files, DIR_MODE)
    out = copy.deepcopy(spec)
    # criu-cr does not install seccomp filters; the restored tasks get theirs back from CRIU's seccomp.img.
    (out.get("linux") or {}).pop("seccomp", None)
    diff = os.path.join(image_dir, ROOTFS_DIFF)
    sources = _recreate_bind_sources(out, archive_path, directory, files, diff, spec.get("hostname", ""),
                                     shm_tmpfs)
    masked = [p for p in (out.get("linux") or {}).get("maskedPaths") or ()
              if os.path.exists(p) and not os.path.isdir(p)]
    cgroups = [mp for mp, fstype in _host_cgroup_mounts() if fstype == "cgroup"]
    records = podman_mounts(out, sources=sources, masked_files=masked, cgroup_mountpoints=cgroups)
    # podman's overlay shows the image root's mode at "/" (CRIU checks it); criu-cr's shows its upper's.
    root_mode = stat.S_IMODE(os.stat(out["root"]["path"]).st_mode)
    _add_mountpoints(diff, [(".", True, root_mode)] + [(p, d, 0o755 if d else 0o644) for p, d in mount_targets(out)],
                     whiteouts=_deleted_files(archive_path, directory))
    meta = podman_meta(out, container_id=container_id, bundle=bundle, descriptors=descriptors,
                       mounts=records, rootfs_diff=os.path.exists(diff))
    meta.write(image_dir)
    status = os.path.join(image_dir, NETWORK_FILE)
    try:
        with open(status, "rb") as f:
            if f.read(16).strip() == b"null":  # podman did not know the netns: nothing to recreate it from
                os.unlink(status)
    except FileNotFoundError:
        pass
    return out


def _recreate_bind_sources(out: dict[str, Any], archive_path: str, directory: str, files: str, diff: str,
                           hostname: str, shm_tmpfs: bool) -> dict[str, str]:
    """Make the sources of podman's bind mounts that are not on this host, under ``files``; point
    ``out``'s mounts at them. Returns destination -> new source."""
    sources: dict[str, str] = {}
    for m in out.get("mounts") or ():
        dest = m.get("destination", "")
        if m.get("type") != "bind" or dest not in _GENERATED or os.path.exists(m.get("source", "")):
            continue
        name = os.path.join(files, dest.strip("/").replace("/", "_"))
        if dest == "/dev/shm":
            os.mkdir(name, 0o700)
            if shm_tmpfs:  # as podman's: a tmpfs of its default --shm-size; the container's delete unmounts it
                sc.mount("shm", name, "tmpfs", sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC, SHM_OPTIONS)
            os.chmod(name, 0o1777)
            shm_tar = os.path.join(directory, DEVSHM_TAR)
            if os.path.exists(shm_tar):
                _unpack_plain(archive_path, shm_tar, name)
        else:
            content = _from_diff(diff, dest)
            if content is None:
                content = _from_artifacts(os.path.join(directory, ARTIFACTS_DIR), dest)
            with open(name, "wb") as f:
                f.write(content if content is not None else fresh_file(dest, hostname).encode())
            os.chmod(name, 0o644)
        m["source"] = sources[dest] = name
    return sources


def mount_targets(spec: dict[str, Any]) -> list[tuple[str, bool]]:
    """(path in the root filesystem, is a directory) of every mount point of the spec's bind mounts
    outside /dev, /proc and /sys, parents first (a directory when its source here is one).

    podman made them in its overlay and left them out of rootfs-diff.tar;
    CRIU needs them to exist to mount on.
    """
    out: dict[str, bool] = {}
    for m in spec.get("mounts") or ():
        dest = os.path.normpath(m.get("destination", "/")).lstrip("/")
        if m.get("type") != "bind" or not dest or dest.split("/")[0] in ("dev", "proc", "sys") or ".." in dest:
            continue
        parts = dest.split("/")
        for i in range(1, len(parts)):
            out.setdefault("/".join(parts[:i]), True)
        src = m.get("source", "")
        out["/".join(parts)] = os.path.isdir(src) if src else True
    return sorted(out.items())


def _add_mountpoints(diff: str, targets: list[tuple[str, bool, int]], whiteouts: Iterable[str] = ()) -> None:
    """Append empty mount points (path, is a directory, mode) to the filesystem changes (made when the
    archive has none); those the changes hold already are left alone. ``whiteouts``: the files the
    container deleted from its image (podman lists them apart), added as overlay whiteouts."""
    have: set[str] = set()
    if os.path.exists(diff):
        with tarfile.open(diff, "r:") as tar:
            have = {os.path.normpath(m.name) for m in tar}
    with tarfile.open(diff, "a" if os.path.exists(diff) else "w", format=tarfile.PAX_FORMAT) as tar:
        for path, is_dir, mode in targets:
            if path in have:
                continue
            ti = tarfile.TarInfo(path)
            ti.type, ti.mode = (tarfile.DIRTYPE if is_dir else tarfile.REGTYPE), mode
            tar.addfile(ti)
        for path in whiteouts:
            if path not in have:
                ti = tarfile.TarInfo(path)
                ti.type, ti.mode, ti.devmajor, ti.devminor = tarfile.CHRTYPE, 0, 0, 0  # overlay's whiteout
                tar.addfile(ti)


def _deleted_files(archive_path: str, directory: str) -> list[str]:
    """podman's deleted.files: the image's files the container deleted, as relative paths (refused: ``..``)."""
    data = load_json_member(archive_path, directory, DELETED_FILES, list, missing=[])
    if not all(isinstance(p, str) for p in data):
        raise ArchiveError(archive_path, DELETED_FILES, "is not a JSON list of paths")
    out = []
    for p in data:
        rel = os.path.normpath(p).lstrip("/")
        if rel in ("", ".") or rel == ".." or rel.startswith("../"):
            raise ArchiveError(archive_path, DELETED_FILES, f"names {p!r}, outside the container's filesystem")
        out.append(rel)
    return out


def _descriptors(archive_path: str, image_dir: str) -> list[Any]:
    return load_json_member(archive_path, image_dir, DESCRIPTORS, list, member=f"checkpoint/{DESCRIPTORS}",
                            missing=[])


def _from_diff(diff: str, dest: str) -> bytes | None:
    """The file at ``dest`` in the container's filesystem changes, when it wrote one there (small files only)."""
    if not os.path.exists(diff):
        return None
    want = dest.lstrip("/")
    with tarfile.open(diff, "r:") as tar:
        for m in tar:
            if m.name.lstrip("./") == want and m.isreg() and m.size <= 1 << 20:
                f = tar.extractfile(m)
                return f.read() if f else None
    return None


def _from_artifacts(artifacts: str, dest: str) -> bytes | None:
    """The file of that name in the archive's artifacts/ (the reader let in only plain files there)."""
    try:
        with open(os.path.join(artifacts, os.path.basename(dest)), "rb") as f:
            return f.read(1 << 20)
    except (FileNotFoundError, NotADirectoryError):
        return None


def _unpack_plain(archive_path: str, tar_path: str, target: str) -> None:
    """Unpack ``tar_path`` (untrusted) into ``target``: regular files and directories only, inside, capped."""
    member_of = os.path.basename(tar_path)
    budget = DEVSHM_LIMIT
    try:
        with tarfile.open(tar_path, "r:") as tar:
            for m in tar:
                name = os.path.normpath(m.name)
                if name == ".":
                    continue
                if m.name.startswith("/") or name.startswith(".."):
                    raise ArchiveError(archive_path, f"{member_of}:{m.name}", "leads outside /dev/shm")
                if not (m.isreg() or m.isdir()) or m.mode & (stat.S_ISUID | stat.S_ISGID):
                    raise ArchiveError(archive_path, f"{member_of}:{m.name}",
                                       "is not a plain file or directory (refused in /dev/shm)")
                budget -= m.size
                if budget < 0:
                    raise ArchiveError(archive_path, member_of, f"unpacks to more than {DEVSHM_LIMIT} bytes")
                path = os.path.join(target, name)
                if m.isdir():
                    os.makedirs(path, mode=m.mode & 0o1777, exist_ok=True)
                    continue
                os.makedirs(os.path.dirname(path), exist_ok=True)
                src = tar.extractfile(m)
                assert src is not None
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                             m.mode & 0o777)
                with os.fdopen(fd, "wb") as out:
                    while data := src.read(1 << 20):
                        out.write(data)
    except tarfile.TarError as exc:
        raise ArchiveError(archive_path, member_of, f"is corrupt ({exc})") from exc


def _host_cgroup_mounts() -> list[tuple[str, str]]:
    from runtime.linux.procfs import read_mountinfo

    return [(e.mountpoint, e.fstype) for e in read_mountinfo()
            if e.fstype in ("cgroup", "cgroup2") and e.mountpoint.startswith("/sys/fs/cgroup/")]
