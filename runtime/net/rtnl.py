"""A minimal, read-only rtnetlink client: dump links and addresses, standard library only.

A measured exception to STYLE.md ("netlink through pyroute2") for one read-only
path: every ``criu-cr checkpoint`` process snapshots the container's netns, and
importing pyroute2 costs ~0.25 s plus a forked helper per ``IPRoute(netns=...)``.
Whatever changes network state stays with pyroute2 (:mod:`runtime.net.netns`).

Parsing is pure (bytes in, records out). :func:`open_socket` reaches another netns
without forking: a short-lived thread setns(2)es itself alone and creates the
socket, which stays bound to that netns; the caller's netns never changes.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from runtime.net.in_netns import in_netns

__all__ = [
    "Link", "Address", "Message", "IFF_UP", "encode_request", "parse_messages", "parse_attrs", "collect",
    "parse_link", "parse_address", "open_socket", "dump_links", "get_link", "dump_addresses",
]

# <linux/netlink.h>, <linux/rtnetlink.h>, <linux/if_link.h>, <linux/if_addr.h>, <linux/if.h>
NLMSG_NOOP, NLMSG_ERROR, NLMSG_DONE = 1, 2, 3
NLM_F_REQUEST, NLM_F_MULTI, NLM_F_DUMP_INTR, NLM_F_DUMP = 0x1, 0x2, 0x10, 0x300
RTM_NEWLINK, RTM_GETLINK, RTM_NEWADDR, RTM_GETADDR = 16, 18, 20, 22
IFLA_ADDRESS, IFLA_IFNAME, IFLA_MTU, IFLA_LINK, IFLA_LINKINFO, IFLA_LINK_NETNSID = 1, 3, 4, 5, 18, 37
IFLA_INFO_KIND = 1
IFA_ADDRESS, IFA_LOCAL = 1, 2
IFF_UP = 0x1
_NLA_TYPE_MASK = 0x3FFF  # the type without NLA_F_NESTED / NLA_F_NET_BYTEORDER

_NLMSGHDR = struct.Struct("=IHHII")  # len, type, flags, seq, pid
_RTATTR = struct.Struct("=HH")  # len, type
_IFINFOMSG = struct.Struct("=BxHiII")  # family, (pad), type, index, flags, change
_IFADDRMSG = struct.Struct("=BBBBI")  # family, prefixlen, flags, scope, index
_RECV_SIZE = 65536  # the kernel's dump datagrams are at most 32 KiB
_DUMP_ATTEMPTS = 5  # a dump the kernel flags as interrupted by a concurrent change is redone
_TIMEOUT = 10.0  # seconds; the kernel answers at once, this only bounds a bug


@dataclass(frozen=True, slots=True, kw_only=True)
class Message:
    """One netlink message: header fields and the payload after the header."""
    type: int
    flags: int
    seq: int
    payload: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class Link:
    """An RTM_NEWLINK record. ``link`` is IFLA_LINK (a veth's peer index), 0 if absent."""
    index: int
    flags: int
    ifname: str
    mac: str  # "aa:bb:..", "" when the link has no hardware address
    mtu: int
    link: int
    kind: str | None  # IFLA_INFO_KIND; None for links without one (lo, physical NICs)
    link_netnsid: int | None  # set when the peer / lower link is in another netns


@dataclass(frozen=True, slots=True, kw_only=True)
class Address:
    """An RTM_NEWADDR record; ``address``/``local`` are IFA_ADDRESS/IFA_LOCAL as text, or None."""
    index: int
    family: int
    prefixlen: int
    scope: int
    address: str | None
    local: str | None


def encode_request(msg_type: int, seq: int, body: bytes, flags: int = NLM_F_REQUEST | NLM_F_DUMP) -> bytes:
    """One request: nlmsghdr (pid 0, the kernel knows ours) + ``body``."""
    return _NLMSGHDR.pack(_NLMSGHDR.size + len(body), msg_type, flags, seq, 0) + body


def parse_messages(datagram: bytes) -> Iterator[Message]:
    """The messages of one datagram. Raises OSError(EBADMSG) on a bad length."""
    off = 0
    while off + _NLMSGHDR.size <= len(datagram):
        length, mtype, flags, seq, _pid = _NLMSGHDR.unpack_from(datagram, off)
        if length < _NLMSGHDR.size or off + length > len(datagram):
            raise OSError(errno.EBADMSG, f"bad netlink message length {length} at offset {off}")
        yield Message(type=mtype, flags=flags, seq=seq, payload=datagram[off + _NLMSGHDR.size:off + length])
        off += (length + 3) & ~3


def parse_attrs(data: bytes) -> dict[int, bytes]:
    """rtattr payloads by type; the first of a repeated type wins. Raises OSError(EBADMSG)."""
    attrs: dict[int, bytes] = {}
    off = 0
    while off + _RTATTR.size <= len(data):
        length, atype = _RTATTR.unpack_from(data, off)
        if length < _RTATTR.size or off + length > len(data):
            raise OSError(errno.EBADMSG, f"bad rtattr length {length} at offset {off}")
        attrs.setdefault(atype & _NLA_TYPE_MASK, data[off + _RTATTR.size:off + length])
        off += (length + 3) & ~3
    return attrs


def collect(datagrams: Iterable[bytes], seq: int) -> tuple[list[Message], bool]:
    """The data messages replying to ``seq`` (up to NLMSG_DONE, an ACK or a lone message),
    and whether the kernel flagged the dump interrupted. Raises OSError(errno) for
    NLMSG_ERROR, OSError(EPROTO) if the datagrams end first.
    """
    out: list[Message] = []
    interrupted = False
    for datagram in datagrams:
        for msg in parse_messages(datagram):
            if msg.seq != seq or msg.type == NLMSG_NOOP:
                continue
            interrupted |= bool(msg.flags & NLM_F_DUMP_INTR)
            if msg.type in (NLMSG_ERROR, NLMSG_DONE):
                err = -struct.unpack_from("=i", msg.payload)[0] if len(msg.payload) >= 4 else 0
                if err > 0:
                    raise OSError(err, f"netlink: {os.strerror(err)}")
                return out, interrupted
            out.append(msg)
            if not msg.flags & NLM_F_MULTI:
                return out, interrupted
    raise OSError(errno.EPROTO, "netlink reply ended without NLMSG_DONE")


def _text(raw: bytes | None) -> str | None:
    return None if raw is None else raw.split(b"\0", 1)[0].decode("utf-8", "replace")


def _int(raw: bytes | None, fmt: str = "=I") -> int | None:
    return None if raw is None or len(raw) < 4 else struct.unpack_from(fmt, raw)[0]


def parse_link(payload: bytes) -> Link:
    """An RTM_NEWLINK payload: ifinfomsg + attributes, IFLA_LINKINFO's nested kind included."""
    _family, _type, index, flags, _change = _IFINFOMSG.unpack_from(payload)
    attrs = parse_attrs(payload[_IFINFOMSG.size:])
    info, mac = attrs.get(IFLA_LINKINFO), attrs.get(IFLA_ADDRESS)
    return Link(index=index, flags=flags, ifname=_text(attrs.get(IFLA_IFNAME)) or "",
                mac=":".join(f"{b:02x}" for b in mac) if mac else "", mtu=_int(attrs.get(IFLA_MTU)) or 0,
                link=_int(attrs.get(IFLA_LINK)) or 0,
                kind=_text(parse_attrs(info).get(IFLA_INFO_KIND)) if info is not None else None,
                link_netnsid=_int(attrs.get(IFLA_LINK_NETNSID), "=i"))


def parse_address(payload: bytes) -> Address:
    """An RTM_NEWADDR payload: ifaddrmsg + IFA_ADDRESS / IFA_LOCAL as text."""
    family, prefixlen, _flags, scope, index = _IFADDRMSG.unpack_from(payload)
    attrs = parse_attrs(payload[_IFADDRMSG.size:])
    address, local = attrs.get(IFA_ADDRESS), attrs.get(IFA_LOCAL)
    return Address(index=index, family=family, prefixlen=prefixlen, scope=scope,
                   address=None if address is None else socket.inet_ntop(family, address),
                   local=None if local is None else socket.inet_ntop(family, local))


# -- I/O ----------------------------------------------------------------------

def _new_socket() -> socket.socket:
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, socket.NETLINK_ROUTE)
    try:
        sock.settimeout(_TIMEOUT)
        sock.bind((0, 0))
    except BaseException:
        sock.close()
        raise
    return sock


