"""The checkpoint's network: the netns CRIU dumped (netdev/ifaddr images), else criu-cr's network.status.

A container that joined a pre-created netns has no netns images (CRIU
treats it as external); what it had is then in ``network.status``. Pure.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from runtime.inspect.model import Interface, Network
from runtime.net.snapshot import NetworkStatus

__all__ = ["from_netns_images", "from_network_status"]

_ND_TYPES = {1: "loopback", 2: "veth", 3: "tun", 4: "extlink", 5: "venet", 6: "bridge", 7: "macvlan", 8: "sit"}
_IFF_UP = 1
_MAIN_TABLE = 254  # the routes `ip route` shows; local/broadcast ones are the kernel's own


def _addresses(ns: Any) -> dict[int, list[str]]:
    """ifindex -> CIDR addresses of a dumped netns (criu_image decodes the ``ip addr save`` dump)."""
    out: dict[int, list[str]] = {}
    for a in ns.parsed_addresses():
        out.setdefault(a.ifindex, []).append(f"{a.local or a.address}/{a.prefixlen}")
    return out


def _route(r: Any, names: dict[int, str]) -> str:
    text = f"{r.dst}/{r.dst_len}" if r.dst else "default"
    if r.gateway:
        text += f" via {r.gateway}"
    if r.oif:
        text += f" dev {names.get(r.oif, r.oif)}"
    if r.prefsrc:
        text += f" src {r.prefsrc}"
    return text


def _mac(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw)


def from_netns_images(namespaces: Iterable[Any]) -> Network | None:
    """The dumped namespaces (``criu_image`` NetNs objects) as one :class:`Network`; None if there are none."""
    interfaces, routes = [], []
    ids = []
    for ns in namespaces:
        ids.append(str(ns.id))
        addrs = _addresses(ns)
        for dev in ns.devices:
            veth = dev.type == 2 and dev.HasField("peer_ifindex") and dev.peer_ifindex
            peer = f"ifindex {dev.peer_ifindex}" + (f" in netns {dev.peer_nsid}" if dev.HasField("peer_nsid") else "") \
                if veth else ""
            interfaces.append(Interface(name=dev.name, kind=_ND_TYPES.get(dev.type, str(dev.type)),
                                        mac=_mac(dev.address) if dev.HasField("address") else "", mtu=dev.mtu,
                                        up=bool(dev.flags & _IFF_UP), addresses=tuple(addrs.get(dev.ifindex, ())),
                                        peer=peer))
        names = {dev.ifindex: dev.name for dev in ns.devices}
        routes += [_route(r, names) for r in ns.parsed_routes() if r.table == _MAIN_TABLE]
    if not ids:
        return None
    return Network(origin="netns image", netns=f"CRIU netns id {', '.join(ids)}", interfaces=tuple(interfaces),
                   routes=tuple(routes))


def from_network_status(status: NetworkStatus | None) -> Network:
    if status is None:
        return Network(origin="")
    return Network(origin="network.status", netns=status.netns, interfaces=tuple(
        Interface(name=i.name, kind=i.kind, mac=i.mac, mtu=i.mtu, up=i.up, addresses=i.addresses,
                  peer=" ".join(filter(None, [i.peer_ifname or "", *i.peer_addresses])))
        for i in status.interfaces))
