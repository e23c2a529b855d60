"""Value types that :class:`criu_rpc.options.CriuOptions` is built from.

Each is a frozen, keyword-only dataclass that validates itself on
construction and raises :class:`~criu_rpc.errors.InvalidOptionError`
naming the offending field.  The enums map one to one onto CRIU's.
"""

from __future__ import annotations

import enum
import os
from dataclasses import dataclass
from typing import Any

from ._pb import rpc_pb2
from .errors import InvalidOptionError

__all__ = [
    "CgroupMode",
    "NetworkLock",
    "PreDumpMode",
    "InheritFd",
    "JoinNamespace",
    "ExternalMount",
    "CgroupRoot",
    "PageServer",
    "CLONE_NEWNET",
]

#: The only namespace CRIU 4.2 can restore empty (``empty_ns`` mask).
CLONE_NEWNET = 0x40000000

UINT32_MAX = 0xFFFFFFFF
INT32_MAX = 0x7FFFFFFF

# Namespaces that join_ns may name.  CRIU itself refuses "pid"; the others it
# decides on at restore time.
_JOINABLE_NS = frozenset({"cgroup", "ipc", "mnt", "net", "time", "user", "uts"})


class CgroupMode(enum.Enum):
    """CRIU's ``--manage-cgroups`` modes (``criu_cg_mode``)."""

    IGNORE = rpc_pb2.IGNORE
    NONE = rpc_pb2.CG_NONE
    PROPS = rpc_pb2.PROPS
    SOFT = rpc_pb2.SOFT
    FULL = rpc_pb2.FULL
    STRICT = rpc_pb2.STRICT
    DEFAULT = rpc_pb2.DEFAULT


class NetworkLock(enum.Enum):
    """How CRIU locks the network while the tree is frozen."""

    IPTABLES = rpc_pb2.IPTABLES
    NFTABLES = rpc_pb2.NFTABLES
    SKIP = rpc_pb2.SKIP


class PreDumpMode(enum.Enum):
    """How pre-dump reads memory (``criu_pre_dump_mode``)."""

    SPLICE = rpc_pb2.SPLICE
    VM_READ = rpc_pb2.VM_READ


def coerce_enum(field: str, enum_type: type[enum.Enum], value: Any) -> enum.Enum:
    """Return ``value`` as a member of ``enum_type``; names are case-insensitive.

    Raises InvalidOptionError when ``value`` is neither a member nor a name.
    """
    if isinstance(value, enum_type):
        return value
    if isinstance(value, str) and value.upper() in enum_type.__members__:
        return enum_type[value.upper()]
    names = ", ".join(m.lower() for m in enum_type.__members__)
    raise InvalidOptionError(field, f"{value!r} is not one of: {names}")


def check_str(field: str, value: Any, *, allow_empty: bool = False) -> str:
    """Return ``value`` if it is a string (non-empty unless allowed).

    Raises InvalidOptionError otherwise, or if it contains a NUL byte.
    """
    if not isinstance(value, str):
        raise InvalidOptionError(field, f"must be a string, not {type(value).__name__}")
    if not value and not allow_empty:
        raise InvalidOptionError(field, "must not be empty")
    if "\0" in value:
        raise InvalidOptionError(field, "must not contain a NUL byte")
    return value


