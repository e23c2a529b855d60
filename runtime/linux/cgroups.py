"""Container cgroups on cgroup v1, hybrid (v1 + v2 at ``unified``) and pure v2 hosts.

A :class:`Cgroups` maps a container's cgroup (one relative path such as
``/criu-cr/web``) onto every hierarchy the host mounts: one directory per v1
controller, plus the unified v2 directory on hybrid and v2 hosts. Controller
keys follow ``/proc/PID/cgroup``: ``"memory"``, ``"name=systemd"``, and ``""``
for the v2 hierarchy.

Device cgroup rules (``linux.resources.devices``) are not applied: on v2 they
need an eBPF program. Only the cgroupfs driver is supported (no systemd units).
"""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import Any

from runtime.errors import CgroupError
from runtime.linux.cgroup_limits import apply_v1, apply_v2, shares_to_weight
from runtime.linux.cgroupfs import read_file as _read
from runtime.linux.cgroupfs import write_file as _write
from runtime.oci.spec import Resources

__all__ = [
    "Cgroups", "detect_layout", "controller_keys", "resolve_cgroup_path", "read_proc_cgroup", "shares_to_weight",
    "DEFAULT_ROOT", "DEFAULT_PARENT", "V1_CONTROLLERS", "UNIFIED",
]

DEFAULT_ROOT = "/sys/fs/cgroup"
DEFAULT_PARENT = "/criu-cr"
UNIFIED = ""  # controller key of the v2 hierarchy, as in /proc/PID/cgroup's "0::" line

# v1 hierarchies a container joins (directory name under the root -> controller key).
V1_CONTROLLERS = MappingProxyType({
    "cpu": "cpu", "cpuacct": "cpuacct", "cpuset": "cpuset", "memory": "memory", "devices": "devices",
    "freezer": "freezer", "blkio": "blkio", "pids": "pids", "systemd": "name=systemd",
})

# v2 controllers enabled down to the container's cgroup so resources can be set.
_V2_WANTED = ("cpu", "cpuset", "memory", "pids")

FREEZE_TIMEOUT = 5.0
REMOVE_TIMEOUT = 2.0
_POLL = 0.01
_FIRST_POLL = 0.0002  # freezing polls from 0.2 ms, doubling up to _POLL


def detect_layout(root: str = DEFAULT_ROOT) -> str:
    """Return ``"v2"``, ``"hybrid"`` or ``"v1"`` for the cgroup mounts under ``root``.

    Raises :class:`CgroupError` when no cgroup hierarchy is found there.
    """
    if os.path.exists(os.path.join(root, "cgroup.controllers")):
        return "v2"
    if os.path.exists(os.path.join(root, "unified", "cgroup.controllers")):
        return "hybrid"
    if any(os.path.isdir(os.path.join(root, d)) for d in V1_CONTROLLERS):
        return "v1"
    raise CgroupError(root, "no cgroup v1 or v2 hierarchy is mounted here")


def controller_keys(root: str = DEFAULT_ROOT) -> frozenset[str]:
    """The hierarchies (controller keys) a container created on this host gets a cgroup in.

    These are the hierarchies criu-cr manages (see :mod:`runtime.linux.cghier`).
    Raises :class:`CgroupError` when no cgroup hierarchy is mounted.
    """
    return frozenset(_hierarchy_paths(root, detect_layout(root), "/"))


def resolve_cgroup_path(cgroups_path: str, container_id: str, parent: str = DEFAULT_PARENT) -> str:
    """The container's cgroup path relative to each hierarchy's root (``/a/b``).

    Absolute ``cgroupsPath`` is used as is; empty means ``<parent>/<id>``
    (``/criu-cr/<id>``); a relative one goes under ``parent``. runc's systemd
    form (``slice:prefix:name``) is refused: criu-cr drives cgroupfs directly.
    """
    if not cgroups_path:
        cgroups_path = f"{parent}/{container_id}"
    elif not cgroups_path.startswith("/"):
        if ":" in cgroups_path:
            raise CgroupError(cgroups_path, "systemd-style cgroupsPath (slice:prefix:name) is not supported; "
                                            "give an absolute path such as /criu-cr/<id>")
        cgroups_path = f"{parent}/{cgroups_path}"
    parts = [p for p in cgroups_path.split("/") if p not in ("", ".")]
    if not parts or ".." in parts:
        raise CgroupError(cgroups_path, "cgroupsPath must name a cgroup below the root, without '..'")
    return "/" + "/".join(parts)


