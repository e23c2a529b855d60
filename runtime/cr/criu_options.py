"""What CRIU must be told about a container: one small pure function per concern.

Each concern (root, namespaces, mounts, cgroups, stdio, network lock, TCP and
file locks) is a function ``(ctx, direction) -> Part``; the same function
serves the checkpoint (``DUMP``) and the restore (``RESTORE``) so the two
directions cannot drift apart. :func:`build` merges the parts into a
:class:`Plan`, which makes the :class:`criu_rpc.CriuOptions`. Nothing here opens a file or
talks to CRIU: fds that a restore must pass are *named* (``Part.open_paths``)
and opened by the caller.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Callable, Iterable

from criu_rpc import CgroupRoot, CriuOptions, ExternalMount, InheritFd, JoinNamespace, PageServer
from criu_rpc.option_types import CLONE_NEWNET
from runtime.linux.cghier import managed_fields
from runtime.linux.procfs import MountEntry, parse_mountinfo

__all__ = [
    "Direction", "Plan", "DUMP", "RESTORE", "NETNS_KEY", "PIDNS_KEY", "MountRecord", "CrContext", "Part",
    "external_mounts", "build", "CONCERNS",
]

class Direction(enum.Enum):
    """Which way the options go: into images (dump) or out of them (restore)."""

    DUMP = "dump"
    RESTORE = "restore"


DUMP = Direction.DUMP
RESTORE = Direction.RESTORE
# Keys under which external namespaces are named in the images (runc uses the same words).
NETNS_KEY = "extRootNetNS"
PIDNS_KEY = "extRootPidNS"
_NS_KEYS = {"network": ("net", NETNS_KEY), "pid": ("pid", PIDNS_KEY)}
# Joined namespaces CRIU restores the tree into by path (join_ns), as crun does; at dump they need
# nothing: CRIU records them like any namespace, and the joined one is there again at restore.
_JOIN_NS = {"uts": "uts", "ipc": "ipc"}
# Names of cgroup hierarchies under /sys/fs/cgroup -> controller keys of runtime.linux.cgroups.
_CGROUP_DIR_TO_CTRL = {"unified": "", "systemd": "name=systemd"}


@dataclass(frozen=True, slots=True, kw_only=True)
class MountRecord:
    """A mount of the container that CRIU cannot recreate alone (its source is outside).

    ``kind``: ``"devtmpfs"`` (a host device node or /dev file bound in: masked
    paths, default devices; ``detail`` is its path under the host's /dev),
    ``"cgroup"`` (a cgroup hierarchy bound at the container's cgroup;
    ``detail`` is the controller key, "" for v2) or ``"bind"`` (a bind mount
    from the host; ``detail`` is its source at checkpoint time).
    """

    mountpoint: str
    kind: str
    detail: str

    def to_dict(self) -> dict[str, str]:
        return {"mountpoint": self.mountpoint, "kind": self.kind, "detail": self.detail}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "MountRecord":
        return cls(mountpoint=str(data["mountpoint"]), kind=str(data["kind"]), detail=str(data["detail"]))


@dataclass(frozen=True, kw_only=True)
class CrContext:
    """Everything the concerns need, gathered by the caller (no I/O below).

    ``namespaces``: joined namespaces, type -> path (e.g. the pre-created
    netns). ``ns_inodes``: type -> inode of that namespace at checkpoint.
    ``cgroup_paths``: controller key -> host cgroup dir of the (target)
    container, one per hierarchy criu-cr manages; ``cg_roots`` the same as
    (controller, path in its hierarchy) pairs. ``proc_cgroup``: the text of
    the container init's ``/proc/PID/cgroup`` at checkpoint (every hierarchy
    it is in, managed or not). ``bind_sources``: container destination ->
    host source of the (target) spec's bind mounts. ``stdio``: the names CRIU knows the
    container's stdout/stderr pipes by (``pipe:[inode]``) -> the fd to give
    at restore.
    """

    rootfs: str
    pid: int = 0
    namespaces: dict[str, str] = field(default_factory=dict)
    ns_inodes: dict[str, int] = field(default_factory=dict)
    mounts: tuple[MountRecord, ...] = ()
    cgroup_paths: dict[str, str] = field(default_factory=dict)
    cg_roots: tuple[tuple[str, str], ...] = ()
    proc_cgroup: str = ""
    freezer_path: str | None = None
    bind_sources: dict[str, str] = field(default_factory=dict)
    stdio_fds: dict[str, int] = field(default_factory=dict)
    network_lock: str | None = None
    tcp_established: bool = False
    tcp_skip_in_flight: bool = False
    tcp_close: bool = False
    file_locks: bool = False
    leave_running: bool = False
    # Dump only: pages go to this page server (a migration's destination), not into the images dir;
    # parent_img: the previous pre-dump's images (relative), pages unchanged since are not sent again.
    page_server: PageServer | None = None
    parent_img: str | None = None
    # The container's private netns is not dumped and comes back empty (CRIU's empty_ns);
    # the restore brings its lo up at setup-namespaces.
    netns_empty: bool = False
    lazy_port: int | None = None  # dump: serve the lazy memory from CRIU's page server on this port
    lazy_restore: bool = False  # restore: leave the lazy memory to the lazy-pages daemon


@dataclass(frozen=True, kw_only=True)
class Part:
    """A concern's share of the CRIU options."""

    opts: dict[str, Any] = field(default_factory=dict)
    external: tuple[str, ...] = ()
    ext_mounts: tuple[ExternalMount, ...] = ()
    inherit: tuple[InheritFd, ...] = ()
    cg_root: tuple[CgroupRoot, ...] = ()
    # (InheritFd key, path): the caller opens the path and passes the fd under that key.
    open_paths: tuple[tuple[str, str], ...] = ()


