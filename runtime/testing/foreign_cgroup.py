"""A throwaway cgroup v1 named hierarchy, as another tool on the host would mount one.

Every process on the host is a member of every v1 hierarchy, at its root
unless moved: a container criu-cr runs sits at the root of this one, which
criu-cr does not manage. Used by the tests that check such hierarchies are
left alone by checkpoint/restore, and (``$CRIU_CR_TEST_FOREIGN_CGROUP=1``,
see the plugin) to run a whole test session with one present.

Removing a v1 hierarchy takes care: the kernel keeps a hierarchy that still
had cgroups when it was last unmounted, even after they are removed
(measured on Linux 6.18), so :func:`remove_foreign_hierarchy` empties it,
unmounts, and while the name is still in ``/proc/PID/cgroup`` mounts,
empties and unmounts it once more. The hierarchy has no controllers, so moving
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

from runtime.linux import syscalls as sc

__all__ = ["ForeignHierarchy", "mount_foreign_hierarchy", "remove_foreign_hierarchy", "foreign_hierarchy",
           "sweep_orphans", "NAME_PREFIX"]

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
    return _mount_on_new_dir(f"{NAME_PREFIX}{secrets.token_hex(4)}", parent)


def _mount_on_new_dir(name: str, parent: str | None) -> ForeignHierarchy:
    """Mount (or create) the named hierarchy ``name`` on a new temporary directory. Raises OSError."""
    path = tempfile.mkdtemp(prefix=f"{name}-", dir=parent)
    try:
        _mount(name, path)
    except BaseException:
        os.rmdir(path)
        raise
    return ForeignHierarchy(name=name, path=path)


def _empty(h: ForeignHierarchy, deadline: float) -> None:
    """Remove every cgroup below the root, moving the tasks they hold to the root first."""
    root_procs = os.path.join(h.path, "cgroup.procs")
    while True:
        subdirs = [dp for dp, _, _ in os.walk(h.path, topdown=False) if dp != h.path]
        if not subdirs:
            return
        for d in subdirs:
            try:
                with open(os.path.join(d, "cgroup.procs"), encoding="ascii") as f:
                    pids = f.read().split()
                for pid in pids:
                    with contextlib.suppress(ProcessLookupError), open(root_procs, "w", encoding="ascii") as f:
                        f.write(pid)
                os.rmdir(d)
            except FileNotFoundError:
                pass
            except OSError as exc:
                # EBUSY: a task still exiting, or a cgroup made meanwhile: walk again
                if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                    raise
        time.sleep(0.02)


def _gone(h: ForeignHierarchy, wait: float) -> bool:
    end = time.monotonic() + wait
    while h.exists():
        if time.monotonic() > end:
            return False
        time.sleep(0.02)  # the kernel releases it from a workqueue
    return True


def remove_foreign_hierarchy(h: ForeignHierarchy, timeout: float = REMOVE_TIMEOUT) -> None:
    """Empty, unmount and make the kernel drop ``h``; remove its mount point.

    The kernel drops a v1 hierarchy at the unmount of its last mount only if
    it has no cgroups then, and a cgroup removed just before may still count
    (it is released asynchronously). A hierarchy that outlived its unmount
    goes with one more mount and unmount by name once emptied (measured
    here); that is repeated until it is gone. Raises OSError, or
    RuntimeError when the kernel still lists the hierarchy after ``timeout``.
    """
    deadline = time.monotonic() + timeout
    _empty(h, deadline)
    sc.umount2(h.path)
    while not _gone(h, 0.5):
        if time.monotonic() > deadline:
            elsewhere = _mounted_at(h)
            raise RuntimeError(f"cgroup hierarchy {h.controllers} still exists {timeout:g} s after its removal"
                               + (f"; still mounted at {', '.join(elsewhere)} (a CRIU run that put it in its "
                                  "cgroup yard?)" if elsewhere else ""))
        _mount(h.name, h.path)
        try:
            _empty(h, deadline)
        finally:
            sc.umount2(h.path)
    os.rmdir(h.path)


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


def _mounted_anywhere() -> set[str]:
    """Names of ``ccrt-`` hierarchies some process has mounted (any mount namespace)."""
    names: set[str] = set()
    seen: set[str] = set()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            ns = os.readlink(f"/proc/{pid}/ns/mnt")
            if ns in seen:
                continue
            seen.add(ns)
            with open(f"/proc/{pid}/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
                text = f.read()
        except OSError:
            continue
        for line in text.splitlines():
            for opt in line.partition(" - ")[2].split()[2:3]:
                names.update(o[5:] for o in opt.split(",") if o.startswith(f"name={NAME_PREFIX}"))
    return names


def sweep_orphans(parent: str | None = None) -> list[str]:
    """Remove ``ccrt-`` hierarchies the kernel keeps though nothing mounts them; return their names.

    They outlive a run when a CRIU that dumped one while it existed (a
    criu-cr without the fix of issue 14, on the same host) recreates it at
    restore and leaves cgroups in it. Hierarchies still mounted somewhere (a
    CRIU at work) are left alone.
    """
    with open("/proc/self/cgroup", encoding="utf-8") as f:
        names = [ln.split(":", 2)[1][5:] for ln in f if ln.split(":", 2)[1].startswith(f"name={NAME_PREFIX}")]
    busy = _mounted_anywhere()
    swept = []
    for name in names:
        if name in busy:
            continue
        remove_foreign_hierarchy(_mount_on_new_dir(name, parent))
        swept.append(name)
    return swept


if __name__ == "__main__":
    print("\n".join(sweep_orphans()) or "no orphaned ccrt- hierarchy")