def open_socket(netns: str | None = None) -> socket.socket:
    """A NETLINK_ROUTE socket in the caller's netns, or in the netns file ``netns``.

    For ``netns`` a helper thread setns(2)es itself (only itself) and creates
    the socket; the caller's netns is untouched. Raises OSError naming ``netns``.
    """
    if netns is None:
        return _new_socket()
    return in_netns(netns, _new_socket)


def _datagrams(sock: socket.socket) -> Iterator[bytes]:  # a full buffer is an error, never a cut
    while True:
        data, _anc, msg_flags, _addr = sock.recvmsg(_RECV_SIZE)
        if msg_flags & socket.MSG_TRUNC:
            raise OSError(errno.EMSGSIZE, f"netlink datagram larger than {_RECV_SIZE} bytes")
        yield data


def _request(sock: socket.socket, msg_type: int, body: bytes, flags: int) -> list[Message]:
    for seq in range(1, _DUMP_ATTEMPTS + 1):
        sock.sendto(encode_request(msg_type, seq, body, flags), (0, 0))
        msgs, interrupted = collect(_datagrams(sock), seq)
        if not interrupted:
            return msgs
    raise OSError(errno.EAGAIN, f"netlink dump interrupted by concurrent changes {_DUMP_ATTEMPTS} times")


def dump_links(sock: socket.socket) -> list[Link]:
    """Every link of the socket's netns, in kernel order. Raises OSError."""
    msgs = _request(sock, RTM_GETLINK, _IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0), NLM_F_REQUEST | NLM_F_DUMP)
    return [parse_link(m.payload) for m in msgs if m.type == RTM_NEWLINK]


def get_link(sock: socket.socket, index: int) -> Link | None:
    """The link with ``index`` in the socket's netns, None if there is none. Raises OSError."""
    try:
        msgs = _request(sock, RTM_GETLINK, _IFINFOMSG.pack(socket.AF_UNSPEC, 0, index, 0, 0), NLM_F_REQUEST)
    except OSError as exc:
        if exc.errno in (errno.ENODEV, errno.ENOENT):
            return None
        raise
    return next((parse_link(m.payload) for m in msgs if m.type == RTM_NEWLINK), None)


def dump_addresses(sock: socket.socket) -> list[Address]:
    """Every address (IPv4 and IPv6) of the socket's netns, in kernel order. Raises OSError."""
    msgs = _request(sock, RTM_GETADDR, _IFADDRMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0), NLM_F_REQUEST | NLM_F_DUMP)
    return [parse_address(m.payload) for m in msgs if m.type == RTM_NEWADDR]