# -- mountinfo ------------------------------------------------------------------

def _covered(entry: MountEntry, entries: Iterable[MountEntry]) -> bool:
    """True when another mount of the same filesystem shows ``entry``'s root (CRIU can rebind it)."""
    root = entry.root
    for other in entries:
        if other is entry or other.dev != entry.dev:
            continue
        oroot = other.root
        if oroot == "/" or root == oroot or root.startswith(oroot.rstrip("/") + "/"):
            if other.root != entry.root or other.mountpoint < entry.mountpoint:
                return True
    return False


def external_mounts(mountinfo: str, bind_sources: dict[str, str] | None = None) -> tuple[MountRecord, ...]:
    """The mounts of a container (its ``/proc/PID/mountinfo``) CRIU must be told are external.

    The root mount is CRIU's ``root`` and is never listed. A mount whose
    filesystem root is shown by no other mount of the container comes from
    outside: cgroup hierarchies bound at the container's cgroup, host /dev
    nodes bound in (devices, masked paths), and the spec's bind mounts.
    """
    entries = parse_mountinfo(mountinfo)
    binds = bind_sources or {}
    records = []
    for e in entries:
        mp = e.mountpoint
        if mp == "/":
            continue
        if e.fstype in ("cgroup", "cgroup2"):
            if e.root == "/":
                continue  # a cgroupns-relative mount CRIU recreates itself
            name = os.path.basename(mp)
            ctrl = _CGROUP_DIR_TO_CTRL.get(name, name)
            if e.fstype == "cgroup2":
                ctrl = ""
            records.append(MountRecord(mountpoint=mp, kind="cgroup", detail=ctrl))
            continue
        if e.root == "/" or _covered(e, entries):
            continue
        if e.fstype == "devtmpfs":
            records.append(MountRecord(mountpoint=mp, kind="devtmpfs", detail=e.root))
        else:
            records.append(MountRecord(mountpoint=mp, kind="bind", detail=binds.get(mp, e.root)))
    return tuple(records)


# -- the concerns ----------------------------------------------------------------

def root_part(ctx: CrContext, direction: Direction) -> Part:
    """The container's root as a host mount point (CRIU's ``root``)."""
    opts: dict[str, Any] = {"root": ctx.rootfs}
    if direction == DUMP:
        opts["pid"] = ctx.pid
    return Part(opts=opts)


