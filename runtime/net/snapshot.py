"""A network namespace's interfaces: the snapshot, its file ``network.status``, and recreating the netns.

:func:`snapshot_interfaces` describes a netns' interfaces; a checkpoint writes
them next to its images with :func:`write_network_status` and a restore whose
netns is gone reads them back with :func:`read_network_status` and rebuilds
the netns, veths, addresses and MACs with :func:`recreate_from_snapshot`.
This module is the file's only reader and writer.

The snapshot, the one read-only path, goes through :mod:`runtime.net.rtnl` (plain
``socket`` netlink) instead of pyroute2: every ``criu-cr checkpoint`` process
takes one, and importing pyroute2 alone costs ~0.25 s there.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from runtime.errors import NetnsError
from runtime.linux.fsmode import open_private
from runtime.net.netns import (VethPair, add_addresses, create_netns, delete_netns, netns_exists, netns_path,
                               setup_veth, teardown)

if TYPE_CHECKING:
    from runtime.net import rtnl

__all__ = [
    "NETWORK_FILE", "NETWORK_STATUS_VERSION", "InterfaceInfo", "NetworkStatus", "snapshot_interfaces",
    "write_network_status", "read_network_status", "parse_network_status", "recreate_from_snapshot",
]

NETWORK_FILE = "network.status"  # next to the checkpoint images
NETWORK_STATUS_VERSION = 1  # checkpoints before the version field wrote {"netns", "interfaces"}: read as 1


@dataclass(frozen=True, slots=True, kw_only=True)
class InterfaceInfo:
    """One interface of a netns; ``peer_*`` describe a veth's end in the caller's netns."""

    name: str
    kind: str  # "loopback", "veth", or the kernel's link kind
    mac: str
    mtu: int
    up: bool
    addresses: tuple[str, ...]  # CIDR; IPv6 link-local (kernel-made) ones are left out
    peer_ifname: str | None = None
    peer_mac: str | None = None
    peer_addresses: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["addresses"] = list(self.addresses)
        d["peer_addresses"] = list(self.peer_addresses)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> InterfaceInfo:
        d = dict(data)
        d["addresses"] = tuple(d.get("addresses", ()))
        d["peer_addresses"] = tuple(d.get("peer_addresses", ()))
        return cls(**d)


@dataclass(frozen=True, slots=True, kw_only=True)
class NetworkStatus:
    """What ``network.status`` holds: the netns path at checkpoint time and its interfaces."""

    netns: str  # "" in files written without it
    interfaces: tuple[InterfaceInfo, ...]


def snapshot_interfaces(netns: str) -> list[InterfaceInfo]:
    """Describe every interface in ``netns`` (a name or a path such as ``/proc/PID/ns/net``).

    For a veth whose peer is in the caller's netns, the peer's name, MAC and
    addresses are recorded too. Read with :mod:`runtime.net.rtnl`, not pyroute2 (see
    there why). Raises :class:`NetnsError`.
    """
    from runtime.net import rtnl

    if not netns_exists(netns):
        raise NetnsError(netns, "network namespace does not exist")
    try:
        with rtnl.open_socket(netns_path(netns)) as ns:
            links = rtnl.dump_links(ns)
            addrs = _addresses_by_index(rtnl.dump_addresses(ns))
    except OSError as exc:
        raise NetnsError(netns, f"cannot read its links and addresses over netlink: {exc.strerror or exc}") from exc
    peers = _veth_peers([link for link in links if link.kind == "veth" and link.link
                         and link.link_netnsid is not None])
    return [InterfaceInfo(name=link.ifname, kind=link.kind or ("loopback" if link.ifname == "lo" else "unknown"),
                          mac=link.mac, mtu=link.mtu, up=bool(link.flags & rtnl.IFF_UP),
                          addresses=tuple(addrs.get(link.index, ())), **peers.get(link.index, {}))
            for link in links]


def recreate_from_snapshot(netns: str, interfaces: Iterable[InterfaceInfo | dict[str, Any]], *,
                           exist_ok: bool = False) -> list[VethPair]:
    """Create ``netns`` again with the veths of a :func:`snapshot_interfaces` record.

    Every veth gets its names, MACs and addresses back; ``lo`` is brought up.
    Interfaces of other kinds are refused. On failure everything made is
    removed. Raises :class:`NetnsError`.
    """
    infos = [i if isinstance(i, InterfaceInfo) else InterfaceInfo.from_dict(i) for i in interfaces]
    for info in infos:
        if info.kind not in ("loopback", "veth"):
            raise NetnsError(info.name, f"cannot recreate an interface of kind {info.kind!r}; only veth is supported")
        if info.kind == "veth" and not info.peer_ifname:
            raise NetnsError(info.name, "veth peer unknown (it was not in the host namespace at snapshot time)")
    existed = netns_exists(netns)
    create_netns(netns, exist_ok=exist_ok)
    pairs: list[VethPair] = []
    try:
        for info in infos:
            if info.kind != "veth":
                continue
            assert info.peer_ifname is not None
            pairs.append(setup_veth(
                netns=netns, host_ifname=info.peer_ifname, ns_ifname=info.name,
                host_addr=info.peer_addresses[0] if info.peer_addresses else None,
                ns_addr=info.addresses, ns_mac=info.mac or None, host_mac=info.peer_mac or None))
            if len(info.peer_addresses) > 1:
                add_addresses(info.peer_ifname, info.peer_addresses[1:])
    except BaseException:
        for pair in pairs:
            teardown(host_ifname=pair.host_ifname)
        if not existed:
            delete_netns(netns)
        raise
    return pairs


def write_network_status(directory: str | os.PathLike[str], netns: str,
                         interfaces: Iterable[InterfaceInfo]) -> str:
    """Write ``network.status`` (0600, atomically) into ``directory``; returns its path."""
    path = os.path.join(os.fspath(directory), NETWORK_FILE)
    record = {"version": NETWORK_STATUS_VERSION, "netns": netns, "interfaces": [i.to_dict() for i in interfaces]}
    tmp = f"{path}.tmp"
    with open_private(tmp, "w", encoding="utf-8") as f:
        json.dump(record, f, indent=1)
        f.write("\n")
    os.replace(tmp, path)
    return path


def read_network_status(directory: str | os.PathLike[str]) -> NetworkStatus:
    """Read ``network.status`` from ``directory`` (also the unversioned form of older checkpoints).

    Raises FileNotFoundError when there is none, :class:`NetnsError` naming
    the file when it cannot be understood.
    """
    name = os.path.join(os.fspath(directory), NETWORK_FILE)
    try:
        with open(name, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise NetnsError(name, f"cannot read network snapshot: {exc}") from exc
    return parse_network_status(raw, name)


def parse_network_status(raw: bytes, name: str) -> NetworkStatus:
    """``network.status``'s bytes (from ``name``, which errors name). Raises :class:`NetnsError`. Pure."""
    try:
        record = json.loads(raw)
    except ValueError as exc:
        raise NetnsError(name, f"cannot read network snapshot: {exc}") from exc
    try:
        version = record.get("version", NETWORK_STATUS_VERSION)
        if version != NETWORK_STATUS_VERSION:
            raise NetnsError(name, f"unsupported network snapshot version {version!r}")
        return NetworkStatus(netns=str(record.get("netns") or ""),
                             interfaces=tuple(InterfaceInfo.from_dict(i) for i in record["interfaces"]))
    except (KeyError, TypeError, AttributeError) as exc:
        raise NetnsError(name, f"cannot read network snapshot: {exc!r}") from exc


