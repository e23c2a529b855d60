"""runtime.net.rtnl on the real kernel, checked against pyroute2's view of the same netns and veth.

Only the netns and veth these tests create are touched (random suffix); every
address is in 10.231.7.0/24 (a random free /29 of it per test).
"""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pyroute2 import IPRoute

from runtime.errors import NetnsError
from runtime.net import rtnl
from runtime.net.netns import create_netns, netns_exists, netns_path, setup_veth, teardown
from runtime.net.snapshot import InterfaceInfo, snapshot_interfaces
from runtime.testing.plugin import reserve_test_net
from tests.conftest import require

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Net:
    name: str
    host_if: str
    host_addr: str
    ns_addrs: tuple[str, ...]


def _host_ips() -> set[str]:
    with IPRoute() as ipr:
        return {a.get_attr("IFA_ADDRESS") for a in ipr.get_addr()}


@pytest.fixture
def net(need_root: None, criu_cr_net_pool: list[str]) -> Iterator[Net]:
    require(os.path.isdir("/proc/self/ns"), "no namespace support")
    name, host_if, subnet = reserve_test_net(criu_cr_net_pool, prefixlen=29)
    hosts = [str(h) for h in subnet.hosts()]
    n = Net(name=name, host_if=host_if, host_addr=f"{hosts[0]}/29", ns_addrs=(f"{hosts[1]}/29", f"{hosts[2]}/29"))
    try:
        create_netns(n.name)
        setup_veth(netns=n.name, host_ifname=n.host_if, ns_ifname="eth0", host_addr=n.host_addr,
                   ns_addr=n.ns_addrs, ns_mac="02:42:0a:e7:07:02")
        yield n
    finally:
        teardown(netns=n.name, host_ifname=n.host_if)
        assert not os.path.lexists(netns_path(n.name))
        with IPRoute() as ipr:
            assert not ipr.link_lookup(ifname=n.host_if)


def _pyroute2_snapshot(netns: str) -> list[InterfaceInfo]:
    """What snapshot_interfaces() returned when it read through pyroute2 (its former code)."""
    def by_index(msgs: Any) -> dict[int, list[str]]:
        out: dict[int, list[str]] = {}
        for m in msgs:
            ip = m.get_attr("IFA_ADDRESS")
            if ip is not None and not ipaddress.ip_address(ip).is_link_local:
                out.setdefault(m["index"], []).append(f"{ip}/{m['prefixlen']}")
        return out

    with IPRoute(netns=netns_path(netns), flags=0) as ns:
        links, addrs = list(ns.get_links()), by_index(ns.get_addr())
    out = []
    with IPRoute() as ipr:
        for link in links:
            idx, info = link["index"], link.get_attr("IFLA_LINKINFO")
            kind = (info.get_attr("IFLA_INFO_KIND") if info else None) or (
                "loopback" if link.get_attr("IFLA_IFNAME") == "lo" else "unknown")
            peer: dict[str, Any] = {}
            peer_idx = link.get_attr("IFLA_LINK")
            if kind == "veth" and peer_idx and link.get_attr("IFLA_LINK_NETNSID") is not None:
                found = [p for p in ipr.get_links(peer_idx) if p.get_attr("IFLA_LINK") == idx]
                if found:
                    peer = {"peer_ifname": found[0].get_attr("IFLA_IFNAME"),
                            "peer_mac": found[0].get_attr("IFLA_ADDRESS"),
                            "peer_addresses": tuple(by_index(ipr.get_addr()).get(peer_idx, ()))}
            out.append(InterfaceInfo(
                name=link.get_attr("IFLA_IFNAME"), kind=kind, mac=link.get_attr("IFLA_ADDRESS") or "",
                mtu=link.get_attr("IFLA_MTU") or 0, up=bool(link["flags"] & 1),
                addresses=tuple(addrs.get(idx, ())), **peer))
    return out


def test_snapshot_matches_pyroute2(net: Net) -> None:
    snap = snapshot_interfaces(net.name)
    assert snap == _pyroute2_snapshot(net.name)
    lo, eth0 = snap
    assert (lo.kind, lo.up, lo.addresses) == ("loopback", True, ("127.0.0.1/8", "::1/128"))
    assert eth0.kind == "veth" and eth0.up and eth0.mac == "02:42:0a:e7:07:02"
    assert eth0.addresses == net.ns_addrs  # the kernel's fe80:: address is left out
    assert (eth0.peer_ifname, eth0.peer_addresses) == (net.host_if, (net.host_addr,))


