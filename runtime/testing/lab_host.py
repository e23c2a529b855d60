"""A lab host's side (:mod:`runtime.testing.lab`): running code "on" it, its processes and cgroups.

``LabHost.call``/``spawn`` send a module-level function by pickle to a fresh
python that entered the host's namespaces (:mod:`runtime.testing.lab_enter`);
``cli``/``popen`` run a command there. The host's processes all live in its
lab cgroups (one per hierarchy, below this process's own), which is how the
lab finds and ends them.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from runtime.linux.procfs import read_mountinfo
from runtime.net import netns as netns_mod
from runtime.testing.lab_enter import LEAF

__all__ = ["ENTER", "LabHost", "Task", "make_container_net", "delete_all_containers", "lab_cgroups", "remove_cgroups",
           "kill_all", "netns_in_use"]

ENTER = [sys.executable, "-m", "runtime.testing.lab_enter"]  # how a host's processes start
_CALL_TIMEOUT = 300.0


class Task:
    """A function running on a host in the background: ``result(timeout)``; killed (by PID) on exit."""

    def __init__(self, proc: subprocess.Popen[bytes], payload: bytes) -> None:
        self.proc = proc
        self._out: list[bytes] = []
        self._reader = threading.Thread(target=self._feed, args=(payload,), daemon=True)
        self._reader.start()

    def _feed(self, payload: bytes) -> None:
        self._out.append(self.proc.communicate(payload)[0])

    def result(self, timeout: float = _CALL_TIMEOUT) -> Any:
        self._reader.join(timeout)
        if self._reader.is_alive():
            self.kill()
            raise TimeoutError(f"the lab task {self.proc.args[3:4]} did not finish within {timeout} s")
        return _unpickle(self._out[0], self.proc.returncode)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self._reader.join(5)

    def __enter__(self) -> Task:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.kill()


def _unpickle(data: bytes, returncode: int | None) -> Any:
    if not data:
        raise RuntimeError(f"the lab host's python ended ({returncode}) without a result (see its stderr)")
    ok, value = pickle.loads(data)
    if not ok:
        raise value
    return value


@dataclass(frozen=True, kw_only=True)
class LabHost:
    """One host: ``call``/``spawn`` a module-level function on it, ``cli``/``popen`` a command."""

    name: str  # "a" or "b"
    netns: str  # its network namespace, by path on the machine
    state: str  # its state root's directory (at /run/criu-cr on the host)
    cgroups: tuple[str, ...]  # its lab cgroup in every hierarchy (machine paths)
    uplink_ip: str  # its address towards the client
    peer_ip: str  # its address towards the other host: where the other host migrates to
    client_ip: str  # the client's address on the link to this host
    anchor: int = 0

    def spec(self) -> str:
        return json.dumps({"netns": self.netns, "cgroups": list(self.cgroups), "state": self.state,
                           "anchor": self.anchor})

    def spawn(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Task:
        """``fn(*args, **kwargs)`` in a new python on this host, in the background (a Task)."""
        payload = pickle.dumps((fn, args, kwargs))
        return Task(subprocess.Popen([*ENTER, "call", self.spec()], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE), payload)

    def call(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)`` on this host; its result, or its exception raised here."""
        with self.spawn(fn, *args, **kwargs) as task:
            return task.result()

    def popen(self, argv: list[str], **kwargs: Any) -> subprocess.Popen[Any]:
        return subprocess.Popen([*ENTER, "exec", self.spec(), "--", *argv], **kwargs)

    def cli(self, *args: str, timeout: float = _CALL_TIMEOUT) -> subprocess.CompletedProcess[str]:
        """``criu-cr ARGS`` on this host (its own state root), output captured."""
        proc = self.popen([sys.executable, "-m", "runtime.cli", *args], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)

    def path(self, path: str) -> str:
        """``path`` as this host sees it (through its anchor's root), e.g. a file in a container."""
        return f"/proc/{self.anchor}/root{path}"

    def pids(self) -> list[int]:
        """Every process of this host, its anchor included."""
        return sorted({pid for d in self.cgroups[:1] for pid in _procs_below(d)})

    def mounts(self) -> list[str]:
        """The host's mount points (its mount namespace's view)."""
        return [m.mountpoint for m in read_mountinfo(self.anchor)]

    def listening(self, port: int) -> bool:
        """Whether something on this host listens on TCP ``port``."""
        with open(f"/proc/{self.anchor}/net/tcp") as f:
            rows = [line.split() for line in f.readlines()[1:]]
        return any(r[3] == "0A" and int(r[1].split(":")[1], 16) == port for r in rows)


