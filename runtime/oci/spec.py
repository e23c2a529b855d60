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

import json
import os
import posixpath
from dataclasses import dataclass, field as dc_field
from types import MappingProxyType
from typing import Any

from runtime.oci import checks as chk
from runtime.errors import SpecError

__all__ = [
    "Spec", "Process", "Rlimit", "Root", "Mount", "Namespace", "Device", "Resources",
    "NAMESPACE_TYPES", "load_spec", "parse_spec",
]

# Namespace types criu-cr creates or joins.
NAMESPACE_TYPES = ("pid", "network", "mount", "ipc", "uts", "cgroup")

SUPPORTED_OCI_VERSIONS = ("1.0", "1.1", "1.2")

RLIMIT_TYPES = (
    "RLIMIT_AS", "RLIMIT_CORE", "RLIMIT_CPU", "RLIMIT_DATA", "RLIMIT_FSIZE", "RLIMIT_LOCKS",
    "RLIMIT_MEMLOCK", "RLIMIT_MSGQUEUE", "RLIMIT_NICE", "RLIMIT_NOFILE", "RLIMIT_NPROC",
    "RLIMIT_RSS", "RLIMIT_RTPRIO", "RLIMIT_RTTIME", "RLIMIT_SIGPENDING", "RLIMIT_STACK",
)

CAPABILITY_SETS = ("bounding", "effective", "inheritable", "permitted", "ambient")

HOST_NAME_MAX = 64

