"""The host's cgroup hierarchies, and which of them criu-cr manages.

A process is in exactly one cgroup of every hierarchy on the host, whether
criu-cr made a cgroup there or not: a v1 hierarchy mounted by another tool
(``mount -t cgroup -o none,name=x none /mnt/x``, elogind's, openrc's) holds
a container's processes at its root. Left alone, CRIU dumps every hierarchy
a task is in, walking the task's cgroup *and everything below it*: at a
hierarchy's root that is the whole tree, which a restore then recreated
below the container's cgroup path -- the tree grew with every
checkpoint/restore and nothing removed it.

So criu-cr names the hierarchies it manages (those where it made the
container's cgroup: :data:`runtime.linux.cgroups.V1_CONTROLLERS` present on the
host, ``name=systemd`` included, and v2) and tells CRIU to dump only those
(:func:`managed_fields`, used by :func:`runtime.cr.criu_options.cgroup_part`); the
others never enter the images, so a restore never touches them and the
restored tasks stay in the restoring process's cgroup there.

Hierarchies are named as in ``/proc/PID/cgroup``: the controllers field,
``"cpu,cpuacct"`` for co-mounted controllers, ``"name=x"`` for a named one,
``""`` for v2. The parsing is pure (text in); :func:`host_hierarchies` and
:func:`remove_strays` read and change the host.
"""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass

from runtime.errors import CgroupError
from runtime.linux.procfs import parse_mountinfo

__all__ = [
    "Hierarchy", "parse_proc_cgroup", "parse_cgroup_mounts", "is_managed", "managed_fields",
    "classify", "read_proc_cgroup_text", "host_hierarchies", "remove_strays",
]

_STRAY_TIMEOUT = 1.0  # an exiting task may keep a cgroup busy for a moment


@dataclass(frozen=True, slots=True, kw_only=True)
class Hierarchy:
    """One cgroup hierarchy of the host.

    ``hid``: its number in ``/proc/PID/cgroup`` (0 for v2); ``controllers``:
    the controllers field there (``""`` for v2); ``mounts``: (mount point,
    root of the hierarchy shown there) pairs, empty when it is mounted
    nowhere this process can see; ``managed``: criu-cr makes the
    container's cgroup in it and lets CRIU dump and restore it.
    """

    hid: int
    controllers: str
    mounts: tuple[tuple[str, str], ...] = ()
    managed: bool = False

    @property
    def label(self) -> str:
        """``"v2"`` or the controllers field (``"memory"``, ``"name=x"``)."""
        return self.controllers or "v2"

    def to_dict(self) -> dict[str, object]:
        return {"hid": self.hid, "controllers": self.controllers, "label": self.label,
                "version": 2 if self.controllers == "" else 1,
                "mountpoints": [mp for mp, _ in self.mounts], "managed": self.managed}


def parse_proc_cgroup(text: str) -> list[tuple[int, str, str]]:
    """Lines of ``/proc/PID/cgroup`` as (hierarchy id, controllers field, cgroup path)."""
    out = []
    for line in text.splitlines():
        if not line.strip():
            continue
        hid, ctrls, path = line.split(":", 2)
        out.append((int(hid), ctrls, path))
    return out


def parse_cgroup_mounts(mountinfo: str) -> list[tuple[str, str, str, frozenset[str]]]:
    """The cgroup mounts of a ``/proc/PID/mountinfo``: (mount point, root, fstype, super options)."""
    return [(e.mountpoint, e.root, e.fstype, e.super_option_set) for e in parse_mountinfo(mountinfo)
            if e.fstype in ("cgroup", "cgroup2")]


def is_managed(controllers: str, managed_keys: Iterable[str]) -> bool:
    """Whether the hierarchy named ``controllers`` is one of ``managed_keys`` (controller keys).

    A co-mounted v1 hierarchy (``"cpu,cpuacct"``) is managed when any of its
    controllers is: criu-cr's cgroup for that controller is a cgroup of this
    very hierarchy.
    """
    keys = set(managed_keys)
    if controllers == "":
        return "" in keys
    return any(c in keys for c in controllers.split(","))