def netns_in_use(host: LabHost, path: str) -> bool:
    """Whether a process of ``host`` is in its netns ``path`` (a container, or CRIU restoring one)."""
    try:
        ino = os.stat(host.path(path)).st_ino
    except OSError:
        return False
    for pid in _procs_below(host.cgroups[0]):
        try:
            if os.stat(f"/proc/{pid}/ns/net").st_ino == ino:
                return True
        except OSError:
            continue
    return False


def _procs_below(directory: str) -> set[int]:
    pids: set[int] = set()
    for d, _dirs, files in os.walk(directory):
        if "cgroup.procs" in files:
            with contextlib.suppress(FileNotFoundError), open(os.path.join(d, "cgroup.procs")) as f:
                pids.update(int(p) for p in f.read().split())
    return pids


def lab_cgroups(leaf: str) -> list[str]:
    """One new cgroup per hierarchy, below this process's own (its limits and accounting stay)."""
    own: list[tuple[frozenset[str], str]] = []
    with open("/proc/self/cgroup") as f:
        for line in f:
            _id, ctrls, path = line.rstrip("\n").split(":", 2)
            own.append((frozenset(ctrls.split(",")) if ctrls else frozenset(), path))
    made: list[str] = []
    for m in read_mountinfo():
        if m.fstype not in ("cgroup", "cgroup2") or not m.mountpoint.startswith("/sys/fs/cgroup"):
            continue
        opts = m.super_option_set
        mine = next((p for c, p in own if (not c and m.fstype == "cgroup2") or (c and c <= opts)), None)
        if mine is None:
            continue
        d = os.path.join(m.mountpoint, mine.lstrip("/"), leaf)
        for sub in (d, os.path.join(d, LEAF)):
            os.mkdir(sub)
            made.append(sub)
            for name in ("cpuset.cpus", "cpuset.mems"):  # a v1 cpuset child starts empty: no task may join
                src = os.path.join(os.path.dirname(sub), name)
                if os.path.exists(src) and m.fstype == "cgroup":
                    with open(src) as f, open(os.path.join(sub, name), "w") as g:
                        g.write(f.read().strip() or "\n")
    return [d for d in made if os.path.basename(d) != LEAF]


def remove_cgroups(dirs: list[str]) -> None:
    for top in dirs:
        for d, _dirs, _files in sorted(os.walk(top), key=lambda t: -t[0].count("/")):
            with contextlib.suppress(FileNotFoundError):
                os.rmdir(d)


def kill_all(dirs: list[str], budget: float = 10.0) -> None:
    deadline = time.monotonic() + budget
    while time.monotonic() < deadline:
        pids = set().union(*(_procs_below(d) for d in dirs)) if dirs else set()
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.05)



def make_container_net(name: str, host_ifname: str, host_cidr: str, ns_cidr: str) -> str:
    """On a host: the container's netns with a veth to the host (``lab.container_net`` runs this)."""
    path = netns_mod.create_netns(name)
    netns_mod.setup_veth(netns=name, host_ifname=host_ifname, ns_ifname="eth0", host_addr=host_cidr, ns_addr=ns_cidr)
    return path


def delete_all_containers() -> list[str]:
    """On a host: force-delete every container of its state root; their ids."""
    from runtime.container import Container

    gone = []
    for ctr in Container.list():
        with contextlib.suppress(Exception):
            ctr.delete(force=True)
            gone.append(ctr.id)
    return gone