ROOTFS_PROPAGATIONS = ("", "private", "rprivate", "slave", "rslave", "shared", "rshared", "unbindable", "runbindable")

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
    chk.obj(data, "(top level)")
    chk.check_keys(data, "", warnings)

    version = chk.get(data, "ociVersion", str, "", required=True)
    if not any(version == v or version.startswith(v + ".") for v in SUPPORTED_OCI_VERSIONS):
        raise SpecError("ociVersion", f"version {version!r} is not supported",
                        "criu-cr reads runtime-spec 1.0, 1.1 and 1.2")

    hooks = data.get("hooks")
    if hooks:
        chk.obj(hooks, "hooks")
        for name, entries in hooks.items():
            if entries:
                raise SpecError(f"hooks.{name}", "hooks are not supported", "remove the hooks section")

    linux = data.get("linux") or {}
    chk.obj(linux, "linux")
    chk.check_keys(linux, "linux", warnings)

    namespaces = _namespaces(linux.get("namespaces") or [])
    hostname = chk.get(data, "hostname", str, "")
    if hostname and len(hostname.encode()) > HOST_NAME_MAX:
        raise SpecError("hostname", f"longer than {HOST_NAME_MAX} bytes", "shorten it")
    if hostname and not any(ns.type == "uts" and ns.path is None for ns in namespaces):
        raise SpecError("hostname", "a hostname needs a new uts namespace",
                        "add {\"type\": \"uts\"} to linux.namespaces or remove hostname")

    cgroups_path = _cgroups_path(chk.get(linux, "cgroupsPath", str, "linux") or "")
    propagation = chk.get(linux, "rootfsPropagation", str, "linux") or ""
    if propagation not in ROOTFS_PROPAGATIONS:
        raise SpecError("linux.rootfsPropagation", f"unknown propagation {propagation!r}",
                        "use one of " + ", ".join(p for p in ROOTFS_PROPAGATIONS if p))

    sysctl = linux.get("sysctl") or {}
    chk.obj(sysctl, "linux.sysctl")
    for key, value in sysctl.items():
        if not isinstance(value, str):
            raise SpecError(f"linux.sysctl.{key}", "value must be a string")

    annotations = data.get("annotations") or {}
    chk.obj(annotations, "annotations")
    for key, value in annotations.items():
        if not isinstance(value, str):
            raise SpecError(f"annotations.{key}", "value must be a string")

    process = _process(data.get("process"), warnings)
    return Spec(
        oci_version=version,
        process=process,
        root=_root(data.get("root"), bundle),
        bundle=bundle,
        hostname=hostname or None,
        mounts=tuple(_mount(m, i, bundle) for i, m in enumerate(chk.array(data.get("mounts") or [], "mounts"))),
        namespaces=namespaces,
        cgroups_path=cgroups_path,
        resources=_resources(linux.get("resources") or {}),
        masked_paths=chk.paths(linux.get("maskedPaths") or [], "linux.maskedPaths"),
        readonly_paths=chk.paths(linux.get("readonlyPaths") or [], "linux.readonlyPaths"),
        devices=tuple(_device(d, i) for i, d in enumerate(chk.array(linux.get("devices") or [], "linux.devices"))),
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
    chk.obj(proc, "process")
    chk.check_keys(proc, "process", warnings)
    args = chk.array(proc.get("args"), "process.args")
    if not args or not all(isinstance(a, str) for a in args) or not args[0]:
        raise SpecError("process.args", "must be a non-empty list of strings", "e.g. [\"sh\"]")
    env = chk.array(proc.get("env") or [], "process.env")
    for i, e in enumerate(env):
        if not isinstance(e, str) or "=" not in e:
            raise SpecError(f"process.env[{i}]", f"{e!r} is not a NAME=value string")
    cwd = chk.get(proc, "cwd", str, "process", required=True)
    if not cwd.startswith("/"):
        raise SpecError("process.cwd", f"{cwd!r} is not an absolute path", "e.g. \"/\"")
    user = proc.get("user")
    if user is None:
        raise SpecError("process.user", "missing", "give {\"uid\": 0, \"gid\": 0}")
    chk.obj(user, "process.user")
    chk.check_keys(user, "process.user", warnings)
    uid = chk.ident(user.get("uid"), "process.user.uid")
    gid = chk.ident(user.get("gid"), "process.user.gid")
    gids = tuple(chk.ident(g, f"process.user.additionalGids[{i}]")
                 for i, g in enumerate(chk.array(user.get("additionalGids") or [], "process.user.additionalGids")))
    umask = user.get("umask")
    if umask is not None and (not chk.is_int(umask) or not 0 <= umask <= 0o777):
        raise SpecError("process.user.umask", f"{umask!r} is not a mode between 0 and 0777")
    terminal = chk.get(proc, "terminal", bool, "process") or False
    if terminal:
        warnings.append("process.terminal is true but criu-cr allocates no terminal: "
                        "stdin is /dev/null and output goes to the container log")
    rlimits = []
    seen = set()
    for i, r in enumerate(chk.array(proc.get("rlimits") or [], "process.rlimits")):
        where = f"process.rlimits[{i}]"
        chk.obj(r, where)
        rtype = chk.get(r, "type", str, where, required=True)
        if rtype not in RLIMIT_TYPES:
            raise SpecError(f"{where}.type", f"unknown rlimit {rtype!r}", "use a name like RLIMIT_NOFILE")
        if rtype in seen:
            raise SpecError(f"{where}.type", f"{rtype} is given twice")
        seen.add(rtype)
        hard = chk.uint(r.get("hard"), f"{where}.hard")
        soft = chk.uint(r.get("soft"), f"{where}.soft")
        if soft > hard:
            raise SpecError(where, f"soft limit {soft} is above hard limit {hard}")
        rlimits.append(Rlimit(type=rtype, hard=hard, soft=soft))
    caps = proc.get("capabilities")
    if caps is not None:
        chk.obj(caps, "process.capabilities")
        for cap_set, names in caps.items():
            where = f"process.capabilities.{cap_set}"
            if cap_set not in CAPABILITY_SETS:
                raise SpecError(where, "unknown capability set", "use " + ", ".join(CAPABILITY_SETS))
            for i, name in enumerate(chk.array(names or [], where)):
                if not isinstance(name, str) or not name.startswith("CAP_"):
                    raise SpecError(f"{where}[{i}]", f"{name!r} is not a capability name", "e.g. CAP_KILL")
    oom = proc.get("oomScoreAdj")
    if oom is not None and (not chk.is_int(oom) or not -1000 <= oom <= 1000):
        raise SpecError("process.oomScoreAdj", f"{oom!r} is not between -1000 and 1000")
    return Process(
        args=tuple(args), env=tuple(env), cwd=cwd, uid=uid, gid=gid, additional_gids=gids, umask=umask,
        terminal=terminal, rlimits=tuple(rlimits),
        no_new_privileges=chk.get(proc, "noNewPrivileges", bool, "process") or False,
        oom_score_adj=oom, capabilities=caps,
    )


def _root(root: Any, bundle: str) -> Root:
    if root is None:
        raise SpecError("root", "missing", "give {\"path\": \"rootfs\"}")
    chk.obj(root, "root")
    rel = chk.get(root, "path", str, "root", required=True)
    path = os.path.normpath(os.path.join(bundle, rel))
    if not os.path.isdir(path):
        raise SpecError("root.path", f"rootfs {path} does not exist or is not a directory",
                        "create it (e.g. unpack an image into it) or fix root.path")
    return Root(path=path, readonly=chk.get(root, "readonly", bool, "root") or False)


def _namespaces(entries: Any) -> tuple[Namespace, ...]:
    out: list[Namespace] = []
    for i, ns in enumerate(chk.array(entries, "linux.namespaces")):
        where = f"linux.namespaces[{i}]"
        chk.obj(ns, where)
        ns_type = chk.get(ns, "type", str, where, required=True)
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
        path = chk.get(ns, "path", str, where) or None
        if path is not None:
            if not path.startswith("/"):
                raise SpecError(f"{where}.path", f"{path!r} is not an absolute path")
            chk.check_ns_file(path, ns_type, f"{where}.path")
        out.append(Namespace(type=ns_type, path=path))
    return tuple(out)


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
    chk.obj(m, where)
    dest = chk.get(m, "destination", str, where, required=True)
    if not dest:
        raise SpecError(f"{where}.destination", "is empty")
    # runtime-spec 1.1 allows relative destinations, meaning relative to "/".
    dest = posixpath.normpath(posixpath.join("/", dest))
    options = chk.array(m.get("options") or [], f"{where}.options")
    if not all(isinstance(o, str) for o in options):
        raise SpecError(f"{where}.options", "must be a list of strings")
    for key in ("uidMappings", "gidMappings"):
        if m.get(key):
            raise SpecError(f"{where}.{key}", "id-mapped mounts are not supported", f"remove {key}")
    mtype = chk.get(m, "type", str, where) or ""
    source = chk.get(m, "source", str, where) or ""
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
    chk.obj(d, where)
    path = chk.get(d, "path", str, where, required=True)
    if not path.startswith("/dev/"):
        raise SpecError(f"{where}.path", f"{path!r} is not under /dev")
    dtype = chk.get(d, "type", str, where, required=True)
    if dtype not in ("c", "b", "u", "p"):
        raise SpecError(f"{where}.type", f"unknown device type {dtype!r}", "use c, b, u or p")
    return Device(
        path=path, type=dtype,
        major=chk.uint(d.get("major", 0), f"{where}.major"), minor=chk.uint(d.get("minor", 0), f"{where}.minor"),
        file_mode=None if d.get("fileMode") is None else chk.uint(d["fileMode"], f"{where}.fileMode"),
        uid=None if d.get("uid") is None else chk.ident(d["uid"], f"{where}.uid"),
        gid=None if d.get("gid") is None else chk.ident(d["gid"], f"{where}.gid"),
    )


def _resources(res: Any) -> Resources:
    chk.obj(res, "linux.resources")
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
    devices = chk.array(res.get("devices") or [], "linux.resources.devices")
    for i, rule in enumerate(devices):
        chk.obj(rule, f"linux.resources.devices[{i}]")
    mem = chk.obj(res.get("memory") or {}, "linux.resources.memory")
    cpu = chk.obj(res.get("cpu") or {}, "linux.resources.cpu")
    pids = chk.obj(res.get("pids") or {}, "linux.resources.pids")
    return Resources(
        memory_limit=chk.limit(mem.get("limit"), "linux.resources.memory.limit"),
        memory_swap=chk.limit(mem.get("swap"), "linux.resources.memory.swap"),
        memory_reservation=chk.limit(mem.get("reservation"), "linux.resources.memory.reservation"),
        pids_limit=chk.limit(pids.get("limit"), "linux.resources.pids.limit"),
        cpu_shares=chk.positive(cpu.get("shares"), "linux.resources.cpu.shares"),
        cpu_quota=chk.limit(cpu.get("quota"), "linux.resources.cpu.quota"),
        cpu_period=chk.positive(cpu.get("period"), "linux.resources.cpu.period"),
        cpuset_cpus=chk.get(cpu, "cpus", str, "linux.resources.cpu") or None,
        cpuset_mems=chk.get(cpu, "mems", str, "linux.resources.cpu") or None,
        devices=tuple(devices),
    )

