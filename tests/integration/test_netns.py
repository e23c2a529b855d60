"""runtime.net.netns on the real kernel: a named netns + veth that the host reaches over TCP.

Only namespaces and links these tests create are touched; every address is in
10.231.1.0/24 (a random /30 of it per test, so parallel runs do not collide).
"""

from __future__ import annotations

import ctypes
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pyroute2 import IPRoute

from runtime.errors import NetnsError
from runtime.net.in_netns import in_netns
from runtime.net.netns import VethPair, create_netns, delete_netns, netns_exists, netns_path, setup_veth, teardown
from runtime.net.snapshot import (InterfaceInfo, read_network_status, recreate_from_snapshot, snapshot_interfaces,
                                  write_network_status)
from runtime.testing.plugin import reserve_test_net
from tests.conftest import require

CLONE_NEWNET = 0x40000000

# Listens on the given address inside the netns, says "ready", answers one client.
SERVER = """
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(1)
print("ready", flush=True)
c, _ = s.accept()
c.sendall(b"hello from netns")
c.close()
"""


@dataclass
class Net:
    name: str
    host_if: str
    ns_if: str
    host_addr: str
    ns_addr: str
    ns_ip: str


def _host_has(ip: str) -> bool:
    with IPRoute() as ipr:
        return any(a.get_attr("IFA_ADDRESS") == ip for a in ipr.get_addr())


def _host_link_exists(ifname: str) -> bool:
    with IPRoute() as ipr:
        return bool(ipr.link_lookup(ifname=ifname))


@pytest.fixture
def net(need_root: None, criu_cr_net_pool: list[str]) -> Iterator[Net]:
    require(os.path.isdir("/proc/self/ns"), "no namespace support")
    name, host_if, subnet = reserve_test_net(criu_cr_net_pool)
    host_ip, ns_ip = (str(h) for h in subnet.hosts())
    n = Net(name=name, host_if=host_if, ns_if="eth0", host_addr=f"{host_ip}/30", ns_addr=f"{ns_ip}/30",
            ns_ip=ns_ip)
    try:
        yield n
    finally:
        teardown(netns=n.name, host_ifname=n.host_if)
        assert not os.path.lexists(netns_path(n.name))
        assert not _host_link_exists(n.host_if)


