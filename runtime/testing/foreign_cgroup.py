"""A throwaway cgroup v1 named hierarchy, as another tool on the host would mount one.

Every process on the host is a member of every v1 hierarchy, at its root
unless moved: a container criu-cr runs sits at the root of this one, which
criu-cr does not manage. Used by the tests that check such hierarchies are
left alone by checkpoint/restore, and (``$CRIU_CR_TEST_FOREIGN_CGROUP=1``,
see the plugin) to run a whole test session with one present.

Removing a v1 hierarchy takes care: the kernel keeps a hierarchy that still
had cgroups when it was last unmounted, even after they are removed
(measured on Linux 6.18), so :func:`remove_foreign_hierarchy` empties it,
unmounts, mounts and unmounts it once more, and waits until the name is
gone from ``/proc/PID/cgroup``. The hierarchy has no controllers, so moving
any process to its root there changes nothing for that process: that is how
cgroups still holding tasks (of other criu-cr runs on the host) are emptied.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass

from .. import syscalls as sc

__all__ = ["ForeignHierarchy", "mount_foreign_hierarchy", "remove_foreign_hierarchy", "foreign_hierarchy",
           "NAME_PREFIX"]

NAME_PREFIX = "ccrt-"
REMOVE_TIMEOUT = 10.0


@dataclass(frozen=True, kw_only=True)
class ForeignHierarchy:
    """A mounted named hierarchy: ``name`` (``ccrt-<hex>``) mounted at ``path``."""

    name: str
    path: str

    @property
    def controllers(self) -> str:
        """How ``/proc/PID/cgroup`` names it."""
        return f"name={self.name}"

    def dirs(self) -> list[str]:
        """Every cgroup below the root, as paths relative to it (``criu-cr/c1``), sorted."""
        return sorted(os.path.relpath(d, self.path) for d, _, _ in os.walk(self.path) if d != self.path)

    def cgroup_of(self, pid: int | str) -> str | None:
        """The cgroup of ``pid`` in this hierarchy (``/``), None if the kernel lists no such hierarchy."""
        with open(f"/proc/{pid}/cgroup", encoding="utf-8") as f:
            for line in f:
                _, ctrls, path = line.rstrip("\n").split(":", 2)
                if ctrls == self.controllers:
                    return path
        return None

    def exists(self) -> bool:
        """Whether the kernel still has the hierarchy (every process is in every v1 hierarchy)."""
        return self.cgroup_of("self") is not None


def _mount(name: str, path: str) -> None:
    sc.mount("none", path, "cgroup", sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC, f"none,name={name}")


def mount_foreign_hierarchy(parent: str | None = None) -> ForeignHierarchy:
    """Mount a new named hierarchy with a unique name on a new directory. Raises OSError."""
    name = f"{NAME_PREFIX}{secrets.token_hex(4)}"
    path = tempfile.mkdtemp(prefix=f"{name}-", dir=parent)
    try:
        _mount(name, path)
    except BaseException:
        os.rmdir(path)
        raise
    return ForeignHierarchy(name=name, path=path)


def _empty(h: ForeignHierarchy, deadline: float) -> None:
    root_procs = os.path.join(h.path, "cgroup.procs")
    for d in [dp for dp, _, _ in os.walk(h.path, topdown=False) if dp != h.path]:
        while True:
            with open(os.path.join(d, "cgroup.procs"), encoding="ascii") as f:
                pids = f.read().split()
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    with open(root_procs, "w", encoding="ascii") as f:
                        f.write(pid)
            try:
                os.rmdir(d)
                break
            except OSError as exc:
                if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)


def remove_foreign_hierarchy(h: ForeignHierarchy, timeout: float = REMOVE_TIMEOUT) -> None:
    """Empty, unmount and make the kernel drop ``h``; remove its mount point.

    Raises OSError, or RuntimeError when the kernel still lists the hierarchy
    after ``timeout``.
    """
    deadline = time.monotonic() + timeout
    _empty(h, deadline)
    sc.umount2(h.path)
    # Once more, empty: the kernel drops a v1 hierarchy when it is unmounted without cgroups.
    _mount(h.name, h.path)
    try:
        _empty(h, deadline)
    finally:
        sc.umount2(h.path)
    os.rmdir(h.path)
    while h.exists():
        if time.monotonic() > deadline:
            elsewhere = _mounted_at(h)
            raise RuntimeError(f"cgroup hierarchy {h.controllers} still exists {timeout:g} s after its removal"
                               + (f"; still mounted at {', '.join(elsewhere)} (a CRIU run that put it in its "
                                  "cgroup yard?)" if elsewhere else ""))
        time.sleep(0.05)  # the kernel releases it from a workqueue


def _mounted_at(h: ForeignHierarchy) -> list[str]:
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
        return [line.split()[4] for line in f
                if line.partition(" - ")[2].split()[:1] == ["cgroup"]
                and h.controllers in line.partition(" - ")[2].split()[2].split(",")]


@contextlib.contextmanager
def foreign_hierarchy(parent: str | None = None) -> Iterator[ForeignHierarchy]:
    """A named hierarchy for the duration of the ``with`` block, removed even when it fails."""
    h = mount_foreign_hierarchy(parent)
    try:
        yield h
    finally:
        remove_foreign_hierarchy(h)