def test_raw_records_match_pyroute2(net: Net) -> None:
    with rtnl.open_socket(netns_path(net.name)) as sock:
        links, addrs = rtnl.dump_links(sock), rtnl.dump_addresses(sock)
    with IPRoute(netns=netns_path(net.name), flags=0) as ipr:
        want_links, want_addrs = list(ipr.get_links()), list(ipr.get_addr())
    assert [(lk.index, lk.ifname, lk.flags, lk.mac, lk.mtu, lk.link, lk.link_netnsid) for lk in links] == [
        (w["index"], w.get_attr("IFLA_IFNAME"), w["flags"], w.get_attr("IFLA_ADDRESS"), w.get_attr("IFLA_MTU"),
         w.get_attr("IFLA_LINK") or 0, w.get_attr("IFLA_LINK_NETNSID")) for w in want_links]
    assert [(a.index, a.family, a.prefixlen, a.scope, a.address, a.local) for a in addrs] == [
        (w["index"], w["family"], w["prefixlen"], w["scope"], w.get_attr("IFA_ADDRESS"), w.get_attr("IFA_LOCAL"))
        for w in want_addrs]
    assert any(a.address and a.address.startswith("fe80:") for a in addrs)  # what the snapshot leaves out


def test_get_link_in_callers_netns(net: Net) -> None:
    with IPRoute() as ipr:
        idx = ipr.link_lookup(ifname=net.host_if)[0]
        want = ipr.get_links(idx)[0]
    with rtnl.open_socket() as sock:
        link = rtnl.get_link(sock, idx)
        assert rtnl.get_link(sock, 0x7FFFFFF0) is None
    assert link is not None and (link.ifname, link.kind, link.mac) == (
        net.host_if, "veth", want.get_attr("IFLA_ADDRESS"))


def test_open_socket_leaves_the_callers_netns_alone(net: Net) -> None:
    before = os.readlink("/proc/thread-self/ns/net")
    with rtnl.open_socket(netns_path(net.name)) as sock:
        assert [lk.ifname for lk in rtnl.dump_links(sock)] == ["lo", "eth0"]
    assert os.readlink("/proc/thread-self/ns/net") == before
    with rtnl.open_socket() as sock:  # still the host's view: our veth end, not eth0's netns
        assert net.host_if in [lk.ifname for lk in rtnl.dump_links(sock)]


def test_open_socket_errors(net: Net) -> None:
    with pytest.raises(FileNotFoundError):
        rtnl.open_socket(netns_path(net.name) + "-missing")
    with pytest.raises(OSError) as ei:
        rtnl.open_socket("/proc/self/ns/uts")  # not a network namespace: setns(2) refuses it
    assert ei.value.filename == "/proc/self/ns/uts"
    with pytest.raises(NetnsError, match="does not exist"):
        snapshot_interfaces(net.name + "-missing")


@pytest.mark.parametrize("which", ["named", "self"])
def test_checkpoint_process_never_imports_pyroute2(net: Net, which: str) -> None:
    """What `criu-cr checkpoint` loads, then a snapshot: no pyroute2 (its import alone is ~0.25 s)."""
    target = net.name if which == "named" else "/proc/self/ns/net"
    code = (
        "import json, sys\n"
        "import runtime.cr.checkpoint\n"
        "import runtime.net.netns\n"
        "from runtime.net import snapshot\n"
        f"snap = snapshot.snapshot_interfaces({target!r})\n"
        "assert 'pyroute2' not in sys.modules, sorted(m for m in sys.modules if m.startswith('pyroute2'))\n"
        "print(json.dumps([i.to_dict() for i in snap]))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    snap = [InterfaceInfo.from_dict(d) for d in json.loads(out.stdout)]
    if which == "named":
        assert snap == snapshot_interfaces(net.name)
    else:
        assert net.host_if in [i.name for i in snap]
    assert netns_exists(net.name)
