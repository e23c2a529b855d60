"""Parse and validate an OCI runtime-spec ``config.json`` (versions 1.0-1.2).

The result is a tree of frozen dataclasses. What criu-cr supports is parsed;
what it does not support is refused with a :class:`SpecError` naming the field,
never silently dropped. Two things are accepted but not honoured, and say so
in :attr:`Spec.warnings` so a caller can print them:

* ``process.terminal: true`` (``runc spec``'s default): no pty is allocated;
  the process gets stdin ``/dev/null`` and its output goes to the container log.
* properties unknown to the runtime-spec (the spec requires runtimes to ignore
  them).
"""

from __future__ import annotations

import fcntl
import json
import os
import posixpath
from dataclasses import dataclass, field as dc_field
from types import MappingProxyType
from typing import Any

from .errors import SpecError

__all__ = [
    "Spec", "Process", "Rlimit", "Root", "Mount", "Namespace", "Device", "Resources",
    "NAMESPACE_TYPES", "load_spec", "parse_spec",
]

# Namespace types criu-cr creates or joins.
NAMESPACE_TYPES = ("pid", "network", "mount", "ipc", "uts", "cgroup")

# CLONE_NEW* flag of each type, as answered by the NS_GET_NSTYPE ioctl (linux/nsfs.h: _IO(0xb7, 0x3)).
_CLONE_FLAGS = MappingProxyType({
    "mount": 0x00020000, "cgroup": 0x02000000, "uts": 0x04000000, "ipc": 0x08000000,
    "user": 0x10000000, "pid": 0x20000000, "network": 0x40000000, "time": 0x00000080,
})
_NS_GET_NSTYPE = 0xB703

SUPPORTED_OCI_VERSIONS = ("1.0", "1.1", "1.2")

RLIMIT_TYPES = (
    "RLIMIT_AS", "RLIMIT_CORE", "RLIMIT_CPU", "RLIMIT_DATA", "RLIMIT_FSIZE", "RLIMIT_LOCKS",
    "RLIMIT_MEMLOCK", "RLIMIT_MSGQUEUE", "RLIMIT_NICE", "RLIMIT_NOFILE", "RLIMIT_NPROC",
    "RLIMIT_RSS", "RLIMIT_RTPRIO", "RLIMIT_RTTIME", "RLIMIT_SIGPENDING", "RLIMIT_STACK",
)

ROOTFS_PROPAGATIONS = ("", "private", "rprivate", "slave", "rslave", "shared", "rshared", "unbindable", "runbindable")

