"""runtime.net.rtnl: netlink framing and rtnetlink parsing from stored and hand-built bytes (no sockets)."""

from __future__ import annotations

import errno
import socket
import struct
from collections.abc import Iterator

import pytest

from runtime.net import rtnl

NLA_F_NESTED = 0x8000
IFLA_INFO_DATA = 2
VETH_INFO_PEER = 1

# One RTM_NEWADDR from a real RTM_GETADDR dump (seq 7): lo's 127.0.0.1/8 with IFA_ADDRESS,
# IFA_LOCAL, IFA_LABEL "lo" (length 7: padded), IFA_FLAGS and IFA_CACHEINFO.
STORED_LO_ADDR = bytes.fromhex(
    "4c00000014000200070000009a6d0000020880fe01000000080001007f000001080002007f000001"
    "070003006c6f0000080008008000000014000600ffffffffffffffff1a0000001a000000")


def attr(atype: int, data: bytes) -> bytes:
    """An rtattr, padded to 4 bytes (the padding is not counted in its length)."""
    raw = struct.pack("=HH", 4 + len(data), atype) + data
    return raw + b"\0" * (-len(raw) % 4)


def msg(mtype: int, payload: bytes, *, seq: int = 1, flags: int = 0) -> bytes:
    raw = struct.pack("=IHHII", 16 + len(payload), mtype, flags, seq, 4242) + payload
    return raw + b"\0" * (-len(raw) % 4)


def ifinfomsg(index: int, flags: int = 0) -> bytes:
    return struct.pack("=BxHiII", socket.AF_UNSPEC, 1, index, flags, 0)


def ifaddrmsg(family: int, prefixlen: int, index: int, scope: int = 0) -> bytes:
    return struct.pack("=BBBBI", family, prefixlen, 0, scope, index)


def done(seq: int = 1, error: int = 0) -> bytes:
    return msg(rtnl.NLMSG_DONE, struct.pack("=i", error), seq=seq, flags=rtnl.NLM_F_MULTI)


def error(err: int, seq: int = 1) -> bytes:
    return msg(rtnl.NLMSG_ERROR, struct.pack("=i", -err) + b"\0" * 16, seq=seq)


VETH = ifinfomsg(7, flags=rtnl.IFF_UP | 0x1000) + b"".join([
    attr(rtnl.IFLA_IFNAME, b"eth0\0"),                     # 5 bytes: padded
    attr(rtnl.IFLA_ADDRESS, bytes.fromhex("02420ae70102")),  # 6 bytes: padded
    attr(rtnl.IFLA_MTU, struct.pack("=I", 1450)),
    attr(rtnl.IFLA_LINK, struct.pack("=I", 250)),
    attr(rtnl.IFLA_LINKINFO | NLA_F_NESTED, attr(rtnl.IFLA_INFO_KIND, b"veth\0")
         + attr(IFLA_INFO_DATA | NLA_F_NESTED, attr(VETH_INFO_PEER, b"\0" * 16))),
    attr(rtnl.IFLA_LINK_NETNSID, struct.pack("=i", 0)),
])
LO = ifinfomsg(1, flags=rtnl.IFF_UP) + attr(rtnl.IFLA_IFNAME, b"lo\0") + attr(
    rtnl.IFLA_ADDRESS, b"\0" * 6) + attr(rtnl.IFLA_MTU, struct.pack("=I", 65536))


def test_encode_request() -> None:
    body = ifinfomsg(0)
    raw = rtnl.encode_request(rtnl.RTM_GETLINK, 9, body)
    assert struct.unpack_from("=IHHII", raw) == (16 + len(body), rtnl.RTM_GETLINK,
                                                 rtnl.NLM_F_REQUEST | rtnl.NLM_F_DUMP, 9, 0)
    assert raw[16:] == body


def test_attrs_alignment_first_wins_and_flag_bits() -> None:
    data = attr(3, b"abcde") + attr(4 | NLA_F_NESTED, b"xy") + attr(3, b"again") + attr(5, b"")
    assert rtnl.parse_attrs(data) == {3: b"abcde", 4: b"xy", 5: b""}


@pytest.mark.parametrize("data", [struct.pack("=HH", 3, 1), struct.pack("=HH", 12, 1) + b"abc"])
def test_attrs_bad_length(data: bytes) -> None:
    with pytest.raises(OSError) as ei:
        rtnl.parse_attrs(data)
    assert ei.value.errno == errno.EBADMSG


def test_link_with_nested_kind() -> None:
    link = rtnl.parse_link(VETH)
    assert link == rtnl.Link(index=7, flags=rtnl.IFF_UP | 0x1000, ifname="eth0", mac="02:42:0a:e7:01:02",
                             mtu=1450, link=250, kind="veth", link_netnsid=0)


