"""The iproute2 dumps CRIU keeps of a network namespace it dumped.

CRIU saves a netns's addresses and routes by running ``ip addr save`` and
``ip route save`` into ``ifaddr-ID.img``/``route-ID.img``/``route6-ID.img``:
a u32 magic of iproute2's, then the rtnetlink messages of the kernel's
dump, each an ``nlmsghdr`` (len, type, flags, seq, pid), the family header
(``ifaddrmsg`` / ``rtmsg``) and 4-byte aligned attributes (len, type, data).
Only what a reader asks of an interface or a route is decoded.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from dataclasses import dataclass

from .errors import ImageError, TruncatedImage

__all__ = ["IFADDR_MAGIC", "ROUTE_MAGIC", "Address", "Route", "parse_addresses", "parse_routes"]

#: iproute2's magics of "ip addr save" and "ip route save" (ip/ipaddress.c, ip/iproute.c).
IFADDR_MAGIC = 0x47361222
ROUTE_MAGIC = 0x45311224

_NLMSG = struct.Struct("<IHHII")
_IFADDRMSG = struct.Struct("<BBBBI")
_RTMSG = struct.Struct("<BBBBBBBBI")
_RTA = struct.Struct("<HH")
RTM_NEWADDR, RTM_NEWROUTE = 20, 24
IFA_ADDRESS, IFA_LOCAL, IFA_LABEL = 1, 2, 3
RTA_DST, RTA_OIF, RTA_GATEWAY, RTA_PRIORITY, RTA_PREFSRC, RTA_TABLE = 1, 4, 5, 6, 7, 15


@dataclass(frozen=True, slots=True, kw_only=True)
class Address:
    """An interface address: ``address/prefixlen`` on interface ``ifindex`` (``label`` its name for IPv4)."""

    ifindex: int
    family: int
    prefixlen: int
    address: str
    local: str | None
    label: str | None
    scope: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Route:
    """A route: ``dst/dst_len`` (``None`` for the default) via ``gateway`` out of ``oif``."""

    family: int
    dst: str | None
    dst_len: int
    gateway: str | None
    oif: int | None
    table: int
    priority: int | None
    prefsrc: str | None
    scope: int
    type: int


def _ip(family: int, data: bytes) -> str:
    return str(ipaddress.ip_address(data)) if family in (socket.AF_INET, socket.AF_INET6) else data.hex()


def _messages(data: bytes, name: str, magic: int, want: int, head: struct.Struct):
    if len(data) < 4:
        raise TruncatedImage(name, "file ends inside iproute2's magic", 0)
    (found,) = struct.unpack_from("<I", data)
    if found != magic:
        raise ImageError(name, f"magic {found:#010x} is not iproute2's {magic:#010x}", 0)
    pos = 4
    while pos < len(data):
        if pos + _NLMSG.size > len(data):
            raise TruncatedImage(name, "file ends inside a netlink header", pos)
        length, kind, _, _, _ = _NLMSG.unpack_from(data, pos)
        if length < _NLMSG.size + head.size or pos + length > len(data):
            raise TruncatedImage(name, f"netlink message of {length} bytes does not fit", pos)
        if kind == want:
            body = pos + _NLMSG.size
            attrs: dict[int, bytes] = {}
            apos = body + head.size
            end = pos + length
            while apos + _RTA.size <= end:
                alen, atype = _RTA.unpack_from(data, apos)
                if alen < _RTA.size or apos + alen > end:
                    raise ImageError(name, f"netlink attribute of {alen} bytes does not fit", apos)
                attrs.setdefault(atype, data[apos + _RTA.size:apos + alen])
                apos += (alen + 3) & ~3
            yield head.unpack_from(data, body), attrs
        pos += (length + 3) & ~3


def parse_addresses(data: bytes, name: str = "ifaddr.img") -> tuple[Address, ...]:
    """The addresses of an ``ip addr save`` dump; raises ``ImageError``/``TruncatedImage``."""
    out = []
    for (family, prefixlen, _, scope, index), attrs in _messages(data, name, IFADDR_MAGIC, RTM_NEWADDR, _IFADDRMSG):
        addr = attrs.get(IFA_ADDRESS) or attrs.get(IFA_LOCAL) or b""
        label = attrs.get(IFA_LABEL)
        out.append(Address(ifindex=index, family=family, prefixlen=prefixlen, address=_ip(family, addr),
                           local=_ip(family, attrs[IFA_LOCAL]) if IFA_LOCAL in attrs else None,
                           label=label.rstrip(b"\0").decode(errors="replace") if label else None, scope=scope))
    return tuple(out)


def parse_routes(data: bytes, name: str = "route.img") -> tuple[Route, ...]:
    """The routes of an ``ip route save`` dump; raises ``ImageError``/``TruncatedImage``."""
    out = []
    for (family, dst_len, _, _, table, _, scope, rtype, _), attrs in _messages(data, name, ROUTE_MAGIC,
                                                                              RTM_NEWROUTE, _RTMSG):
        def u32(key: int) -> int | None:
            return struct.unpack("<I", attrs[key][:4])[0] if key in attrs else None
        out.append(Route(family=family, dst=_ip(family, attrs[RTA_DST]) if RTA_DST in attrs else None,
                         dst_len=dst_len, gateway=_ip(family, attrs[RTA_GATEWAY]) if RTA_GATEWAY in attrs else None,
                         oif=u32(RTA_OIF), table=u32(RTA_TABLE) or table, priority=u32(RTA_PRIORITY),
                         prefsrc=_ip(family, attrs[RTA_PREFSRC]) if RTA_PREFSRC in attrs else None,
                         scope=scope, type=rtype))
    return tuple(out)