def _setns_net(path: str) -> None:
    """preexec_fn: move the child into the netns at ``path`` (Python 3.11 has no os.setns)."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(path, os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err), path)
    finally:
        os.close(fd)


def _serve_and_connect(n: Net, port: int = 8080) -> bytes:
    server = subprocess.Popen([sys.executable, "-c", SERVER, n.ns_ip, str(port)], stdout=subprocess.PIPE,
                              preexec_fn=lambda: _setns_net(netns_path(n.name)))
    try:
        assert server.stdout is not None
        assert server.stdout.readline().strip() == b"ready"
        with socket.create_connection((n.ns_ip, port), timeout=5) as s:
            data = s.recv(100)
        server.wait(timeout=5)
        return data
    finally:
        server.kill()
        server.wait()
        if server.stdout:
            server.stdout.close()


def _setup(n: Net, **kw: str) -> VethPair:
    create_netns(n.name)
    return setup_veth(netns=n.name, host_ifname=n.host_if, ns_ifname=n.ns_if,
                      host_addr=n.host_addr, ns_addr=n.ns_addr, **kw)


def test_host_reaches_tcp_server_in_netns(net: Net) -> None:
    pair = _setup(net, ns_mac="02:42:0a:e7:01:02")
    assert netns_exists(net.name)
    assert pair.ns_mac == "02:42:0a:e7:01:02" and pair.host_mac
    assert _serve_and_connect(net) == b"hello from netns"
    # the server saw the netns's own loopback up too
    lo = next(i for i in snapshot_interfaces(net.name) if i.name == "lo")
    assert lo.up and "127.0.0.1/8" in lo.addresses


def test_teardown_leaves_nothing(net: Net) -> None:
    pair = _setup(net)
    teardown(pair)
    assert not os.path.lexists(netns_path(net.name))
    assert not _host_link_exists(net.host_if)
    assert net.name not in os.listdir("/run/netns")
    teardown(pair)  # idempotent


def test_create_twice_and_exist_ok(net: Net) -> None:
    path = create_netns(net.name)
    with pytest.raises(NetnsError, match="already exists"):
        create_netns(net.name)
    assert create_netns(net.name, exist_ok=True) == path


@pytest.mark.parametrize("name", ["", "..", "x" * 300, "a/b"])
def test_bad_names_are_refused(need_root: None, name: str) -> None:
    with pytest.raises(NetnsError):
        create_netns(name)


def test_delete_missing(net: Net) -> None:
    delete_netns(net.name)  # missing_ok by default
    with pytest.raises(NetnsError, match="does not exist"):
        delete_netns(net.name, missing_ok=False)


def test_veth_into_missing_netns_is_refused(net: Net) -> None:
    with pytest.raises(NetnsError, match="does not exist"):
        setup_veth(netns=net.name, host_ifname=net.host_if, ns_ifname="eth0", host_addr=net.host_addr)
    assert not _host_link_exists(net.host_if)


@pytest.mark.parametrize("kw,words", [
    ({"host_addr": "10.231.1.1"}, "prefix length"),
    ({"ns_addr": "10.231.1.300/24"}, "invalid address"),
    ({"ns_ifname": "x" * 16}, "invalid interface name"),
])
def test_bad_arguments_make_nothing(net: Net, kw: dict[str, str], words: str) -> None:
    create_netns(net.name)
    args = {"netns": net.name, "host_ifname": net.host_if, "ns_ifname": "eth0", **kw}
    with pytest.raises(NetnsError, match=words):
        setup_veth(**args)
    assert not _host_link_exists(net.host_if)


def test_snapshot_is_json_and_recreates_the_same_network(net: Net, tmp_path: Path) -> None:
    _setup(net, ns_mac="02:42:0a:e7:01:09")
    snap = snapshot_interfaces(net.name)
    eth0 = next(i for i in snap if i.name == "eth0")
    assert eth0.kind == "veth" and eth0.mac == "02:42:0a:e7:01:09"
    assert eth0.addresses == (net.ns_addr,)
    assert eth0.peer_ifname == net.host_if and eth0.peer_addresses == (net.host_addr,)
    write_network_status(tmp_path, netns_path(net.name), snap)  # as next to checkpoint images

    teardown(netns=net.name, host_ifname=net.host_if)
    assert not netns_exists(net.name)

    status = read_network_status(tmp_path)
    assert status.netns == netns_path(net.name)
    pairs = recreate_from_snapshot(net.name, status.interfaces)
    assert [p.ns_mac for p in pairs] == ["02:42:0a:e7:01:09"]
    assert snapshot_interfaces(net.name) == snap
    assert _serve_and_connect(net, port=8081) == b"hello from netns"


def test_snapshot_by_proc_path(net: Net) -> None:
    _setup(net)
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                              preexec_fn=lambda: _setns_net(netns_path(net.name)))
    try:
        by_path = snapshot_interfaces(f"/proc/{holder.pid}/ns/net")
    finally:
        holder.kill()
        holder.wait()
    assert by_path == snapshot_interfaces(net.name)
    assert all(isinstance(i, InterfaceInfo) for i in by_path)


def test_veth_into_netns_given_by_proc_path(net: Net) -> None:
    create_netns(net.name)
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                              preexec_fn=lambda: _setns_net(netns_path(net.name)))
    try:
        setup_veth(netns=f"/proc/{holder.pid}/ns/net", host_ifname=net.host_if, ns_ifname="eth1",
                   host_addr=net.host_addr, ns_addr=net.ns_addr)
    finally:
        holder.kill()
        holder.wait()
    assert [i.name for i in snapshot_interfaces(net.name)] == ["lo", "eth1"]


def test_recreate_refuses_unknown_kinds(net: Net) -> None:
    bogus = InterfaceInfo(name="br0", kind="bridge", mac="", mtu=1500, up=True, addresses=())
    with pytest.raises(NetnsError, match="kind 'bridge'"):
        recreate_from_snapshot(net.name, [bogus])
    assert not os.path.lexists(netns_path(net.name))


def test_in_netns_runs_there_and_leaves_the_caller_where_it_was(net: Net) -> None:
    path = create_netns(net.name)
    here = os.stat("/proc/thread-self/ns/net").st_ino
    assert in_netns(path, lambda: os.stat("/proc/thread-self/ns/net").st_ino) == os.stat(path).st_ino != here
    assert os.stat("/proc/thread-self/ns/net").st_ino == here

    def fails() -> None:
        raise LookupError("from inside")

    with pytest.raises(LookupError, match="from inside"):
        in_netns(path, fails)
    with pytest.raises(OSError):
        in_netns("/proc/self/ns/uts", lambda: None)  # not a network namespace: setns(2) refuses it
