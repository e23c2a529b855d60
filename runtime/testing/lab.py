"""The two-host lab (issue 10): two "hosts" and a client on one machine, for migrations over TCP.

    with Lab.create(pool=["10.231.2.0/24"], workdir=tmp) as lab:
        net = lab.container_net(lab.a)             # the container's netns, on host a
        lab.a.call(some_module_function, ...)      # runs in a fresh python "on" host a
        lab.a.cli("list")                          # criu-cr on host a (its own /run/criu-cr)
        lab.http_get(net.ip)                       # from the client namespace

Each host has its own network namespace (named ``ccrt-<tag>a``/``b`` on the
machine), its own mount namespace (``/run/netns`` and ``/run/criu-cr``
private: each host can hold a netns of the same name, and its state root
``LabHost.state`` is a directory the other host never reads), its own
cgroup namespace rooted at a lab cgroup (``/criu-cr/ID`` of each host are
different cgroups), and an anchor process keeping those alive. Commands
run "on" a host are child processes that enter all of them
(:mod:`runtime.testing.lab_enter`).

Network (addresses: one /28 of the pool; the lab's namespaces reach nothing
else, so two labs may use the same /28)::

    client .1 ---- .2  host a  .9 ---- .10  host b  .6 ---- .5 client
                     .13 veth -> container .14/28 (on whichever host runs it)

The client reaches the container's IP through a /32 route via the host that
holds it. The lab follows the processes in the container's netns: when they
appear on a host (a destination restoring, which happens only once the
source is frozen or gone), the route moves there; when they leave the
holder (a failed restore cleaned up), it moves back. The container's
address is a /28 so that its peers are on-link (hosts answer ARP for them
with proxy_arp): network.status recreates addresses, not routes.

Everything is removed by ``close()``: the hosts' containers (criu-cr
delete), then every process of the lab's cgroups (by PID), its cgroups, its
namespaces and veths, its state directories.
"""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from runtime.linux import syscalls as sc
from runtime.net import netns as netns_mod
from runtime.net.in_netns import in_netns
from runtime.testing.lab_host import (ENTER, LabHost, Task, delete_all_containers, kill_all, lab_cgroups,
                                      make_container_net, netns_in_use, remove_cgroups)
from runtime.testing.net import http_get

__all__ = ["Lab", "LabHost", "LabNet", "Task", "Poller", "LAB_PORT", "delete_all_containers"]

LAB_PORT = 7070  # free on every lab host: their network namespaces are the lab's own


@dataclass(frozen=True, kw_only=True)
class LabNet:
    """The container's network namespace on a lab host (``path`` is valid on every host)."""

    name: str
    path: str
    host_ifname: str
    ns_ifname: str
    host_ip: str
    ip: str


def _sysctl(key: str, value: str) -> None:
    with open(f"/proc/sys/{key}", "w") as f:
        f.write(value)


def _in(netns: str, fn: Callable[[], Any]) -> Any:
    return in_netns(netns, fn)


class Poller:
    """A client asking ``http://IP/`` every 10 ms from the client namespace; ``answered`` holds the
    times it was answered, ``longest_gap()`` is the downtime a client saw."""

    def __init__(self, netns: str, ip: str, period: float = 0.01) -> None:
        self.answered: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(netns, ip, period), daemon=True)
        self._thread.start()

    def _run(self, netns: str, ip: str, period: float) -> None:
        fd = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
        try:
            sc.setns(fd, sc.CLONE_NEWNET, netns)  # this thread alone, for its whole life
        finally:
            os.close(fd)
        while not self._stop.is_set():
            with contextlib.suppress(OSError, ValueError):
                if http_get(ip, 80, timeout=0.2)[0] == 200:
                    self.answered.append(time.monotonic())
            self._stop.wait(period)

    def seen_after(self, t: float) -> bool:
        return bool(self.answered) and self.answered[-1] > t

    def longest_gap(self) -> float:
        return max((b - a for a, b in zip(self.answered, self.answered[1:])), default=0.0)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