# -- helpers ---------------------------------------------------------------

def _addresses_by_index(addrs: Iterable[rtnl.Address]) -> dict[int, list[str]]:
    import ipaddress

    out: dict[int, list[str]] = {}
    for addr in addrs:
        if addr.address is None or ipaddress.ip_address(addr.address).is_link_local:
            continue
        out.setdefault(addr.index, []).append(f"{addr.address}/{addr.prefixlen}")
    return out


def _veth_peers(veths: Sequence[rtnl.Link]) -> dict[int, dict[str, Any]]:
    """``peer_*`` fields by netns link index, for the veths whose peer is in the caller's netns.

    IFLA_LINK is the peer's index in its own netns; the peer is ours only if
    our link with that index points back (IFLA_LINK) at the veth.
    """
    from runtime.net import rtnl

    if not veths:
        return {}
    out: dict[int, dict[str, Any]] = {}
    link = veths[0]  # named in the error
    try:
        with rtnl.open_socket() as here:
            host_addrs = None
            for link in veths:
                peer = rtnl.get_link(here, link.link)
                if peer is None or peer.link != link.index:
                    continue
                if host_addrs is None:
                    host_addrs = _addresses_by_index(rtnl.dump_addresses(here))
                out[link.index] = {"peer_ifname": peer.ifname, "peer_mac": peer.mac or None,
                                   "peer_addresses": tuple(host_addrs.get(peer.index, ()))}
    except OSError as exc:
        raise NetnsError(link.ifname, f"cannot read its veth peer over netlink: {exc.strerror or exc}") from exc
    return out
