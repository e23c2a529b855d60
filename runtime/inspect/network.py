"""The checkpoint's network: the netns CRIU dumped (netdev/ifaddr images), else criu-cr's network.status.

A container that joined a pre-created netns has no netns images (CRIU
treats it as external); what it had is then in ``network.status``.
``ifaddr-ID.img`` is ``ip addr save`` output: a 4-byte magic, then rtnetlink
``RTM_NEWADDR`` messages, parsed here just for the addresses. Pure.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterable
from typing import Any

from runtime.inspect.model import Interface, Network
from runtime.net.snapshot import NetworkStatus

__all__ = ["from_netns_images", "from_network_status", "ifaddr_addresses"]

_ND_TYPES = {1: "loopback", 2: "veth", 3: "tun", 4: "extlink", 5: "venet", 6: "bridge", 7: "macvlan", 8: "sit"}
_IFF_UP = 1
_RTM_NEWADDR = 20
_IFA_ADDRESS, _IFA_LOCAL = 1, 2
_NLMSG = struct.Struct("=IHHII")
_IFADDRMSG = struct.Struct("=BBBBI")
_RTA = struct.Struct("=HH")


def _align(n: int) -> int:
    return (n + 3) & ~3


def ifaddr_addresses(raw: bytes | None) -> dict[int, list[str]]:
    """ifindex -> CIDR addresses from an ``ifaddr-ID.img``'s bytes; stops quietly at a damaged message."""
    out: dict[int, list[str]] = {}
    if not raw:
        return out
    pos = 4  # the image's magic
    while pos + _NLMSG.size <= len(raw):
        length, kind, _, _, _ = _NLMSG.unpack_from(raw, pos)
        if length < _NLMSG.size + _IFADDRMSG.size or pos + length > len(raw):
            break
        if kind == _RTM_NEWADDR:
            family, prefix, _, _, index = _IFADDRMSG.unpack_from(raw, pos + _NLMSG.size)
            attrs, end = pos + _NLMSG.size + _IFADDRMSG.size, pos + length
            found: dict[int, bytes] = {}
            while attrs + _RTA.size <= end:
                alen, atype = _RTA.unpack_from(raw, attrs)
                if alen < _RTA.size:
                    break
                found[atype] = raw[attrs + _RTA.size:attrs + alen]
                attrs += _align(alen)
            data = found.get(_IFA_LOCAL) or found.get(_IFA_ADDRESS)
            if data and family in (socket.AF_INET, socket.AF_INET6):
                out.setdefault(index, []).append(f"{socket.inet_ntop(family, data)}/{prefix}")
        pos += _align(length)
    return out


def _mac(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw)


def from_netns_images(namespaces: Iterable[Any]) -> Network | None:
    """The dumped namespaces (``criu_image`` NetNs objects) as one :class:`Network`; None if there are none."""
    interfaces = []
    ids = []
    for ns in namespaces:
        ids.append(str(ns.id))
        addrs = ifaddr_addresses(ns.addresses)
        for dev in ns.devices:
            veth = dev.type == 2 and dev.HasField("peer_ifindex") and dev.peer_ifindex
            peer = f"ifindex {dev.peer_ifindex}" + (f" in netns {dev.peer_nsid}" if dev.HasField("peer_nsid") else "") \
                if veth else ""
            interfaces.append(Interface(name=dev.name, kind=_ND_TYPES.get(dev.type, str(dev.type)),
                                        mac=_mac(dev.address) if dev.HasField("address") else "", mtu=dev.mtu,
                                        up=bool(dev.flags & _IFF_UP), addresses=tuple(addrs.get(dev.ifindex, ())),
                                        peer=peer))
    if not ids:
        return None
    return Network(origin="netns image", netns=f"CRIU netns id {', '.join(ids)}", interfaces=tuple(interfaces))


def from_network_status(status: NetworkStatus | None) -> Network:
    if status is None:
        return Network(origin="")
    return Network(origin="network.status", netns=status.netns, interfaces=tuple(
        Interface(name=i.name, kind=i.kind, mac=i.mac, mtu=i.mtu, up=i.up, addresses=i.addresses,
                  peer=" ".join(filter(None, [i.peer_ifname or "", *i.peer_addresses])))
        for i in status.interfaces))