def namespace_part(ctx: CrContext, direction: Direction) -> Part:
    """Joined network/pid namespaces are external: named at dump, handed back as fds at restore.

    Joined uts/ipc namespaces are joined again at restore (``join_ns``). A
    private netns that holds nothing worth keeping (``netns_empty``) is
    neither dumped nor restored (``empty_ns``), as runc does: CRIU's netns
    dump runs ``ip ... save`` and ``iptables-save`` while the tree is frozen.
    CRIU refuses ``empty_ns`` beside ``join_ns``: the checkpoint never sets
    ``netns_empty`` with uts/ipc joined.
    """
    external = []
    open_paths = []
    join = tuple(JoinNamespace(ns=criu_name, ns_file=ctx.namespaces[ns_type])
                 for ns_type, criu_name in _JOIN_NS.items() if ctx.namespaces.get(ns_type) and direction != DUMP)
    for ns_type, (criu_name, key) in _NS_KEYS.items():
        path = ctx.namespaces.get(ns_type)
        if not path:
            continue
        if direction == DUMP:
            external.append(f"{criu_name}[{ctx.ns_inodes[ns_type]}]:{key}")
        else:
            open_paths.append((key, path))
    opts: dict[str, Any] = {"join_ns": join} if join else {}
    if ctx.netns_empty and "network" not in ctx.namespaces:
        if join:
            raise LookupError("a checkpoint whose netns was not dumped cannot join uts/ipc namespaces")
        opts["empty_ns"] = CLONE_NEWNET
    return Part(opts=opts, external=tuple(external), open_paths=tuple(open_paths))


def _restore_source(rec: MountRecord, ctx: CrContext) -> str:
    if rec.kind == "devtmpfs":
        return os.path.join("/dev", rec.detail.lstrip("/"))
    if rec.kind == "cgroup":
        try:
            return ctx.cgroup_paths[rec.detail]
        except KeyError:
            raise LookupError(f"mount {rec.mountpoint}: the container has no cgroup for controller "
                              f"{rec.detail or 'v2'!r} on this host") from None
    return ctx.bind_sources.get(rec.mountpoint, rec.detail)


def mount_part(ctx: CrContext, direction: Direction) -> Part:
    """External mounts: keyed by their mount point; at restore bound from the host path."""
    if direction == DUMP:
        ext = tuple(ExternalMount(key=r.mountpoint, value=r.mountpoint) for r in ctx.mounts)
    else:
        ext = tuple(ExternalMount(key=r.mountpoint, value=_restore_source(r, ctx)) for r in ctx.mounts)
    return Part(ext_mounts=ext)


def cgroup_part(ctx: CrContext, direction: Direction) -> Part:
    """Cgroups: only the hierarchies criu-cr manages go into the images and come back.

    Dump: freeze through the container's freezer; ``cgroup_dump_controller``
    lists the managed hierarchies the init is in, exactly as its
    ``/proc/PID/cgroup`` names them (``cpu,cpuacct``, ``name=systemd``, ``""``
    for v2). CRIU drops every other hierarchy when it reads the tasks'
    cgroups, so neither their membership nor their directories reach
    cgroup.img -- without it, a hierarchy where the container sits at the
    root (another tool's named v1 hierarchy) was dumped whole.

    Restore: ``soft`` mode (create the container's cgroups if missing, keep
    the limits criu-cr set), and one ``cg_root`` per managed hierarchy,
    v2's as an empty controller: CRIU's controller-less default root would
    also move any other hierarchy of older images below the container's
    path (the tree nested one level deeper on every restore). Hierarchies not
    in the images are not touched: the restored tasks stay in the restoring
    process's cgroup there. A container with no cgroups of its own: CRIU
    records memberships but walks and restores nothing (``ignore``).
    """
    if direction == DUMP:
        # An empty cgroup_dump_controller means "all" to CRIU: never send it empty.
        fields = managed_fields(ctx.proc_cgroup, ctx.cgroup_paths)
        opts: dict[str, Any] = {"manage_cgroups": True, "manage_cgroups_mode": "soft" if fields else "ignore"}
        if fields:
            opts["cgroup_dump_controller"] = fields
        if ctx.freezer_path:
            opts["freeze_cgroup"] = ctx.freezer_path
        return Part(opts=opts)
    opts = {"manage_cgroups": True, "manage_cgroups_mode": "soft" if ctx.cg_roots else "ignore"}
    # The images name the checkpointed container's cgroups; put the tree
    # under the target container's own (they differ when restoring a copy).
    roots = tuple(CgroupRoot(ctrl=ctrl, path=path) for ctrl, path in ctx.cg_roots)
    return Part(opts=opts, cg_root=roots)


def stdio_part(ctx: CrContext, direction: Direction) -> Part:
    """The container's stdout/stderr pipes lead out of it: new pipes are handed in at restore."""
    if direction == DUMP:
        return Part()
    return Part(inherit=tuple(InheritFd(key=name, fd=fd) for name, fd in sorted(ctx.stdio_fds.items())))