def read_proc_cgroup(pid: int | str) -> dict[str, str]:
    """Parse ``/proc/PID/cgroup`` into ``{controller: path}``; the v2 line has key ``""``.

    Raises ``OSError`` (``ProcessLookupError``-like ``FileNotFoundError``) if the process is gone.
    """
    out: dict[str, str] = {}
    with open(f"/proc/{pid}/cgroup", encoding="utf-8") as f:
        for line in f:
            _, ctrls, path = line.rstrip("\n").split(":", 2)
            for ctrl in ctrls.split(",") if ctrls else [UNIFIED]:
                out[ctrl] = path
    return out


class Cgroups:
    """The cgroup directories of one container.

    Build it from the spec's ``cgroupsPath`` and the container id, or
    :meth:`from_dict` / :meth:`from_paths` for a recorded or adopted container.
    Nothing touches the filesystem until :meth:`create`.
    """

    def __init__(self, cgroups_path: str, container_id: str, *, root: str = DEFAULT_ROOT,
                 layout: str | None = None, parent: str = DEFAULT_PARENT) -> None:
        self.root = root
        self.layout = layout or detect_layout(root)
        self.path = resolve_cgroup_path(cgroups_path, container_id, parent)
        self.paths = _hierarchy_paths(root, self.layout, self.path)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Cgroups:
        """Rebuild from :meth:`to_dict`'s output."""
        obj = cls.__new__(cls)
        obj.root = data["root"]
        obj.layout = data["layout"]
        obj.path = data["path"]
        obj.paths = dict(data["paths"])
        return obj

    @classmethod
    def from_paths(cls, paths: Mapping[str, str], *, root: str = DEFAULT_ROOT) -> Cgroups:
        """Wrap absolute per-controller directories (runc's ``cgroup_paths``).

        The paths may differ per controller (runc places a relative cgroupsPath
        under its own cgroup of each hierarchy); ``path`` is then only the first
        one's, and :meth:`cg_roots` gives each. Raises :class:`CgroupError` if
        ``paths`` is empty.
        """
        if not paths:
            raise CgroupError(root, "no cgroup paths given")
        layout = detect_layout(root)
        obj = cls.from_dict({"root": root, "layout": layout, "path": "", "paths": dict(paths)})
        ctrl, path = next(iter(sorted(paths.items())))
        obj.path = obj._relative(ctrl, path)
        return obj

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able record for the container state."""
        return {"root": self.root, "layout": self.layout, "path": self.path, "paths": dict(self.paths)}

    def __repr__(self) -> str:
        return f"Cgroups(path={self.path!r}, layout={self.layout!r})"

    # -- lifecycle -----------------------------------------------------------

    def create(self) -> None:
        """Make every directory (and parents); v1 cpuset inherits cpus/mems; v2 enables controllers.

        Raises :class:`CgroupError`.
        """
        for ctrl, path in self.paths.items():
            top = self._hierarchy_root(ctrl)
            levels = _levels(top, path)
            for i, level in enumerate(levels):
                try:
                    os.mkdir(level)
                except FileExistsError:
                    pass
                except OSError as exc:
                    raise CgroupError(level, f"cannot create: {exc.strerror}") from exc
                if ctrl == UNIFIED and i < len(levels) - 1:
                    self._enable_v2_controllers(level)
                if ctrl == "cpuset" and i > 0:
                    for name in ("cpuset.cpus", "cpuset.mems"):
                        if not _read(os.path.join(level, name)).strip():
                            _write(os.path.join(level, name), _read(os.path.join(levels[i - 1], name)))

    def add(self, pid: int) -> None:
        """Move ``pid`` (a whole process) into every hierarchy. Raises :class:`CgroupError`."""
        for path in self.paths.values():
            _write(os.path.join(path, "cgroup.procs"), str(pid))

    def apply(self, resources: Resources) -> None:
        """Write memory, pids, cpu and cpuset limits. Raises :class:`CgroupError`."""
        if self.layout == "v2":
            apply_v2(self.paths[UNIFIED], resources, self.path)
        else:
            apply_v1(self.paths, resources, self.path)

    def remove(self, timeout: float = REMOVE_TIMEOUT) -> None:
        """Remove the container's directories (and sub-cgroups it made).

        Retries while exiting tasks linger; already-gone directories are fine.
        Raises :class:`CgroupError` when a directory stays busy past ``timeout``.
        """
        deadline = time.monotonic() + timeout
        for path in self.paths.values():
            for d in _walk_bottom_up(path):
                while True:
                    try:
                        os.rmdir(d)
                        break
                    except FileNotFoundError:
                        break
                    except OSError as exc:
                        if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                            raise CgroupError(d, f"cannot remove: {exc.strerror} "
                                                 f"(pids still inside: {_procs(d)})") from exc
                        time.sleep(_POLL)

    def remove_parent_if_empty(self) -> None:
        """Remove the directory above the container's in each hierarchy when nothing else is in it."""
        for path in self.paths.values():
            try:
                os.rmdir(os.path.dirname(path))
            except OSError:
                pass  # other cgroups in it, or gone already

    # -- freezer -------------------------------------------------------------

    def freeze(self, timeout: float = FREEZE_TIMEOUT) -> None:
        """Freeze every process; returns once the kernel reports the cgroup frozen.

        Raises :class:`CgroupError` (after thawing again) if it does not freeze in ``timeout``.
        """
        self._set_frozen(True, timeout)

    def thaw(self, timeout: float = FREEZE_TIMEOUT) -> None:
        """Undo :meth:`freeze`. Raises :class:`CgroupError`."""
        self._set_frozen(False, timeout)

    def is_frozen(self) -> bool:
        """Whether the container's cgroup is frozen. Raises :class:`CgroupError`."""
        path = self.freezer_path()
        if self._freezer_is_v1():
            return _read(os.path.join(path, "freezer.state")).strip() == "FROZEN"
        return _events(path).get("frozen") == "1"

    def freezer_path(self) -> str:
        """The directory CRIU's ``freeze_cgroup`` option wants (v1 freezer, else v2)."""
        if "freezer" in self.paths:
            return self.paths["freezer"]
        if UNIFIED in self.paths:
            return self.paths[UNIFIED]
        raise CgroupError(self.path, "no freezer hierarchy (neither v1 freezer nor v2) is mounted")

    # -- inspection ----------------------------------------------------------

    def pids(self) -> list[int]:
        """Every pid in the container's cgroup and its sub-cgroups, sorted."""
        top = self._main_path()
        found: set[int] = set()
        for d in _walk_bottom_up(top):
            found.update(_procs(d))
        return sorted(found)

    def cg_roots(self) -> list[tuple[str, str]]:
        """``(controller, cgroup path)`` pairs for CRIU's ``cg_root`` restore option.

        Paths are relative to each hierarchy's root, as in ``/proc/PID/cgroup``;
        controller ``""`` is the v2 hierarchy. Every managed hierarchy is
        listed explicitly: CRIU's default root (no controller) would also
        apply to hierarchies criu-cr does not manage.
        """
        return [(ctrl, self._relative(ctrl, p)) for ctrl, p in sorted(self.paths.items())]

    def exists(self) -> bool:
        """Whether any of the directories is still there."""
        return any(os.path.isdir(p) for p in self.paths.values())

    # -- internals -----------------------------------------------------------

    def _hierarchy_root(self, ctrl: str) -> str:
        if ctrl == UNIFIED:
            return self.root if self.layout == "v2" else os.path.join(self.root, "unified")
        for d, key in V1_CONTROLLERS.items():
            if key == ctrl:
                return os.path.join(self.root, d)
        return os.path.join(self.root, ctrl)

    def _relative(self, ctrl: str, path: str) -> str:
        rel = os.path.relpath(path, self.root)
        if not (ctrl == UNIFIED and self.layout == "v2"):
            # drop the hierarchy's directory: "memory", "unified", or a co-mount like "cpu,cpuacct"
            rel = rel.partition("/")[2]
        return "/" + ("" if rel == "." else rel)

    def _main_path(self) -> str:
        if self.layout == "v2":
            return self.paths[UNIFIED]
        for ctrl in ("pids", "freezer", "memory", "cpu", UNIFIED):
            if ctrl in self.paths:
                return self.paths[ctrl]
        return next(iter(self.paths.values()))

    def _freezer_is_v1(self) -> bool:
        return "freezer" in self.paths

    def _enable_v2_controllers(self, level: str) -> None:
        available = _read(os.path.join(level, "cgroup.controllers")).split()
        enabled = _read(os.path.join(level, "cgroup.subtree_control")).split()
        for ctrl in _V2_WANTED:
            if ctrl in available and ctrl not in enabled:
                try:
                    with open(os.path.join(level, "cgroup.subtree_control"), "w") as f:
                        f.write(f"+{ctrl}")
                except OSError as exc:
                    # A cgroup with its own processes cannot delegate (EBUSY), some
                    # controllers cannot be enabled in threaded subtrees (EOPNOTSUPP):
                    # apply() then reports the missing interface file of the limit asked.
                    if exc.errno not in (errno.EBUSY, errno.EOPNOTSUPP, errno.EINVAL, errno.ENOENT):
                        raise CgroupError(os.path.join(level, "cgroup.subtree_control"),
                                          f"cannot enable {ctrl}: {exc.strerror}") from exc

    def _set_frozen(self, frozen: bool, timeout: float) -> None:
        path = self.freezer_path()
        v1 = self._freezer_is_v1()
        target = os.path.join(path, "freezer.state" if v1 else "cgroup.freeze")
        value = ("FROZEN" if frozen else "THAWED") if v1 else ("1" if frozen else "0")
        deadline = time.monotonic() + timeout
        pause = _FIRST_POLL  # a small tree settles in well under a millisecond: start short
        while True:
            _write(target, value)  # v1: re-writing FROZEN retries tasks that were mid-fork
            if self.is_frozen() == frozen:
                return
            if time.monotonic() > deadline:
                if frozen:
                    self._set_frozen(False, timeout)
                raise CgroupError(path, f"did not become {'frozen' if frozen else 'thawed'} in {timeout:g} s")
            time.sleep(pause)
            pause = min(pause * 2, _POLL)