@dataclass(kw_only=True)
class Lab:
    """Two hosts ``a`` and ``b`` and a client namespace (see the module's text)."""

    tag: str
    client: str  # the client's netns path
    a: LabHost
    b: LabHost
    subnet: ipaddress.IPv4Network
    workdir: str
    _anchors: list[subprocess.Popen[bytes]] = field(default_factory=list)
    _netns: list[str] = field(default_factory=list)
    _cgroups: list[str] = field(default_factory=list)
    _followers: list[tuple[LabNet, threading.Event, threading.Thread]] = field(default_factory=list)

    @classmethod
    @contextlib.contextmanager
    def create(cls, *, pool: list[str], workdir: str) -> Iterator[Lab]:
        """Build the lab; everything is removed when the block ends, also after a failure."""
        from runtime.testing.plugin import reserve_test_net

        name, _veth, subnet = reserve_test_net(pool, prefixlen=28)  # names the leftover check knows
        tag = name.removeprefix("ccrt-")
        ip = [str(subnet.network_address + i) for i in range(16)]
        hosts = {h: LabHost(name=h, netns=netns_mod.netns_path(f"ccrt-{tag}{h}"), state=os.path.join(workdir, h),
                            cgroups=(), uplink_ip=ip[2 if h == "a" else 6], peer_ip=ip[9 if h == "a" else 10],
                            client_ip=ip[1 if h == "a" else 5]) for h in "ab"}
        lab = cls(tag=tag, client=netns_mod.netns_path(f"ccrt-{tag}c"), a=hosts["a"], b=hosts["b"], subnet=subnet,
                  workdir=workdir)
        try:
            lab._build()
            yield lab
        finally:
            lab.close()

    def hosts(self) -> tuple[LabHost, LabHost]:
        return self.a, self.b

    def _build(self) -> None:
        for path in (self.client, self.a.netns, self.b.netns):
            netns_mod.create_netns(os.path.basename(path))
            self._netns.append(os.path.basename(path))
            _in(path, lambda: [_sysctl(k, v) for k, v in (("net/ipv4/ip_forward", "1"),
                                                           ("net/ipv4/conf/all/rp_filter", "0"),
                                                           ("net/ipv4/conf/default/rp_filter", "0"),
                                                           ("net/ipv4/conf/all/proxy_arp", "1"))])
        c, a, b = (os.path.basename(p) for p in (self.client, self.a.netns, self.b.netns))
        _in(self.client, lambda: netns_mod.setup_veth(netns=a, host_ifname=f"ccrh{self.tag}a", ns_ifname="up0",
                                                      host_addr=f"{self.a.client_ip}/30", ns_addr=f"{self.a.uplink_ip}/30"))
        _in(self.client, lambda: netns_mod.setup_veth(netns=b, host_ifname=f"ccrh{self.tag}b", ns_ifname="up0",
                                                      host_addr=f"{self.b.client_ip}/30", ns_addr=f"{self.b.uplink_ip}/30"))
        _in(self.a.netns, lambda: netns_mod.setup_veth(netns=b, host_ifname="peer0", ns_ifname="peer0",
                                                       host_addr=f"{self.a.peer_ip}/30", ns_addr=f"{self.b.peer_ip}/30"))
        for me, other in ((self.a, self.b), (self.b, self.a)):  # either client address answers from either host
            _in(me.netns, lambda me=me, other=other: _route(f"{other.client_ip}/32", me.client_ip))
        for h in ("a", "b"):
            host = getattr(self, h)
            os.makedirs(host.state, mode=0o711)
            cgs = lab_cgroups(f"criu-cr-test-lab-{self.tag}{h}")
            self._cgroups += cgs
            host = dataclasses.replace(host, cgroups=tuple(cgs))
            proc = subprocess.Popen([*ENTER, "anchor", host.spec()], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
            self._anchors.append(proc)
            if proc.stdout.readline() != b"ready\n":  # type: ignore[union-attr]
                proc.wait(10)
                raise RuntimeError(f"lab host {h} did not start (exit {proc.returncode}; see stderr)")
            setattr(self, h, dataclasses.replace(host, anchor=proc.pid))

    # -- the container's network ----------------------------------------------------------

    def container_net(self, host: LabHost) -> LabNet:
        """The container's netns on ``host`` (the same name is free on the other); the client's route
        follows the processes in it from host to host from now on."""
        base = self.subnet.network_address
        net = LabNet(name=f"ccrt-{self.tag}n", path=f"/run/netns/ccrt-{self.tag}n", host_ifname=f"ccrh{self.tag}n",
                     ns_ifname="eth0", host_ip=str(base + 13), ip=str(base + 14))
        host.call(make_container_net, net.name, net.host_ifname, f"{net.host_ip}/30", f"{net.ip}/28")
        self.route(net.ip, host)
        stop = threading.Event()
        thread = threading.Thread(target=self._follow, args=(net, host, stop), daemon=True)
        thread.start()
        self._followers.append((net, stop, thread))
        return net

    def route(self, ip: str, host: LabHost) -> None:
        """The client reaches ``ip`` through ``host`` from now on."""
        _in(self.client, lambda: _route(f"{ip}/32", host.uplink_ip))

    def _follow(self, net: LabNet, holder: LabHost, stop: threading.Event) -> None:
        """Route the client to the host whose processes entered the container's netns last (a restore
        on the destination; the source is frozen or gone by then), back when they leave it there."""
        had = {h.name: h is holder for h in self.hosts()}
        while not stop.wait(0.005):
            has = {h.name: netns_in_use(h, net.path) for h in self.hosts()}
            gained = [h for h in self.hosts() if has[h.name] and not had[h.name]]
            if gained and gained[0] is not holder:
                holder = gained[0]
                self.route(net.ip, holder)
            elif not has[holder.name] and had[holder.name]:
                others = [h for h in self.hosts() if has[h.name]]
                if others:
                    holder = others[0]
                    self.route(net.ip, holder)
            had = has

    # -- the client -----------------------------------------------------------------------

    def connect(self, ip: str, port: int, timeout: float = 5.0) -> Any:
        """A TCP connection from the client namespace (a socket usable from any thread)."""
        import socket

        return _in(self.client, lambda: socket.create_connection((ip, port), timeout=timeout))

    def http_get(self, ip: str, port: int = 80, timeout: float = 5.0) -> tuple[int, bytes]:
        return _in(self.client, lambda: http_get(ip, port, timeout=timeout))

    def wait_http(self, ip: str, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.http_get(ip, timeout=1.0)
                return
            except (OSError, ValueError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    @contextlib.contextmanager
    def poller(self, ip: str) -> Iterator[Poller]:
        p = Poller(self.client, ip)
        try:
            yield p
        finally:
            p.stop()

    # -- teardown -------------------------------------------------------------------------

    def close(self) -> None:
        """Remove everything; every step runs even when one before failed (the first error is raised)."""
        errors: list[Exception] = []
        for step in (self._stop_followers, self._delete_containers, lambda: kill_all(self._cgroups),
                     self._reap_anchors, lambda: remove_cgroups(self._cgroups), self._delete_namespaces,
                     self._remove_state):
            try:
                step()
            except Exception as exc:  # noqa: BLE001 - the next steps still clean up
                errors.append(exc)
        if errors:
            raise errors[0]

    def _stop_followers(self) -> None:
        for _net, stop, thread in self._followers:
            stop.set()
            thread.join(5)

    def _delete_containers(self) -> None:
        for h in self.hosts():
            if h.anchor:
                with contextlib.suppress(Exception):
                    h.call(delete_all_containers)

    def _reap_anchors(self) -> None:
        for proc in self._anchors:
            proc.kill()  # our child, by its pid (already dead with its cgroup, normally)
            proc.wait(10)

    def _delete_namespaces(self) -> None:
        for name in reversed(self._netns):
            netns_mod.delete_netns(name)

    def _remove_state(self) -> None:
        for h in self.hosts():
            shutil.rmtree(h.state, ignore_errors=True)  # its mounts died with the host's mount namespace


def _route(dst: str, gateway: str) -> None:
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        ipr.route("replace", dst=dst, gateway=gateway)