def managed_fields(proc_cgroup: str, managed_keys: Iterable[str]) -> tuple[str, ...]:
    """The controllers fields of ``proc_cgroup`` (a task's) that criu-cr manages, in its order.

    Exactly the strings CRIU compares ``cgroup_dump_controller`` against.
    """
    keys = set(managed_keys)
    return tuple(ctrls for _, ctrls, _ in parse_proc_cgroup(proc_cgroup) if is_managed(ctrls, keys))


def _mounted_as(controllers: str, fstype: str, opts: frozenset[str]) -> bool:
    if controllers == "":
        return fstype == "cgroup2"
    return fstype == "cgroup" and set(controllers.split(",")) <= opts


def classify(proc_cgroup: str, mountinfo: str, managed_keys: Iterable[str]) -> list[Hierarchy]:
    """Every hierarchy of ``proc_cgroup`` (a process's), with its mounts and whether it is managed."""
    keys = set(managed_keys)
    mounts = parse_cgroup_mounts(mountinfo)
    out = []
    for hid, ctrls, _ in parse_proc_cgroup(proc_cgroup):
        where = tuple((mp, root) for mp, root, fstype, opts in mounts if _mounted_as(ctrls, fstype, opts))
        out.append(Hierarchy(hid=hid, controllers=ctrls, mounts=where, managed=is_managed(ctrls, keys)))
    return out


def read_proc_cgroup_text(pid: int | str = "self") -> str:
    """``/proc/PID/cgroup`` as text. Raises OSError (FileNotFoundError once the process is gone)."""
    with open(f"/proc/{pid}/cgroup", encoding="utf-8") as f:
        return f.read()


def host_hierarchies(managed_keys: Iterable[str] | None = None) -> list[Hierarchy]:
    """The hierarchies this process is in (all of the host's, from the host's cgroup namespace).

    ``managed_keys`` defaults to what a container created now would get
    (:func:`runtime.linux.cgroups.controller_keys`). Raises OSError.
    """
    if managed_keys is None:
        from runtime.linux.cgroups import controller_keys

        try:
            managed_keys = controller_keys()
        except (CgroupError, OSError):  # no cgroups mounted: nothing is managed
            managed_keys = ()
    proc_cgroup = read_proc_cgroup_text()
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
        mountinfo = f.read()
    return classify(proc_cgroup, mountinfo, managed_keys)


def remove_strays(path: str, hierarchies: Iterable[Hierarchy]) -> tuple[list[str], list[str]]:
    """Remove directory ``path`` (a container's cgroup path, ``/criu-cr/<id>``) from unmanaged hierarchies.

    CRIU left such directories there before criu-cr told it which hierarchies
    to leave alone (and still does when restoring images written then). Only
    empty cgroups are removed, deepest first; nothing is killed. Returns
    (removed directories, directories that stayed busy or failed).
    """
    removed: list[str] = []
    failed: list[str] = []
    rel = path.strip("/")
    if not rel:
        return removed, failed
    for h in hierarchies:
        if h.managed:
            continue
        for mp, root in h.mounts:
            if root != "/":
                continue  # a bind of a subtree: the hierarchy's root mount shows the same directories
            top = os.path.join(mp, rel)
            if not os.path.isdir(top):
                continue
            for d in [dp for dp, _, _ in os.walk(top, topdown=False)]:
                if _rmdir(d):
                    removed.append(d)
                else:
                    failed.append(d)
            break
    return removed, failed


def _rmdir(d: str) -> bool:
    deadline = time.monotonic() + _STRAY_TIMEOUT
    while True:
        try:
            os.rmdir(d)
            return True
        except FileNotFoundError:
            return True
        except OSError as exc:
            if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                return False
            time.sleep(0.02)