def _hierarchy_paths(root: str, layout: str, rel: str) -> dict[str, str]:
    paths: dict[str, str] = {}
    if layout in ("v1", "hybrid"):
        for d, key in V1_CONTROLLERS.items():
            top = os.path.join(root, d)
            if os.path.isdir(top):
                paths[key] = top + rel
    if layout == "hybrid":
        paths[UNIFIED] = os.path.join(root, "unified") + rel
    elif layout == "v2":
        paths[UNIFIED] = root + rel
    elif layout != "v1":
        raise CgroupError(root, f"unknown cgroup layout {layout!r} (use v1, hybrid or v2)")
    return paths


def _levels(top: str, path: str) -> list[str]:
    """Directories from ``top`` (the hierarchy root) down to ``path``, inclusive."""
    rel = os.path.relpath(path, top)
    out = [top]
    for part in rel.split("/"):
        out.append(os.path.join(out[-1], part))
    return out


def _walk_bottom_up(path: str) -> Iterator[str]:
    if not os.path.isdir(path):
        return
    for dirpath, _dirs, _files in os.walk(path, topdown=False):
        yield dirpath


def _procs(path: str) -> list[int]:
    try:
        with open(os.path.join(path, "cgroup.procs"), encoding="ascii") as f:
            return [int(x) for x in f.read().split()]
    except FileNotFoundError:
        return []


def _events(path: str) -> dict[str, str]:
    out = {}
    for line in _read(os.path.join(path, "cgroup.events")).splitlines():
        key, _, value = line.partition(" ")
        out[key] = value
    return out
