"""Field-level checks for :mod:`runtime.oci.spec`: JSON types, ids, limits, namespace files.

Each check raises :class:`SpecError` naming the field (``where``) it looked at.
"""

from __future__ import annotations

import fcntl
import os
from types import MappingProxyType
from typing import Any

from runtime.errors import SpecError
from runtime.linux.syscalls import NAMESPACE_FLAGS

# CLONE_NEW* flag of each type, as answered by the NS_GET_NSTYPE ioctl (linux/nsfs.h: _IO(0xb7, 0x3)).
CLONE_FLAGS = MappingProxyType(NAMESPACE_FLAGS)
NS_GET_NSTYPE = 0xB703

# Known properties that criu-cr does not implement: refused when set.
UNSUPPORTED = MappingProxyType({
    "process": MappingProxyType({
        "apparmorProfile": "AppArmor profiles are not supported",
        "selinuxLabel": "SELinux labels are not supported",
        "ioPriority": "process I/O priority is not supported",
        "scheduler": "process scheduler settings are not supported",
        "execCPUAffinity": "exec CPU affinity is not supported",
        "commandLine": "process.commandLine is Windows-only; give process.args",
    }),
    "process.user": MappingProxyType({"username": "user names are Windows-only; give uid/gid"}),
    "linux": MappingProxyType({
        "uidMappings": "user namespaces (uid mappings) are not supported",
        "gidMappings": "user namespaces (gid mappings) are not supported",
        "seccomp": "seccomp filters are not supported; remove linux.seccomp (runc spec's default has none)",
        "mountLabel": "SELinux mount labels are not supported",
        "intelRdt": "Intel RDT is not supported",
        "personality": "personality is not supported",
        "timeOffsets": "time namespaces are not supported",
        "netDevices": "moving network devices is not supported; join a pre-created netns instead",
        "memoryPolicy": "memory policy is not supported",
    }),
    "": MappingProxyType({"domainname": "setting a domain name is not supported"}),
})

KNOWN = MappingProxyType({
    "": frozenset({"ociVersion", "process", "root", "hostname", "domainname", "mounts", "linux", "hooks",
                   "annotations"}),
    "process": frozenset({"terminal", "consoleSize", "user", "args", "env", "cwd", "rlimits", "capabilities",
                          "noNewPrivileges", "oomScoreAdj", "apparmorProfile", "selinuxLabel", "ioPriority",
                          "scheduler", "execCPUAffinity", "commandLine"}),
    "process.user": frozenset({"uid", "gid", "umask", "additionalGids", "username"}),
    "linux": frozenset({"namespaces", "uidMappings", "gidMappings", "timeOffsets", "devices", "cgroupsPath",
                        "resources", "sysctl", "seccomp", "rootfsPropagation", "maskedPaths",
                        "readonlyPaths", "mountLabel", "intelRdt", "personality", "netDevices", "memoryPolicy"}),
})

# linux.resources: sub-object -> supported keys. Any other key with a value is refused.


def check_ns_file(path: str, ns_type: str, where: str) -> None:
    """``path`` must be a namespace file (``/run/netns/x``, ``/proc/PID/ns/net``) of ``ns_type``."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise SpecError(where, f"namespace file {path} does not exist",
                        "create the namespace first (e.g. a netns under /run/netns) or remove path") from None
    except OSError as exc:
        raise SpecError(where, f"cannot open namespace file {path}: {exc.strerror}") from exc
    try:
        found = fcntl.ioctl(fd, NS_GET_NSTYPE)
    except OSError as exc:
        raise SpecError(where, f"{path} is not a namespace file ({exc.strerror})",
                        "give a bind-mounted namespace such as /run/netns/NAME or /proc/PID/ns/TYPE") from None
    finally:
        os.close(fd)
    if found != CLONE_FLAGS[ns_type]:
        kind = next((t for t, flag in CLONE_FLAGS.items() if flag == found), f"flag {found:#x}")
        raise SpecError(where, f"{path} is a {kind} namespace, not {ns_type}")


def check_keys(data: dict[str, Any], section: str, warnings: list[str]) -> None:
    """Refuse known-but-unsupported properties of ``section``; note unknown ones in ``warnings``."""
    prefix = f"{section}." if section else ""
    for key, problem in UNSUPPORTED.get(section, {}).items():
        if data.get(key) not in (None, "", [], {}):
            raise SpecError(prefix + key, problem, f"remove {prefix}{key}")
    for key in data:
        if key not in KNOWN[section]:
            warnings.append(f"{prefix}{key} is not a runtime-spec property; ignored")


def obj(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise SpecError(where, f"must be a JSON object, not {type(value).__name__}")
    return value


def array(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise SpecError(where, f"must be a JSON array, not {type(value).__name__}")
    return value


def get(data: dict[str, Any], key: str, typ: type, section: str, *, required: bool = False) -> Any:
    """``data[key]`` checked to be a ``typ`` (``None`` when absent and not ``required``)."""
    where = f"{section}.{key}" if section else key
    value = data.get(key)
    if value is None:
        if required:
            raise SpecError(where, "missing")
        return None
    if not isinstance(value, typ) or (typ is not bool and isinstance(value, bool)):
        raise SpecError(where, f"must be a {typ.__name__}, not {type(value).__name__}")
    return value


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def uint(value: Any, where: str) -> int:
    if not is_int(value) or value < 0:
        raise SpecError(where, f"{value!r} is not a non-negative integer")
    return value


def ident(value: Any, where: str) -> int:
    if value is None:
        raise SpecError(where, "missing")
    if not is_int(value) or not 0 <= value < 2**32 - 1:
        raise SpecError(where, f"{value!r} is not a valid id")
    return value


def limit(value: Any, where: str) -> int | None:
    """A cgroup limit: None/0 = leave default, -1 (or any negative) = unlimited."""
    if value is None:
        return None
    if not is_int(value):
        raise SpecError(where, f"{value!r} is not an integer")
    if value == 0:
        return None
    return -1 if value < 0 else value


def positive(value: Any, where: str) -> int | None:
    if value is None or value == 0:
        return None
    if not is_int(value) or value < 0:
        raise SpecError(where, f"{value!r} is not a positive integer")
    return value


def paths(values: Any, where: str) -> tuple[str, ...]:
    out = []
    for i, p in enumerate(array(values, where)):
        if not isinstance(p, str) or not p.startswith("/"):
            raise SpecError(f"{where}[{i}]", f"{p!r} is not an absolute path")
        out.append(p)
    return tuple(out)