def network_part(ctx: CrContext, direction: Direction) -> Part:
    """Network locking method, established TCP connections."""
    opts: dict[str, Any] = {}
    if ctx.network_lock:
        opts["network_lock"] = ctx.network_lock
    if ctx.tcp_established:
        opts["tcp_established"] = True
    if direction == DUMP and ctx.tcp_skip_in_flight:
        opts["tcp_skip_in_flight"] = True
    if direction == RESTORE and ctx.tcp_close:
        opts["tcp_close"] = True
    return Part(opts=opts)


def process_part(ctx: CrContext, direction: Direction) -> Part:
    """File locks; leave the tree running after a dump."""
    opts: dict[str, Any] = {}
    if ctx.file_locks:
        opts["file_locks"] = True
    if direction == DUMP and ctx.leave_running:
        opts["leave_running"] = True
    if direction == RESTORE:
        # The restored init becomes a child of the restoring process (our monitor).
        opts["rst_sibling"] = True
    return Part(opts=opts)


def pages_part(ctx: CrContext, direction: Direction) -> Part:
    """Where a dump's pages go (a page server) and what they build on (a pre-dump's images).

    A restore reads pages from its images dir whatever way they came.
    """
    opts: dict[str, Any] = {}
    if direction == DUMP and ctx.page_server is not None:
        opts["ps"] = ctx.page_server
    if direction == DUMP and ctx.parent_img:
        opts["parent_img"] = ctx.parent_img
        opts["track_mem"] = True
    return Part(opts=opts)


def lazy_part(ctx: CrContext, direction: Direction) -> Part:
    """Post-copy (runtime.cr.lazy): a dump that serves its lazy memory from CRIU's page server (every
    address: CRIU takes only the port of a lazy dump's ``ps``), a restore that leaves it to the daemon."""
    if direction == DUMP and ctx.lazy_port:
        return Part(opts={"lazy_pages": True, "ps": PageServer(port=ctx.lazy_port)})
    if direction == RESTORE and ctx.lazy_restore:
        return Part(opts={"lazy_pages": True})
    return Part()


CONCERNS: tuple[Callable[[CrContext, Direction], Part], ...] = (
    root_part, namespace_part, mount_part, cgroup_part, stdio_part, network_part, process_part, pages_part,
    lazy_part,
)


@dataclass(frozen=True, kw_only=True)
class Plan:
    """What CRIU is told about a container in one direction.

    ``fields``: :class:`criu_rpc.CriuOptions` fields (without ``inherit_fd``);
    ``inherit``: fds handed in under a key; ``open_paths``: (key, path) pairs
    the caller opens and hands in too (this module never opens a file).
    """

    direction: Direction
    fields: Mapping[str, Any]
    inherit: tuple[InheritFd, ...] = ()
    open_paths: tuple[tuple[str, str], ...] = ()

    def options(self, *, images_dir: str, log_file: str, log_level: int,
                opened: Iterable[InheritFd] = ()) -> CriuOptions:
        """The CriuOptions of this plan; ``opened``: the fds of :attr:`open_paths`. Raises InvalidOptionError."""
        inherit = self.inherit + tuple(opened)
        extra: dict[str, Any] = {"inherit_fd": inherit} if inherit else {}
        return CriuOptions(images_dir=images_dir, log_file=log_file, log_level=log_level, **extra, **self.fields)


def build(ctx: CrContext, direction: Direction) -> Plan:
    """Merge every concern into one :class:`Plan`.

    Raises TypeError for a direction that is not a :class:`Direction`,
    LookupError when a restore cannot resolve an external mount on this host.
    """
    if not isinstance(direction, Direction):
        raise TypeError(f"direction must be a Direction, not {direction!r}")
    fields: dict[str, Any] = {}
    external: list[str] = []
    ext_mounts: list[ExternalMount] = []
    inherit: list[InheritFd] = []
    cg_root: list[CgroupRoot] = []
    open_paths: list[tuple[str, str]] = []
    for concern in CONCERNS:
        part = concern(ctx, direction)
        fields.update(part.opts)
        external += part.external
        ext_mounts += part.ext_mounts
        inherit += part.inherit
        cg_root += part.cg_root
        open_paths += part.open_paths
    if external:
        fields["external"] = tuple(external)
    if ext_mounts:
        fields["ext_mounts"] = tuple(ext_mounts)
    if cg_root:
        fields["cg_root"] = tuple(cg_root)
    return Plan(direction=direction, fields=MappingProxyType(fields), inherit=tuple(inherit),
                open_paths=tuple(open_paths))