def check_int(field: str, value: Any, low: int, high: int) -> int:
    """Return ``value`` if it is an int (not a bool) in ``[low, high]``.

    Raises InvalidOptionError otherwise.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidOptionError(field, f"must be an integer, not {type(value).__name__}")
    if not low <= value <= high:
        raise InvalidOptionError(field, f"{value} is outside {low}..{high}")
    return value


def check_path(field: str, value: Any, *, absolute: bool | None = None) -> str:
    """Return ``value`` (str or os.PathLike) as a str path.

    ``absolute=True`` requires an absolute path, ``False`` a relative one.
    Raises InvalidOptionError on a wrong type, an empty path or the wrong kind.
    """
    try:
        path = os.fspath(value)
    except TypeError:
        raise InvalidOptionError(field, f"must be a path, not {type(value).__name__}") from None
    if isinstance(path, bytes):
        raise InvalidOptionError(field, "must be a str path, not bytes")
    check_str(field, path)
    if absolute is True and not os.path.isabs(path):
        raise InvalidOptionError(field, f"{path!r} must be an absolute path")
    if absolute is False and os.path.isabs(path):
        raise InvalidOptionError(field, f"{path!r} must be relative (to the images directory)")
    return path


def check_fd(field: str, value: Any) -> int:
    """Return ``value`` if it is a usable fd number; raises InvalidOptionError."""
    return check_int(field, value, 0, INT32_MAX)


@dataclass(frozen=True, slots=True, kw_only=True)
class InheritFd:
    """Hand our fd ``fd`` to the restored tree in place of resource ``key``.

    ``key`` is CRIU's name of the dumped resource, e.g. ``"pipe:[12345]"``
    or ``"file[2a:10]"``.  Raises InvalidOptionError on a bad key or fd.
    """

    key: str
    fd: int

    def __post_init__(self) -> None:
        check_str("inherit_fd.key", self.key)
        check_fd("inherit_fd.fd", self.fd)


@dataclass(frozen=True, slots=True, kw_only=True)
class JoinNamespace:
    """Restore into an existing namespace.

    ``ns`` is the namespace kind (``"net"``, ``"uts"``, ``"ipc"``, ...),
    ``ns_file`` a path such as ``/proc/PID/ns/net`` (or a pid as a string);
    ``extra_opt`` carries CRIU's extra options (uid/gid for ``user``).
    Raises InvalidOptionError on an unknown kind or an empty file.
    """

    ns: str
    ns_file: str
    extra_opt: str | None = None

    def __post_init__(self) -> None:
        check_str("join_ns.ns", self.ns)
        if self.ns == "pid":
            raise InvalidOptionError("join_ns.ns", "CRIU cannot join an existing pid namespace")
        if self.ns not in _JOINABLE_NS:
            raise InvalidOptionError(
                "join_ns.ns", f"{self.ns!r} is not one of: {', '.join(sorted(_JOINABLE_NS))}")
        object.__setattr__(self, "ns_file", check_path("join_ns.ns_file", self.ns_file))
        if self.extra_opt is not None:
            check_str("join_ns.extra_opt", self.extra_opt)


@dataclass(frozen=True, slots=True, kw_only=True)
class ExternalMount:
    """Map an external mount: ``key`` on dump, ``key`` -> ``value`` on restore.

    On dump ``key`` is the mount point inside the tree and ``value`` the name
    to record; on restore ``key`` is that name and ``value`` the host path.
    Raises InvalidOptionError on empty strings.
    """

    key: str
    value: str

    def __post_init__(self) -> None:
        check_str("ext_mounts.key", self.key)
        check_str("ext_mounts.value", self.value)


@dataclass(frozen=True, slots=True, kw_only=True)
class CgroupRoot:
    """Restore cgroups of controller ``ctrl`` under ``path``.

    ``ctrl`` None is CRIU's default root: it applies to every hierarchy in the
    images that has no root of its own. ``""`` names the cgroup v2 hierarchy
    alone (CRIU matches an empty controller only against v2's empty name).
    Raises InvalidOptionError unless ``path`` is absolute.
    """

    path: str
    ctrl: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", check_path("cg_root.path", self.path, absolute=True))
        if self.ctrl is not None:
            check_str("cg_root.ctrl", self.ctrl, allow_empty=True)


@dataclass(frozen=True, slots=True, kw_only=True)
class PageServer:
    """Where pages go (dump) or where a page server listens (PAGE_SERVER).

    Give ``address``/``port``, or ``fd`` of an already connected socket.
    Raises InvalidOptionError on a bad port or fd, or when nothing is given.
    """

    address: str | None = None
    port: int | None = None
    fd: int | None = None

    def __post_init__(self) -> None:
        if self.address is not None:
            check_str("ps.address", self.address)
        if self.port is not None:
            check_int("ps.port", self.port, 0, 65535)
        if self.fd is not None:
            check_fd("ps.fd", self.fd)
        if self.address is None and self.port is None and self.fd is None:
            raise InvalidOptionError("ps", "give an address and port, or an fd")

    def to_proto(self) -> rpc_pb2.criu_page_server_info:
        """Return the ``criu_page_server_info`` message."""
        msg = rpc_pb2.criu_page_server_info()
        if self.address is not None:
            msg.address = self.address
        if self.port is not None:
            msg.port = self.port
        if self.fd is not None:
            msg.fd = self.fd
        return msg