def test_link_without_optional_attrs() -> None:
    assert rtnl.parse_link(LO) == rtnl.Link(index=1, flags=rtnl.IFF_UP, ifname="lo", mac="00:00:00:00:00:00",
                                            mtu=65536, link=0, kind=None, link_netnsid=None)
    bare = rtnl.parse_link(ifinfomsg(3) + attr(rtnl.IFLA_IFNAME, b"wg0\0"))
    assert (bare.mac, bare.kind, bare.link, bare.mtu, bare.link_netnsid) == ("", None, 0, 0, None)


def test_addresses() -> None:
    v6 = rtnl.parse_address(ifaddrmsg(socket.AF_INET6, 64, 4, scope=253)
                            + attr(rtnl.IFA_ADDRESS, socket.inet_pton(socket.AF_INET6, "fe80::1")))
    assert v6 == rtnl.Address(index=4, family=socket.AF_INET6, prefixlen=64, scope=253,
                              address="fe80::1", local=None)
    ptp = rtnl.parse_address(ifaddrmsg(socket.AF_INET, 32, 5)
                             + attr(rtnl.IFA_LOCAL, socket.inet_aton("10.231.7.1"))
                             + attr(rtnl.IFA_ADDRESS, socket.inet_aton("10.231.7.2")))
    assert (ptp.address, ptp.local) == ("10.231.7.2", "10.231.7.1")


def test_stored_address_message() -> None:
    [m] = list(rtnl.parse_messages(STORED_LO_ADDR))
    assert (m.type, m.flags, m.seq) == (rtnl.RTM_NEWADDR, rtnl.NLM_F_MULTI, 7)
    assert rtnl.parse_address(m.payload) == rtnl.Address(index=1, family=socket.AF_INET, prefixlen=8,
                                                         scope=254, address="127.0.0.1", local="127.0.0.1")


def test_multipart_dump_over_several_datagrams() -> None:
    multi = rtnl.NLM_F_MULTI
    datagrams = [
        msg(rtnl.RTM_NEWLINK, LO, flags=multi) + msg(rtnl.NLMSG_NOOP, b"", flags=multi),
        msg(rtnl.RTM_NEWLINK, b"stale", seq=99, flags=multi) + msg(rtnl.RTM_NEWLINK, VETH, flags=multi),
        done(),
        msg(rtnl.RTM_NEWLINK, b"never read", flags=multi),
    ]
    msgs, interrupted = rtnl.collect(iter(datagrams), seq=1)
    assert [rtnl.parse_link(m.payload).ifname for m in msgs] == ["lo", "eth0"]
    assert not interrupted


def test_interrupted_dump_is_reported() -> None:
    flags = rtnl.NLM_F_MULTI | rtnl.NLM_F_DUMP_INTR
    msgs, interrupted = rtnl.collect([msg(rtnl.RTM_NEWLINK, LO, flags=flags) + done()], seq=1)
    assert len(msgs) == 1 and interrupted


def test_single_reply_ends_without_done() -> None:
    def datagrams() -> Iterator[bytes]:
        yield msg(rtnl.RTM_NEWLINK, VETH)
        raise AssertionError("read past a non-multi-part reply")

    msgs, _ = rtnl.collect(datagrams(), seq=1)
    assert rtnl.parse_link(msgs[0].payload).index == 7


def test_error_raises_oserror_with_errno() -> None:
    with pytest.raises(OSError) as ei:
        rtnl.collect([error(errno.ENODEV)], seq=1)
    assert ei.value.errno == errno.ENODEV


def test_error_inside_a_dump_and_failed_done() -> None:
    with pytest.raises(OSError) as ei:
        rtnl.collect([msg(rtnl.RTM_NEWLINK, LO, flags=rtnl.NLM_F_MULTI), error(errno.EPERM)], seq=1)
    assert ei.value.errno == errno.EPERM
    with pytest.raises(OSError) as ei:
        rtnl.collect([done(error=-errno.EMSGSIZE)], seq=1)
    assert ei.value.errno == errno.EMSGSIZE


def test_ack_ends_the_reply() -> None:
    assert rtnl.collect([error(0)], seq=1) == ([], False)


def test_reply_cut_short() -> None:
    with pytest.raises(OSError) as ei:
        rtnl.collect([msg(rtnl.RTM_NEWLINK, LO, flags=rtnl.NLM_F_MULTI)], seq=1)
    assert ei.value.errno == errno.EPROTO


@pytest.mark.parametrize("raw", [
    struct.pack("=IHHII", 8, rtnl.RTM_NEWLINK, 0, 1, 0),              # shorter than its header
    struct.pack("=IHHII", 64, rtnl.RTM_NEWLINK, 0, 1, 0) + b"\0" * 8,  # longer than the datagram
])
def test_bad_message_length(raw: bytes) -> None:
    with pytest.raises(OSError) as ei:
        list(rtnl.parse_messages(raw))
    assert ei.value.errno == errno.EBADMSG