# Known properties that criu-cr does not implement: refused when set.
_UNSUPPORTED = MappingProxyType({
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

_KNOWN = MappingProxyType({
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
_RESOURCE_KEYS = MappingProxyType({
    "memory": frozenset({"limit", "swap", "reservation"}),
    "cpu": frozenset({"shares", "quota", "period", "cpus", "mems"}),
    "pids": frozenset({"limit"}),
    "blockIO": frozenset(),
    "hugepageLimits": frozenset(),
    "network": frozenset(),
    "rdma": frozenset(),
    "unified": frozenset(),
})


@dataclass(frozen=True, slots=True, kw_only=True)
class Rlimit:
    type: str
    hard: int
    soft: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Process:
    args: tuple[str, ...]
    env: tuple[str, ...] = ()
    cwd: str = "/"
    uid: int = 0
    gid: int = 0
    additional_gids: tuple[int, ...] = ()
    umask: int | None = None
    terminal: bool = False
    rlimits: tuple[Rlimit, ...] = ()
    no_new_privileges: bool = False
    oom_score_adj: int | None = None
    capabilities: dict[str, Any] | None = None  # kept raw: {"bounding": [...], ...}


@dataclass(frozen=True, slots=True, kw_only=True)
class Root:
    path: str  # absolute, resolved against the bundle directory
    readonly: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Mount:
    destination: str  # absolute path inside the container
    type: str  # "bind" when the spec gives none and options hold bind/rbind
    source: str  # bind sources resolved against the bundle directory
    options: tuple[str, ...] = ()

    @property
    def is_bind(self) -> bool:
        return self.type == "bind" or "bind" in self.options or "rbind" in self.options


@dataclass(frozen=True, slots=True, kw_only=True)
class Namespace:
    type: str
    path: str | None = None  # join this namespace instead of creating one


@dataclass(frozen=True, slots=True, kw_only=True)
class Device:
    path: str
    type: str  # "c", "b", "u" or "p"
    major: int = 0
    minor: int = 0
    file_mode: int | None = None
    uid: int | None = None
    gid: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Resources:
    """Cgroup resources. ``None`` leaves the kernel default; ``-1`` means unlimited."""

    memory_limit: int | None = None
    memory_swap: int | None = None  # memory+swap, as in cgroup v1 and the OCI spec
    memory_reservation: int | None = None
    pids_limit: int | None = None
    cpu_shares: int | None = None
    cpu_quota: int | None = None
    cpu_period: int | None = None
    cpuset_cpus: str | None = None
    cpuset_mems: str | None = None
    devices: tuple[dict[str, Any], ...] = ()  # device cgroup rules, kept raw


@dataclass(frozen=True, slots=True, kw_only=True)
class Spec:
    oci_version: str
    process: Process
    root: Root
    bundle: str
    hostname: str | None = None
    mounts: tuple[Mount, ...] = ()
    namespaces: tuple[Namespace, ...] = ()
    cgroups_path: str = ""
    resources: Resources = dc_field(default_factory=Resources)
    masked_paths: tuple[str, ...] = ()
    readonly_paths: tuple[str, ...] = ()
    devices: tuple[Device, ...] = ()
    sysctl: dict[str, str] = dc_field(default_factory=dict)
    rootfs_propagation: str = ""
    annotations: dict[str, str] = dc_field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    raw: dict[str, Any] = dc_field(default_factory=dict, repr=False, compare=False)

    def namespace(self, ns_type: str) -> Namespace | None:
        """The namespace entry of ``ns_type``, or ``None`` when the container shares the host's."""
        for ns in self.namespaces:
            if ns.type == ns_type:
                return ns
        return None


def load_spec(bundle_dir: str | os.PathLike[str]) -> Spec:
    """Read and validate ``<bundle_dir>/config.json``.

    Raises :class:`SpecError` when the file is missing, is not valid JSON
    (the message gives line and column) or fails :func:`parse_spec`.
    """
    bundle = os.path.abspath(os.fspath(bundle_dir))
    path = os.path.join(bundle, "config.json")
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        raise SpecError("config.json", f"{path} does not exist",
                        "give the bundle directory that holds config.json; `runc spec` writes a default one") from None
    except OSError as exc:
        raise SpecError("config.json", f"cannot read {path}: {exc.strerror}") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SpecError("config.json", f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}",
                        f"fix the syntax of {path}") from None
    return parse_spec(data, bundle)


def parse_spec(data: Any, bundle_dir: str | os.PathLike[str]) -> Spec:
    """Validate a decoded ``config.json`` and build a :class:`Spec`.

    Relative paths (``root.path``, bind-mount sources) resolve against
    ``bundle_dir``. Raises :class:`SpecError` naming the first bad field.
    """
    bundle = os.path.abspath(os.fspath(bundle_dir))
    warnings: list[str] = []
    _obj(data, "(top level)")
    _check_keys(data, "", warnings)

    version = _get(data, "ociVersion", str, "", required=True)
    if not any(version == v or version.startswith(v + ".") for v in SUPPORTED_OCI_VERSIONS):
        raise SpecError("ociVersion", f"version {version!r} is not supported",
                        "criu-cr reads runtime-spec 1.0, 1.1 and 1.2")

    hooks = data.get("hooks")
    if hooks:
        _obj(hooks, "hooks")
        for name, entries in hooks.items():
            if entries:
                raise SpecError(f"hooks.{name}", "hooks are not supported", "remove the hooks section")

    linux = data.get("linux") or {}
    _obj(linux, "linux")
    _check_keys(linux, "linux", warnings)

    namespaces = _namespaces(linux.get("namespaces") or [])
    hostname = _get(data, "hostname", str, "")
    if hostname and not any(ns.type == "uts" and ns.path is None for ns in namespaces):
        raise SpecError("hostname", "a hostname needs a new uts namespace",
                        "add {\"type\": \"uts\"} to linux.namespaces or remove hostname")

    cgroups_path = _cgroups_path(_get(linux, "cgroupsPath", str, "linux") or "")
    propagation = _get(linux, "rootfsPropagation", str, "linux") or ""
    if propagation not in ROOTFS_PROPAGATIONS:
        raise SpecError("linux.rootfsPropagation", f"unknown propagation {propagation!r}",
                        "use one of " + ", ".join(p for p in ROOTFS_PROPAGATIONS if p))

    sysctl = linux.get("sysctl") or {}
    _obj(sysctl, "linux.sysctl")
    for key, value in sysctl.items():
        if not isinstance(value, str):
            raise SpecError(f"linux.sysctl.{key}", "value must be a string")

    annotations = data.get("annotations") or {}
    _obj(annotations, "annotations")

    process = _process(data.get("process"), warnings)
    return Spec(
        oci_version=version,
        process=process,
        root=_root(data.get("root"), bundle),
        bundle=bundle,
        hostname=hostname or None,
        mounts=tuple(_mount(m, i, bundle) for i, m in enumerate(_list(data.get("mounts") or [], "mounts"))),
        namespaces=namespaces,
        cgroups_path=cgroups_path,
        resources=_resources(linux.get("resources") or {}),
        masked_paths=_paths(linux.get("maskedPaths") or [], "linux.maskedPaths"),
        readonly_paths=_paths(linux.get("readonlyPaths") or [], "linux.readonlyPaths"),
        devices=tuple(_device(d, i) for i, d in enumerate(_list(linux.get("devices") or [], "linux.devices"))),
        sysctl=dict(sysctl),
        rootfs_propagation=propagation,
        annotations=dict(annotations),
        warnings=tuple(warnings),
        raw=data,
    )


# -- helpers: one per section -------------------------------------------------

def _process(proc: Any, warnings: list[str]) -> Process:
    if proc is None:
        raise SpecError("process", "missing", "a container needs a process to run")
    _obj(proc, "process")
    _check_keys(proc, "process", warnings)
    args = _list(proc.get("args"), "process.args")
    if not args or not all(isinstance(a, str) for a in args) or not args[0]:
        raise SpecError("process.args", "must be a non-empty list of strings", "e.g. [\"sh\"]")
    env = _list(proc.get("env") or [], "process.env")
    for i, e in enumerate(env):
        if not isinstance(e, str) or "=" not in e:
            raise SpecError(f"process.env[{i}]", f"{e!r} is not a NAME=value string")
    cwd = _get(proc, "cwd", str, "process", required=True)
    if not cwd.startswith("/"):
        raise SpecError("process.cwd", f"{cwd!r} is not an absolute path", "e.g. \"/\"")
    user = proc.get("user")
    if user is None:
        raise SpecError("process.user", "missing", "give {\"uid\": 0, \"gid\": 0}")
    _obj(user, "process.user")
    _check_keys(user, "process.user", warnings)
    uid = _id(user.get("uid"), "process.user.uid")
    gid = _id(user.get("gid"), "process.user.gid")
    gids = tuple(_id(g, f"process.user.additionalGids[{i}]")
                 for i, g in enumerate(_list(user.get("additionalGids") or [], "process.user.additionalGids")))
    umask = user.get("umask")
    if umask is not None and (not _is_int(umask) or not 0 <= umask <= 0o777):
        raise SpecError("process.user.umask", f"{umask!r} is not a mode between 0 and 0777")
    terminal = _get(proc, "terminal", bool, "process") or False
    if terminal:
        warnings.append("process.terminal is true but criu-cr allocates no terminal: "
                        "stdin is /dev/null and output goes to the container log")
    rlimits = []
    seen = set()
    for i, r in enumerate(_list(proc.get("rlimits") or [], "process.rlimits")):
        where = f"process.rlimits[{i}]"
        _obj(r, where)
        rtype = _get(r, "type", str, where, required=True)
        if rtype not in RLIMIT_TYPES:
            raise SpecError(f"{where}.type", f"unknown rlimit {rtype!r}", "use a name like RLIMIT_NOFILE")
        if rtype in seen:
            raise SpecError(f"{where}.type", f"{rtype} is given twice")
        seen.add(rtype)
        hard = _uint(r.get("hard"), f"{where}.hard")
        soft = _uint(r.get("soft"), f"{where}.soft")
        if soft > hard:
            raise SpecError(where, f"soft limit {soft} is above hard limit {hard}")
        rlimits.append(Rlimit(type=rtype, hard=hard, soft=soft))
    caps = proc.get("capabilities")
    if caps is not None:
        _obj(caps, "process.capabilities")
    oom = proc.get("oomScoreAdj")
    if oom is not None and (not _is_int(oom) or not -1000 <= oom <= 1000):
        raise SpecError("process.oomScoreAdj", f"{oom!r} is not between -1000 and 1000")
    return Process(
        args=tuple(args), env=tuple(env), cwd=cwd, uid=uid, gid=gid, additional_gids=gids, umask=umask,
        terminal=terminal, rlimits=tuple(rlimits),
        no_new_privileges=_get(proc, "noNewPrivileges", bool, "process") or False,
        oom_score_adj=oom, capabilities=caps,
    )


def _root(root: Any, bundle: str) -> Root:
    if root is None:
        raise SpecError("root", "missing", "give {\"path\": \"rootfs\"}")
    _obj(root, "root")
    rel = _get(root, "path", str, "root", required=True)
    path = os.path.normpath(os.path.join(bundle, rel))
    if not os.path.isdir(path):
        raise SpecError("root.path", f"rootfs {path} does not exist or is not a directory",
                        "create it (e.g. unpack an image into it) or fix root.path")
    return Root(path=path, readonly=_get(root, "readonly", bool, "root") or False)


def _namespaces(entries: Any) -> tuple[Namespace, ...]:
    out: list[Namespace] = []
    for i, ns in enumerate(_list(entries, "linux.namespaces")):
        where = f"linux.namespaces[{i}]"
        _obj(ns, where)
        ns_type = _get(ns, "type", str, where, required=True)
        if ns_type == "user":
            raise SpecError(f"{where}.type", "'user' is not supported",
                            "remove the user namespace and linux.uidMappings/gidMappings")
        if ns_type == "time":
            raise SpecError(f"{where}.type", "'time' is not supported", "remove the time namespace")
        if ns_type not in NAMESPACE_TYPES:
            raise SpecError(f"{where}.type", f"unknown namespace type {ns_type!r}",
                            "use one of " + ", ".join(NAMESPACE_TYPES))
        if any(o.type == ns_type for o in out):
            raise SpecError(f"{where}.type", f"namespace {ns_type!r} is given twice")
        path = _get(ns, "path", str, where) or None
        if path is not None:
            if not path.startswith("/"):
                raise SpecError(f"{where}.path", f"{path!r} is not an absolute path")
            _check_ns_file(path, ns_type, f"{where}.path")
        out.append(Namespace(type=ns_type, path=path))
    return tuple(out)


def _check_ns_file(path: str, ns_type: str, where: str) -> None:
    """``path`` must be a namespace file (``/run/netns/x``, ``/proc/PID/ns/net``) of ``ns_type``."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise SpecError(where, f"namespace file {path} does not exist",
                        "create the namespace first (e.g. a netns under /run/netns) or remove path") from None
    except OSError as exc:
        raise SpecError(where, f"cannot open namespace file {path}: {exc.strerror}") from exc
    try:
        found = fcntl.ioctl(fd, _NS_GET_NSTYPE)
    except OSError as exc:
        raise SpecError(where, f"{path} is not a namespace file ({exc.strerror})",
                        "give a bind-mounted namespace such as /run/netns/NAME or /proc/PID/ns/TYPE") from None
    finally:
        os.close(fd)
    if found != _CLONE_FLAGS[ns_type]:
        kind = next((t for t, flag in _CLONE_FLAGS.items() if flag == found), f"flag {found:#x}")
        raise SpecError(where, f"{path} is a {kind} namespace, not {ns_type}")


def _cgroups_path(value: str) -> str:
    # runc's systemd driver form; criu-cr writes cgroupfs directly.
    if value and not value.startswith("/") and value.count(":") == 2:
        raise SpecError("linux.cgroupsPath", f"systemd-style path {value!r} (slice:prefix:name) is not supported",
                        "give a cgroupfs path such as /criu-cr/ID, or leave it empty")
    if ".." in value.split("/"):
        raise SpecError("linux.cgroupsPath", f"{value!r} must not contain '..'")
    return value


def _mount(m: Any, i: int, bundle: str) -> Mount:
    where = f"mounts[{i}]"
    _obj(m, where)
    dest = _get(m, "destination", str, where, required=True)
    if not dest:
        raise SpecError(f"{where}.destination", "is empty")
    # runtime-spec 1.1 allows relative destinations, meaning relative to "/".
    dest = posixpath.normpath(posixpath.join("/", dest))
    options = _list(m.get("options") or [], f"{where}.options")
    if not all(isinstance(o, str) for o in options):
        raise SpecError(f"{where}.options", "must be a list of strings")
    for key in ("uidMappings", "gidMappings"):
        if m.get(key):
            raise SpecError(f"{where}.{key}", "id-mapped mounts are not supported", f"remove {key}")
    mtype = _get(m, "type", str, where) or ""
    source = _get(m, "source", str, where) or ""
    bind = mtype == "bind" or "bind" in options or "rbind" in options
    if not mtype:
        if not bind:
            raise SpecError(f"{where}.type", "missing", "give a type, or \"bind\" in options for a bind mount")
        mtype = "bind"
    if bind:
        if not source:
            raise SpecError(f"{where}.source", "a bind mount needs a source")
        source = os.path.normpath(os.path.join(bundle, source))
        if not os.path.exists(source):
            raise SpecError(f"{where}.source", f"bind source {source} does not exist")
    return Mount(destination=dest, type=mtype, source=source, options=tuple(options))


def _device(d: Any, i: int) -> Device:
    where = f"linux.devices[{i}]"
    _obj(d, where)
    path = _get(d, "path", str, where, required=True)
    if not path.startswith("/dev/"):
        raise SpecError(f"{where}.path", f"{path!r} is not under /dev")
    dtype = _get(d, "type", str, where, required=True)
    if dtype not in ("c", "b", "u", "p"):
        raise SpecError(f"{where}.type", f"unknown device type {dtype!r}", "use c, b, u or p")
    return Device(
        path=path, type=dtype,
        major=_uint(d.get("major", 0), f"{where}.major"), minor=_uint(d.get("minor", 0), f"{where}.minor"),
        file_mode=None if d.get("fileMode") is None else _uint(d["fileMode"], f"{where}.fileMode"),
        uid=None if d.get("uid") is None else _id(d["uid"], f"{where}.uid"),
        gid=None if d.get("gid") is None else _id(d["gid"], f"{where}.gid"),
    )


def _resources(res: Any) -> Resources:
    _obj(res, "linux.resources")
    for section, supported in _RESOURCE_KEYS.items():
        value = res.get(section)
        if not value:
            continue
        where = f"linux.resources.{section}"
        if isinstance(value, dict):
            for key, v in value.items():
                if key not in supported and v not in (None, 0, False, "", [], {}):
                    raise SpecError(f"{where}.{key}", "is not supported", f"remove {where}.{key}")
        elif not supported:
            raise SpecError(where, "is not supported", f"remove {where}")
    devices = _list(res.get("devices") or [], "linux.resources.devices")
    for i, rule in enumerate(devices):
        _obj(rule, f"linux.resources.devices[{i}]")
    mem = _obj(res.get("memory") or {}, "linux.resources.memory")
    cpu = _obj(res.get("cpu") or {}, "linux.resources.cpu")
    pids = _obj(res.get("pids") or {}, "linux.resources.pids")
    return Resources(
        memory_limit=_limit(mem.get("limit"), "linux.resources.memory.limit"),
        memory_swap=_limit(mem.get("swap"), "linux.resources.memory.swap"),
        memory_reservation=_limit(mem.get("reservation"), "linux.resources.memory.reservation"),
        pids_limit=_limit(pids.get("limit"), "linux.resources.pids.limit"),
        cpu_shares=_positive(cpu.get("shares"), "linux.resources.cpu.shares"),
        cpu_quota=_limit(cpu.get("quota"), "linux.resources.cpu.quota"),
        cpu_period=_positive(cpu.get("period"), "linux.resources.cpu.period"),
        cpuset_cpus=_get(cpu, "cpus", str, "linux.resources.cpu") or None,
        cpuset_mems=_get(cpu, "mems", str, "linux.resources.cpu") or None,
        devices=tuple(devices),
    )


# -- small validators -------------------------------------------------------

def _check_keys(obj: dict[str, Any], section: str, warnings: list[str]) -> None:
    prefix = f"{section}." if section else ""
    for key, problem in _UNSUPPORTED.get(section, {}).items():
        if obj.get(key) not in (None, "", [], {}):
            raise SpecError(prefix + key, problem, f"remove {prefix}{key}")
    for key in obj:
        if key not in _KNOWN[section]:
            warnings.append(f"{prefix}{key} is not a runtime-spec property; ignored")


def _obj(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise SpecError(where, f"must be a JSON object, not {type(value).__name__}")
    return value


def _list(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise SpecError(where, f"must be a JSON array, not {type(value).__name__}")
    return value


def _get(obj: dict[str, Any], key: str, typ: type, section: str, *, required: bool = False) -> Any:
    where = f"{section}.{key}" if section else key
    value = obj.get(key)
    if value is None:
        if required:
            raise SpecError(where, "missing")
        return None
    if not isinstance(value, typ) or (typ is not bool and isinstance(value, bool)):
        raise SpecError(where, f"must be a {typ.__name__}, not {type(value).__name__}")
    return value


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _uint(value: Any, where: str) -> int:
    if not _is_int(value) or value < 0:
        raise SpecError(where, f"{value!r} is not a non-negative integer")
    return value


def _id(value: Any, where: str) -> int:
    if value is None:
        raise SpecError(where, "missing")
    if not _is_int(value) or not 0 <= value < 2**32 - 1:
        raise SpecError(where, f"{value!r} is not a valid id")
    return value


def _limit(value: Any, where: str) -> int | None:
    """A cgroup limit: None/0 = leave default, -1 (or any negative) = unlimited."""
    if value is None:
        return None
    if not _is_int(value):
        raise SpecError(where, f"{value!r} is not an integer")
    if value == 0:
        return None
    return -1 if value < 0 else value


def _positive(value: Any, where: str) -> int | None:
    if value is None or value == 0:
        return None
    if not _is_int(value) or value < 0:
        raise SpecError(where, f"{value!r} is not a positive integer")
    return value


def _paths(values: Any, where: str) -> tuple[str, ...]:
    out = []
    for i, p in enumerate(_list(values, where)):
        if not isinstance(p, str) or not p.startswith("/"):
            raise SpecError(f"{where}[{i}]", f"{p!r} is not an absolute path")
        out.append(p)
    return tuple(out)
