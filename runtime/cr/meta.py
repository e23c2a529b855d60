"""What a checkpoint keeps beside CRIU's images, and the image directory's life.

``criu-cr.json`` records what a restore needs and CRIU's images do not say
(joined namespaces, external mounts, stdio pipe names, where the container's
filesystem changes are). Image directories are written under a temporary
name and swapped in only when the dump succeeded, so a failed checkpoint
never damages an earlier good one.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from typing import Any

from criu_rpc import CriuError, CriuVersion, ImageError, locate, read_stats
from criu_rpc.locate import binary_version, require_version, version_gate
from runtime.cr import kdat
from runtime.cr.criu_options import MountRecord
from runtime.cr.layout import DUMP_LOG, DUMP_STATS, METADATA_FILE, NETWORK_FILE, RESTORE_LOG, RESTORE_STATS
from runtime.errors import ContainerError, RestoreError
from runtime.linux.fsmode import makedirs_private, open_private
from runtime.linux.mounts import remove_tree

__all__ = [
    "IMAGE_DIR_MODE", "METADATA_FILE", "ImageDirError", "ImageOwnerError", "check_owner", "NETWORK_FILE", "META_VERSION", "CheckpointMeta",
    "read_meta", "parse_meta", "fresh_image_dir", "install_image_dir", "remove_logs", "stats_dict",
    "choose_network_lock", "pick_network_lock", "nftables_supported", "require_usable_criu", "criu_facts", "DUMP_STATS_FIELDS", "RESTORE_STATS_FIELDS",
]

IMAGE_DIR_MODE = 0o700  # memory pages hold secrets
META_VERSION = 1
FEATURE_CACHE = ".criu-features.json"  # in the state root
# podman's --print-stats names, read from CRIU's stats images.
DUMP_STATS_FIELDS = ("freezing_time", "frozen_time", "memdump_time", "memwrite_time",
                     "pages_scanned", "pages_written")
RESTORE_STATS_FIELDS = ("forking_time", "restore_time", "pages_restored", "pages_compared",
                        "pages_skipped_cow")
_LOGS = {"dump": (DUMP_LOG, DUMP_STATS), "restore": (RESTORE_LOG, RESTORE_STATS)}


@dataclass(frozen=True, kw_only=True)
class CheckpointMeta:
    """The contents of ``criu-cr.json``."""

    container_id: str
    bundle: str
    rootfs: str
    namespaces: dict[str, str] = field(default_factory=dict)
    mounts: tuple[MountRecord, ...] = ()
    stdio: dict[str, str] = field(default_factory=dict)
    cgroups_path: str = ""
    upper_dir: str = ""
    rootfs_diff: bool = False
    leave_running: bool = False
    tcp_established: bool = False
    file_locks: bool = False
    network_lock: str = ""
    created: float = 0.0
    # The container's private netns held only lo: CRIU did not dump it (empty_ns) and the restore
    # makes it empty again and brings lo up (runc's way; runtime.cr.checkpoint._netns_left_empty).
    netns_empty: bool = False

    def to_dict(self) -> dict[str, object]:
        return {"version": META_VERSION, "container_id": self.container_id, "bundle": self.bundle,
                "rootfs": self.rootfs, "namespaces": self.namespaces,
                "mounts": [m.to_dict() for m in self.mounts], "stdio": self.stdio,
                "cgroups_path": self.cgroups_path, "upper_dir": self.upper_dir,
                "rootfs_diff": self.rootfs_diff, "leave_running": self.leave_running,
                "tcp_established": self.tcp_established, "file_locks": self.file_locks,
                "network_lock": self.network_lock, "created": self.created, "netns_empty": self.netns_empty}

    def write(self, image_dir: str) -> None:
        with open_private(os.path.join(image_dir, METADATA_FILE), "w", encoding="utf-8") as f:
            json.dump(self.to_dict(), f, indent=2, sort_keys=True)


def read_meta(image_dir: str, *, container_id: str = "") -> CheckpointMeta:
    """Load ``criu-cr.json``. Raises RestoreError when missing, unreadable or of another version.

    ``container_id`` (the container being restored) is the one the error names;
    by default the one recorded in the file.
    """
    path = os.path.join(image_dir, METADATA_FILE)
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise RestoreError(container_id or "?", f"{path} is missing: these images were not written by criu-cr",
                           hint="checkpoint with criu-cr") from None
    except OSError as exc:
        raise RestoreError(container_id or "?", f"cannot read {path}: {exc}", hint="take a new checkpoint") from exc
    return parse_meta(raw, path, container_id=container_id)


def parse_meta(raw: bytes, path: str, *, container_id: str = "") -> CheckpointMeta:
    """``criu-cr.json``'s bytes (read from ``path``, which errors name) as :class:`CheckpointMeta`.

    Raises RestoreError as :func:`read_meta` does.
    """
    cid = container_id or "?"
    try:
        data = json.loads(raw)
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
    except ValueError as exc:
        raise RestoreError(cid, f"cannot read {path}: {exc}", hint="take a new checkpoint") from exc
    cid = container_id or str(data.get("container_id", "?"))
    if data.get("version") != META_VERSION:
        raise RestoreError(cid, f"{path} has version {data.get('version')!r}; this criu-cr reads {META_VERSION}")
    try:
        return _meta_from_dict(data)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise RestoreError(cid, f"{path} is not a valid criu-cr.json ({type(exc).__name__}: {exc})",
                           hint="take a new checkpoint") from exc


def _meta_from_dict(data: dict[str, Any]) -> CheckpointMeta:
    return CheckpointMeta(
        container_id=data["container_id"], bundle=data["bundle"], rootfs=data["rootfs"],
        namespaces=dict(data.get("namespaces") or {}),
        mounts=tuple(MountRecord.from_dict(m) for m in data.get("mounts") or ()),
        stdio=dict(data.get("stdio") or {}), cgroups_path=data.get("cgroups_path", ""),
        upper_dir=data.get("upper_dir", ""), rootfs_diff=bool(data.get("rootfs_diff")),
        leave_running=bool(data.get("leave_running")), tcp_established=bool(data.get("tcp_established")),
        file_locks=bool(data.get("file_locks")), network_lock=str(data.get("network_lock") or ""),
        created=float(data.get("created") or 0.0), netns_empty=bool(data.get("netns_empty")))


def fresh_image_dir(final_dir: str, *, container_id: str = "") -> str:
    """An empty 0700 directory beside ``final_dir`` to dump into.

    ``final_dir`` may be missing, empty, or an earlier checkpoint of
    ``container_id`` (it is replaced once the dump succeeds); anything else
    is refused, since it would be replaced too. Raises ImageDirError,
    ImageOwnerError (another container's checkpoint), OSError.
    """
    if os.path.lexists(final_dir):
        if not os.path.isdir(final_dir) or os.path.islink(final_dir):
            raise ImageDirError(final_dir, "exists and is not a directory")
        entries = os.listdir(final_dir)
        if entries and METADATA_FILE not in entries and "inventory.img" not in entries:
            raise ImageDirError(final_dir, "holds files that are not a checkpoint (they would be replaced)")
        if container_id and METADATA_FILE in entries:
            check_owner(final_dir, container_id)
    parent = os.path.dirname(os.path.abspath(final_dir))
    makedirs_private(parent)
    tmp = f"{final_dir}.new-{os.getpid()}"
    remove_tree(tmp)  # never through a mount CRIU left there
    os.mkdir(tmp, IMAGE_DIR_MODE)
    os.chmod(tmp, IMAGE_DIR_MODE)  # whatever the umask
    return tmp


class ImageDirError(ContainerError, ValueError):
    """An image directory that cannot be used; ``path`` names it."""

    def __init__(self, path: str, problem: str) -> None:
        self.path = path
        super().__init__(f"image path {path} {problem}: give a new or empty directory, "
                         "or one that holds an earlier checkpoint")


class ImageOwnerError(ImageDirError):
    """``path`` holds the checkpoint of container ``owner``, not of ``container_id``."""

    def __init__(self, path: str, owner: str, container_id: str) -> None:
        self.path = path
        self.owner = owner
        self.container_id = container_id
        ContainerError.__init__(
            self, f"cannot checkpoint container {container_id!r} into {path}: it holds the checkpoint of "
                  f"container {owner!r}, which would be lost. Give another --image-path, or remove "
                  f"{path} first if {owner!r}'s checkpoint is no longer needed")


def check_owner(image_dir: str, container_id: str) -> None:
    """Refuse to replace a checkpoint whose ``criu-cr.json`` names another container.

    One whose ``criu-cr.json`` cannot be read is refused too: whose it is
    cannot be told. Raises ImageOwnerError, ImageDirError.
    """
    path = os.path.join(image_dir, METADATA_FILE)
    try:
        with open(path, encoding="utf-8") as f:
            owner = json.load(f)["container_id"]
    except FileNotFoundError:
        return
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ImageDirError(image_dir, f"holds a checkpoint whose {METADATA_FILE} cannot be read ({exc}), "
                            "so whose it is is unknown") from exc
    if owner != container_id:
        raise ImageOwnerError(image_dir, str(owner), container_id)


def install_image_dir(tmp: str, final_dir: str) -> None:
    """Put a finished dump at ``final_dir``, replacing an earlier checkpoint there."""
    old = None
    if os.path.lexists(final_dir):
        old = f"{final_dir}.old-{os.getpid()}"
        os.rename(final_dir, old)
    os.rename(tmp, final_dir)
    if old:
        remove_tree(old)  # unmounts what a killed CRIU left there first


def remove_logs(image_dir: str, kind: str) -> None:
    """Remove CRIU's log and stats of a successful ``kind`` ("dump"/"restore") run."""
    for name in _LOGS[kind]:
        try:
            os.unlink(os.path.join(image_dir, name))
        except FileNotFoundError:
            pass


def stats_dict(image_dir: str, kind: str) -> dict[str, int]:
    """CRIU's statistics of the last ``kind`` run, under podman's names ({} if CRIU wrote none)."""
    try:
        stats = read_stats(image_dir, kind)  # type: ignore[call-overload]
    except (ImageError, OSError):
        return {}
    names = DUMP_STATS_FIELDS if kind == "dump" else RESTORE_STATS_FIELDS
    return {n: getattr(stats, n) for n in names if getattr(stats, n, None) is not None}


def pick_network_lock(iptables: bool, nftables: bool) -> str | None:
    """The network-lock method for a host with these methods usable (None: neither).

    nftables when CRIU supports it here: CRIU drives it in-process, while the
    iptables method runs ``iptables-restore`` to lock and again to unlock --
    measured here, a restore took ~45 ms longer with iptables (see
    scripts/bench). iptables when only ``iptables-restore`` works.
    """
    if nftables:
        return "nftables"
    if iptables:
        return "iptables"
    return None


def choose_network_lock(criu_path: str | None = None, cache_dir: str | None = None, *,
                        facts: dict[str, Any] | None = None) -> str:
    """:func:`pick_network_lock` for this host; ``iptables`` when neither works.

    ``skip`` is never chosen silently: with neither method CRIU's own error
    will say that iptables-restore is missing. CRIU's nftables answer is
    cached in ``cache_dir`` (per CRIU binary and kernel), since asking costs
    a CRIU run.
    """
    if facts is None:
        facts = criu_facts(criu_path, cache_dir)
    iptables = shutil.which("iptables-restore") is not None
    return pick_network_lock(iptables, bool(facts.get("network_lock_nftables"))) or "iptables"


def nftables_supported(criu_path: str | None = None, cache_dir: str | None = None) -> bool:
    """Whether CRIU can lock the network with nftables on this kernel (``criu check --feature``)."""
    return bool(criu_facts(criu_path, cache_dir).get("network_lock_nftables"))


def require_usable_criu(criu_path: str | None = None, cache_dir: str | None = None) -> dict[str, Any]:
    """Refuse a CRIU too old for containers on this kernel, before anything is frozen.

    Returns :func:`criu_facts` (for :func:`choose_network_lock`). Raises
    CriuNotFoundError, CriuVersionError (naming the version needed).
    """
    facts = criu_facts(criu_path, cache_dir)
    if "version" not in facts:
        locate(criu_path)  # raises CriuNotFoundError naming where it looked
        return facts
    major, minor, sublevel = (list(facts["version"]) + [0, 0, 0])[:3]
    found = CriuVersion(major=major, minor=minor, sublevel=sublevel)
    needed, why = version_gate()
    require_version(found, needed, why, facts.get("path", ""))
    kdat.ensure(facts.get("path", ""))  # CRIU's kernel probing, saved once per boot and binary
    return facts


def criu_facts(criu_path: str | None = None, cache_dir: str | None = None) -> dict[str, Any]:
    """CRIU's version and nftables locking support, cached in ``cache_dir`` per binary and kernel.

    Asking costs CRIU runs (~30 ms each); the answer changes only with the
    binary or the kernel. ``{}`` when there is no usable CRIU.
    """
    try:
        path = locate(criu_path)
        st = os.stat(os.path.realpath(path))
    except (CriuError, OSError):  # no CRIU: no facts
        return {}
    key = f"{os.path.realpath(path)}:{st.st_mtime_ns}:{st.st_size}:{os.uname().release}"
    cache = os.path.join(cache_dir, FEATURE_CACHE) if cache_dir else None
    if cache:
        try:
            with open(cache, encoding="utf-8") as f:
                cached = json.load(f)
            if cached.get("key") == key:
                return cached
        except (OSError, ValueError):
            pass
    facts: dict[str, Any] = {"key": key, "path": path}
    try:
        facts["version"] = list(binary_version(path).numbers[:3])
        res = subprocess.run([path, "check", "--feature", "network_lock_nftables"],
                             stdin=subprocess.DEVNULL, capture_output=True, timeout=30, check=False)
        facts["network_lock_nftables"] = res.returncode == 0
    except (CriuError, OSError, subprocess.TimeoutExpired):
        return {}
    if cache:
        try:
            makedirs_private(cache_dir, 0o711)
            tmp = f"{cache}.{os.getpid()}"
            with open_private(tmp, "w", encoding="utf-8") as f:
                json.dump(facts, f)
            os.replace(tmp, cache)
        except OSError:
            pass  # a cache we cannot write only costs time
    return facts
