"""The processes of a lab host (:mod:`runtime.testing.lab`): its anchor, and commands run "on" it.

Run as ``python -m runtime.testing.lab_enter``::

    anchor HOSTSPEC              make the host's mount and cgroup namespaces, print "ready", live until
                                 stdin closes
    exec   HOSTSPEC -- ARGV...   enter the host (cgroups, cgroupns, netns, mntns), exec ARGV
    call   HOSTSPEC              enter the host, run the pickled (fn, args, kwargs) read from stdin,
                                 write the pickled (ok, value) to stdout (what it prints: stderr)

HOSTSPEC is JSON: ``{"netns": path, "cgroups": [lab cgroup dirs], "state": dir, "anchor": pid}``.

The anchor sees everything of the machine except what makes it a host of
its own: its ``/sys`` (sysfs of its netns, cgroup hierarchies mounted anew
inside its cgroup namespace, so ``/criu-cr/ID`` lands under the lab's
cgroup), an empty ``/run/netns`` and its state directory at
``/run/criu-cr``. Mounts of others (named netns, test mounts) are detached
from its copy so that it never keeps them alive.
"""

from __future__ import annotations

import json
import os
import pickle
import sys
import traceback
from typing import Any

from runtime.container.state import DEFAULT_ROOT
from runtime.linux import syscalls as sc
from runtime.linux.procfs import read_mountinfo

__all__ = ["LEAF", "HostError", "main"]

LEAF = "host"  # the cgroup the host's own processes live in (cgroup v2: no processes beside child cgroups)
_NETNS_DIR = "/run/netns"
_FOREIGN = ("/pytest-of-", "/criu-cr-state-")


def _join_cgroups(dirs: list[str], leaf: bool) -> None:
    for d in dirs:
        with open(os.path.join(d, LEAF, "cgroup.procs") if leaf else os.path.join(d, "cgroup.procs"), "w") as f:
            f.write(str(os.getpid()))


def _detach_foreign_mounts() -> None:
    """Drop from this namespace's copy what belongs to others: their named netns and test mounts
    (a copy here would keep a deleted netns and its veths alive after its owner removed it)."""
    for m in reversed(read_mountinfo()):
        mp = m.mountpoint
        if mp == _NETNS_DIR or mp.startswith(_NETNS_DIR + "/") or any(s in mp for s in _FOREIGN) \
                or (m.fstype in ("cgroup", "cgroup2") and not mp.startswith("/sys/fs/cgroup")):
            try:
                sc.umount2(mp, sc.MNT_DETACH)
            except OSError:
                pass  # already gone with a parent


def _remount_sys(cgroup_mounts: list[tuple[str, str, str]]) -> None:
    """sysfs of the host's netns, and the cgroup hierarchies as seen from its cgroup namespace."""
    sc.mount("sysfs", "/sys", "sysfs", sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC)
    if any(mp == "/sys/fs/cgroup" for mp, _t, _o in cgroup_mounts):  # pure cgroup v2
        sc.mount("cgroup2", "/sys/fs/cgroup", "cgroup2", sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC)
        return
    sc.mount("tmpfs", "/sys/fs/cgroup", "tmpfs", sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC, "mode=755")
    for mp, fstype, opts in cgroup_mounts:
        os.makedirs(mp, exist_ok=True)
        data = ",".join(o for o in opts.split(",") if o not in ("rw", "ro")) or None
        sc.mount(fstype, mp, fstype, sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC, data)


def anchor(spec: dict[str, Any]) -> None:
    cgroup_mounts = [(m.mountpoint, m.fstype, m.super_options) for m in read_mountinfo()
                     if m.fstype in ("cgroup", "cgroup2") and m.mountpoint.startswith("/sys/fs/cgroup")]
    _join_cgroups(spec["cgroups"], leaf=False)
    fd = os.open(spec["netns"], os.O_RDONLY | os.O_CLOEXEC)
    sc.setns(fd, sc.CLONE_NEWNET, spec["netns"])
    os.close(fd)
    sc.unshare(sc.CLONE_NEWNS | sc.CLONE_NEWCGROUP)  # the cgroupns is rooted at the lab's cgroup
    _join_cgroups(spec["cgroups"], leaf=True)
    sc.mount(None, "/", None, sc.MS_REC | sc.MS_PRIVATE)
    _detach_foreign_mounts()
    _remount_sys(cgroup_mounts)
    os.makedirs(_NETNS_DIR, exist_ok=True)
    sc.mount("tmpfs", _NETNS_DIR, "tmpfs", sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC, "mode=755")
    os.makedirs(DEFAULT_ROOT, exist_ok=True)
    sc.mount(spec["state"], DEFAULT_ROOT, None, sc.MS_BIND)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    sys.stdin.read()  # until the lab closes our stdin (or kills us)


def enter(spec: dict[str, Any]) -> None:
    """This process becomes one of the host's: its cgroup, cgroupns, netns and mntns (that one last:
    it moves the root and cwd)."""
    cwd = os.getcwd()
    _join_cgroups(spec["cgroups"], leaf=True)
    for ns, flag in (("cgroup", sc.CLONE_NEWCGROUP), ("net", sc.CLONE_NEWNET), ("mnt", sc.CLONE_NEWNS)):
        path = f"/proc/{spec['anchor']}/ns/{ns}"
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            sc.setns(fd, flag, path)
        finally:
            os.close(fd)
    os.chdir(cwd)
    os.environ.pop("CRIU_CR_ROOT", None)  # the host's own state root: /run/criu-cr


class HostError(Exception):
    """An exception raised on a lab host that pickle cannot carry back: its type's name, its text and
    its plain attributes (``err.restored_locally``...)."""

    def __init__(self, type_name: str, text: str, attrs: dict[str, Any]) -> None:
        super().__init__(f"{type_name}: {text}")
        self.type_name, self.text, self.attrs = type_name, text, attrs

    def __reduce__(self) -> tuple[Any, ...]:
        return (HostError, (self.type_name, self.text, self.attrs))

    def __getattr__(self, name: str) -> Any:
        try:
            return self.__dict__["attrs"][name]
        except KeyError:
            raise AttributeError(name) from None


def main(argv: list[str]) -> int:
    mode, spec = argv[0], json.loads(argv[1])
    if mode == "anchor":
        anchor(spec)
        return 0
    enter(spec)
    if mode == "exec":
        os.execvp(argv[3], argv[3:])
    out = os.fdopen(os.dup(1), "wb")  # the result goes to our stdout; what fn prints, to stderr
    os.dup2(2, 1)
    fn, args, kwargs = pickle.load(sys.stdin.buffer)
    try:
        result = (True, fn(*args, **kwargs))
    except BaseException as exc:  # noqa: BLE001 - handed to the caller
        exc.__notes__ = [*getattr(exc, "__notes__", []), "on the lab host:\n" + traceback.format_exc()]
        result = (False, exc)
    try:
        data = pickle.dumps(result)
        pickle.loads(data)  # an exception whose __init__ pickle cannot call again fails only here
    except Exception:  # noqa: BLE001 - it still reaches the caller, as a HostError
        exc = result[1]
        attrs = {k: v for k, v in vars(exc).items() if isinstance(v, (str, int, float, bool, type(None)))} \
            if isinstance(exc, BaseException) else {}
        data = pickle.dumps((False, HostError(type(exc).__name__, str(exc), attrs)))
    out.write(data)
    out.close()
    return 0


if __name__ == "__main__":
    from runtime.testing import lab_enter  # HostError pickled by its importable name, not __main__'s

    sys.exit(lab_enter.main(sys.argv[1:]))
