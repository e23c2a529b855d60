"""``CriuOptions``: the options of one CRIU request, validated up front.

A frozen, keyword-only dataclass that turns into CRIU's ``criu_opts``
message with :meth:`CriuOptions.to_proto`.  Anything not modelled here can
be set on a generated message passed as ``raw=``; it is merged last, so it
wins.  ``dataclasses.replace(opts, ...)`` gives a re-validated copy.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from ._pb import rpc_pb2
from .errors import InvalidOptionError
from .option_types import (CLONE_NEWNET, INT32_MAX, UINT32_MAX, CgroupMode, CgroupRoot, ExternalMount, InheritFd,
                           JoinNamespace, NetworkLock, PageServer, PreDumpMode, check_fd, check_int, check_path,
                           check_str, coerce_enum)

__all__ = ["CriuOptions", "LOG_LEVEL_MAX"]

#: CRIU's most verbose log level (``-v4``).
LOG_LEVEL_MAX = 4

# Plain on/off switches with the same name in criu_opts.  Only switches that
# are on are sent: every one of them defaults to off in CRIU.
_FLAGS = (
    "leave_running", "leave_stopped", "ext_unix_sk", "tcp_established", "tcp_close",
    "tcp_skip_in_flight", "evasive_devices", "shell_job", "file_locks", "link_remap",
    "force_irmap", "track_mem", "auto_dedup", "lazy_pages", "orphan_pts_master",
    "rst_sibling", "notify_scripts", "weak_sysctls", "auto_ext_mnt", "ext_sharing",
    "ext_masters", "mntns_compat_mode", "skip_file_rwx_check", "unprivileged",
    "display_stats",
)

# Scalars with the same name in criu_opts, sent when not None.
_SCALARS = (
    "pid", "log_level", "log_file", "root", "parent_img", "freeze_cgroup", "timeout",
    "ghost_limit", "lsm_profile", "lsm_mount_context", "empty_ns", "status_fd",
    "pidfd_store_sk", "cgroup_yard",
)

# Tuple-of-strings options with the same name in criu_opts.
_STRING_LISTS = ("external", "skip_mnt", "enable_fs", "cgroup_dump_controller")

# Tuple-of-value-type options and their element types.
_PART_LISTS = (
    ("inherit_fd", InheritFd),
    ("join_ns", JoinNamespace),
    ("ext_mounts", ExternalMount),
    ("cg_root", CgroupRoot),
)


@dataclass(frozen=True, slots=True, kw_only=True)
class CriuOptions:
    """Options of a CRIU dump, pre-dump, restore or page-server request.

    Names follow CRIU's (see ``criu --help``); ``None`` and ``False`` leave
    CRIU's default.  Exactly one of ``images_dir`` (a path: the client opens
    it and sends the fd) and ``images_dir_fd`` (an fd valid in CRIU) must be
    given; likewise at most one of ``work_dir`` / ``work_dir_fd``.
    ``log_file`` is a bare file name inside the work dir (images dir if no
    work dir); ``parent_img`` is relative to the images dir.  Sequences are
    stored as tuples; paths as ``str``.

    Raises InvalidOptionError (with ``field`` set) when a value is invalid.
    """

    images_dir: str | os.PathLike[str] | None = None
    images_dir_fd: int | None = None
    work_dir: str | os.PathLike[str] | None = None
    work_dir_fd: int | None = None
    log_level: int | None = None
    log_file: str | None = None
    pid: int | None = None

    # Process tree and its resources.
    leave_running: bool = False
    leave_stopped: bool = False
    shell_job: bool = False
    file_locks: bool = False
    ext_unix_sk: bool = False
    evasive_devices: bool = False
    link_remap: bool = False
    force_irmap: bool = False
    orphan_pts_master: bool = False
    rst_sibling: bool = False
    notify_scripts: bool = False
    weak_sysctls: bool = False
    unprivileged: bool = False
    skip_file_rwx_check: bool = False
    display_stats: bool = False
    root: str | os.PathLike[str] | None = None
    external: tuple[str, ...] = ()
    inherit_fd: tuple[InheritFd, ...] = ()
    ghost_limit: int | None = None
    timeout: int | None = None
    status_fd: int | None = None
    lsm_profile: str | None = None
    lsm_mount_context: str | None = None

    # Network.
    tcp_established: bool = False
    tcp_close: bool = False
    tcp_skip_in_flight: bool = False
    network_lock: NetworkLock | str | None = None

    # Namespaces and mounts.
    join_ns: tuple[JoinNamespace, ...] = ()
    empty_ns: int | None = None
    ext_mounts: tuple[ExternalMount, ...] = ()
    auto_ext_mnt: bool = False
    ext_sharing: bool = False
    ext_masters: bool = False
    mntns_compat_mode: bool = False
    skip_mnt: tuple[str, ...] = ()
    enable_fs: tuple[str, ...] = ()

    # Cgroups.
    manage_cgroups: bool | None = None
    manage_cgroups_mode: CgroupMode | str | None = None
    cg_root: tuple[CgroupRoot, ...] = ()
    freeze_cgroup: str | None = None
    cgroup_yard: str | None = None
    cgroup_dump_controller: tuple[str, ...] = ()

    # Memory: iterative migration, lazy pages, page server.
    track_mem: bool = False
    parent_img: str | os.PathLike[str] | None = None
    auto_dedup: bool = False
    pre_dump_mode: PreDumpMode | str | None = None
    pidfd_store_sk: int | None = None
    lazy_pages: bool = False
    ps: PageServer | None = None

    # Escape hatch: merged into the message last.
    raw: rpc_pb2.criu_opts | None = field(default=None, hash=False)

    def __post_init__(self) -> None:
        self._check_dirs()
        self._check_scalars()
        self._check_sequences()
        self._check_enums()
        for name in _FLAGS:
            if not isinstance(getattr(self, name), bool):
                raise InvalidOptionError(name, "must be True or False")
        if self.manage_cgroups is not None and not isinstance(self.manage_cgroups, bool):
            raise InvalidOptionError("manage_cgroups", "must be True, False or None")
        if self.ps is not None and not isinstance(self.ps, PageServer):
            raise InvalidOptionError("ps", "must be a PageServer")
        if self.leave_running and self.leave_stopped:
            raise InvalidOptionError("leave_stopped", "conflicts with leave_running")
        if self.tcp_established and self.tcp_close:
            raise InvalidOptionError("tcp_close", "conflicts with tcp_established")
        if self.join_ns and self.empty_ns:
            raise InvalidOptionError("empty_ns", "conflicts with join_ns (CRIU refuses both)")
        if self.raw is not None:
            if not isinstance(self.raw, rpc_pb2.criu_opts):
                raise InvalidOptionError("raw", "must be a criu_opts message (criu_rpc._pb.rpc_pb2)")
            # Our own copy: later changes to the caller's message must not leak in.
            copy = rpc_pb2.criu_opts()
            copy.CopyFrom(self.raw)
            object.__setattr__(self, "raw", copy)

    def _set(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)

    def _check_dirs(self) -> None:
        if (self.images_dir is None) == (self.images_dir_fd is None):
            raise InvalidOptionError("images_dir", "give exactly one of images_dir and images_dir_fd")
        if self.images_dir is not None:
            self._set("images_dir", check_path("images_dir", self.images_dir))
        else:
            check_fd("images_dir_fd", self.images_dir_fd)
        if self.work_dir is not None and self.work_dir_fd is not None:
            raise InvalidOptionError("work_dir", "give at most one of work_dir and work_dir_fd")
        if self.work_dir is not None:
            self._set("work_dir", check_path("work_dir", self.work_dir))
        if self.work_dir_fd is not None:
            check_fd("work_dir_fd", self.work_dir_fd)
        if self.root is not None:
            self._set("root", check_path("root", self.root, absolute=True))
        if self.parent_img is not None:
            self._set("parent_img", check_path("parent_img", self.parent_img, absolute=False))

    def _check_scalars(self) -> None:
        if self.log_level is not None:
            check_int("log_level", self.log_level, 0, LOG_LEVEL_MAX)
        if self.log_file is not None:
            check_str("log_file", self.log_file)
            if "/" in self.log_file or self.log_file in (".", ".."):
                raise InvalidOptionError(
                    "log_file", f"{self.log_file!r} must be a bare file name (set work_dir instead)")
        if self.pid is not None:
            check_int("pid", self.pid, 1, INT32_MAX)
        for name in ("ghost_limit", "timeout"):
            if getattr(self, name) is not None:
                check_int(name, getattr(self, name), 0, UINT32_MAX)
        for name in ("status_fd", "pidfd_store_sk"):
            if getattr(self, name) is not None:
                check_fd(name, getattr(self, name))
        if self.empty_ns is not None:
            check_int("empty_ns", self.empty_ns, 0, UINT32_MAX)
            if self.empty_ns & ~CLONE_NEWNET:
                raise InvalidOptionError(
                    "empty_ns", f"{self.empty_ns:#x}: CRIU can only leave the net namespace "
                    f"empty (CLONE_NEWNET = {CLONE_NEWNET:#x})")
        for name in ("lsm_profile", "lsm_mount_context", "freeze_cgroup", "cgroup_yard"):
            if getattr(self, name) is not None:
                check_str(name, getattr(self, name))

    def _check_sequences(self) -> None:
        for name in _STRING_LISTS:
            values = _as_tuple(name, getattr(self, name))
            for v in values:
                # "" is a real controller name there: cgroup v2's, as in /proc/PID/cgroup's "0::" line
                check_str(name, v, allow_empty=name == "cgroup_dump_controller")
            self._set(name, values)
        for name, part_type in _PART_LISTS:
            values = _as_tuple(name, getattr(self, name))
            for v in values:
                if not isinstance(v, part_type):
                    raise InvalidOptionError(
                        name, f"items must be {part_type.__name__}, not {type(v).__name__}")
            self._set(name, values)
        fds = [item.fd for item in self.inherit_fd]
        if len(set(fds)) != len(fds):
            raise InvalidOptionError("inherit_fd", "the same fd is given twice")

    def _check_enums(self) -> None:
        for name, enum_type in (("network_lock", NetworkLock),
                                ("manage_cgroups_mode", CgroupMode),
                                ("pre_dump_mode", PreDumpMode)):
            if getattr(self, name) is not None:
                self._set(name, coerce_enum(name, enum_type, getattr(self, name)))

    def to_proto(self, *, images_dir_fd: int | None = None,
                 work_dir_fd: int | None = None) -> rpc_pb2.criu_opts:
        """Return a new ``criu_opts`` message for these options.

        The client passes ``images_dir_fd``/``work_dir_fd`` for the
        directories it opened from ``images_dir``/``work_dir`` (fds valid in
        CRIU's process).  Without them a path-typed ``images_dir`` is sent
        as CRIU's ``images_dir`` string (with ``images_dir_fd = -1``) and a
        path-typed ``work_dir`` is left out.  ``raw`` is merged last.

        Raises InvalidOptionError when a given fd is invalid or would
        override an fd already set in the options.
        """
        msg = rpc_pb2.criu_opts()
        msg.images_dir_fd = self._pick_fd("images_dir_fd", self.images_dir_fd, images_dir_fd)
        if msg.images_dir_fd == -1:
            msg.images_dir = str(self.images_dir)
        wd_fd = self._pick_fd("work_dir_fd", self.work_dir_fd, work_dir_fd)
        if wd_fd != -1:
            msg.work_dir_fd = wd_fd
        for name in _FLAGS:
            if getattr(self, name):
                setattr(msg, name, True)
        for name in _SCALARS:
            value = getattr(self, name)
            if value is not None:
                setattr(msg, name, value)
        for name in _STRING_LISTS:
            getattr(msg, name).extend(getattr(self, name))
        for item in self.inherit_fd:
            msg.inherit_fd.add(key=item.key, fd=item.fd)
        for ns in self.join_ns:
            entry = msg.join_ns.add(ns=ns.ns, ns_file=ns.ns_file)
            if ns.extra_opt is not None:
                entry.extra_opt = ns.extra_opt
        for mnt in self.ext_mounts:
            msg.ext_mnt.add(key=mnt.key, val=mnt.value)
        for cg in self.cg_root:
            entry = msg.cg_root.add(path=cg.path)
            if cg.ctrl is not None:
                entry.ctrl = cg.ctrl
        if self.manage_cgroups is not None:
            msg.manage_cgroups = self.manage_cgroups
        for name in ("manage_cgroups_mode", "network_lock", "pre_dump_mode"):
            value = getattr(self, name)
            if value is not None:
                setattr(msg, name, value.value)
        if self.ps is not None:
            msg.ps.CopyFrom(self.ps.to_proto())
        if self.raw is not None:
            msg.MergeFrom(self.raw)
        return msg

    @staticmethod
    def _pick_fd(name: str, own: int | None, given: int | None) -> int:
        if given is None:
            return -1 if own is None else own
        check_fd(name, given)
        if own is not None and own != given:
            raise InvalidOptionError(name, f"already {own} in the options, cannot send {given}")
        return given


def _as_tuple(name: str, value: Any) -> tuple[Any, ...]:
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise InvalidOptionError(name, f"must be a sequence, not {type(value).__name__}")
    return tuple(value)
