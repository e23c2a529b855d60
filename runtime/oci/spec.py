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
from dataclasses import dataclass
from dataclasses import field as dc_field
from types import MappingProxyType
from typing import Any

from runtime.errors import SpecError
from runtime.oci import checks as chk
from runtime.oci.process import CAPABILITY_SETS, RLIMIT_TYPES, Process, Rlimit, parse_process

__all__ = [
    "Spec", "Process", "Rlimit", "Root", "Mount", "Namespace", "Device", "Resources",
    "NAMESPACE_TYPES", "RLIMIT_TYPES", "CAPABILITY_SETS", "load_spec", "parse_spec",
]

# Namespace types criu-cr creates or joins.
NAMESPACE_TYPES = ("pid", "network", "mount", "ipc", "uts", "cgroup")

SUPPORTED_OCI_VERSIONS = ("1.0", "1.1", "1.2")

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

    version = _version(data)
    _no_hooks(data.get("hooks"))
    linux = data.get("linux") or {}
    chk.obj(linux, "linux")
    chk.check_keys(linux, "linux", warnings)
    namespaces = _namespaces(linux.get("namespaces") or [])
    hostname = _hostname(data, namespaces)
    cgroups_path = _cgroups_path(chk.get(linux, "cgroupsPath", str, "linux") or "")
    propagation = _propagation(linux)
    sysctl = _strings(linux.get("sysctl") or {}, "linux.sysctl")
    annotations = _strings(data.get("annotations") or {}, "annotations")
    process = parse_process(data.get("process"), warnings)
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

def _version(data: dict[str, Any]) -> str:
    version = chk.get(data, "ociVersion", str, "", required=True)
    if not any(version == v or version.startswith(v + ".") for v in SUPPORTED_OCI_VERSIONS):
        raise SpecError("ociVersion", f"version {version!r} is not supported",
                        "criu-cr reads runtime-spec 1.0, 1.1 and 1.2")
    return version


def _no_hooks(hooks: Any) -> None:
    if hooks:
        chk.obj(hooks, "hooks")
        for name, entries in hooks.items():
            if entries:
                raise SpecError(f"hooks.{name}", "hooks are not supported", "remove the hooks section")


def _hostname(data: dict[str, Any], namespaces: tuple[Namespace, ...]) -> str:
    hostname = chk.get(data, "hostname", str, "")
    if hostname and len(hostname.encode()) > HOST_NAME_MAX:
        raise SpecError("hostname", f"longer than {HOST_NAME_MAX} bytes", "shorten it")
    if hostname and not any(ns.type == "uts" and ns.path is None for ns in namespaces):
        raise SpecError("hostname", "a hostname needs a new uts namespace",
                        "add {\"type\": \"uts\"} to linux.namespaces or remove hostname")
    return hostname


def _propagation(linux: dict[str, Any]) -> str:
    propagation = chk.get(linux, "rootfsPropagation", str, "linux") or ""
    if propagation not in ROOTFS_PROPAGATIONS:
        raise SpecError("linux.rootfsPropagation", f"unknown propagation {propagation!r}",
                        "use one of " + ", ".join(p for p in ROOTFS_PROPAGATIONS if p))
    return propagation


def _strings(mapping: Any, where: str) -> dict[str, str]:
    """A JSON object of strings (``linux.sysctl``, ``annotations``)."""
    chk.obj(mapping, where)
    for key, value in mapping.items():
        if not isinstance(value, str):
            raise SpecError(f"{where}.{key}", "value must be a string")
    return mapping

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

