"""Sockets as ``inspect`` shows them: CRIU's inet/unix/packet/netlink entries -> :class:`Socket`. Pure.

CRIU keeps an inet address as 32-bit words holding the address's bytes in
network order, read as little-endian integers (one word for IPv4, four for
IPv6). IPv4-mapped IPv6 addresses (a dual-stack listener's connections) are
shown as IPv4. A TCP connection's queues are in ``tcp-stream-<inode hex>.img``.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from collections.abc import Callable
from typing import Any

from runtime.inspect.model import Socket

__all__ = ["inet_address", "endpoint", "socket_of", "describe", "TCP_STATES", "SOCKET_KINDS"]

# include/net/tcp_states.h
TCP_STATES = {1: "ESTABLISHED", 2: "SYN_SENT", 3: "SYN_RECV", 4: "FIN_WAIT1", 5: "FIN_WAIT2", 6: "TIME_WAIT",
              7: "CLOSE", 8: "CLOSE_WAIT", 9: "LAST_ACK", 10: "LISTEN", 11: "CLOSING", 12: "NEW_SYN_RECV"}
_UNIX_STATES = {1: "CONNECTED", 7: "UNCONNECTED", 10: "LISTEN"}
_TYPES = {1: "stream", 2: "dgram", 3: "raw", 5: "seqpacket", 10: "packet"}
_PROTOS = {6: "tcp", 17: "udp", 132: "sctp", 136: "udplite", 1: "icmp", 58: "icmpv6"}
SOCKET_KINDS = frozenset({"INETSK", "UNIXSK", "PACKETSK", "NETLINKSK"})


def inet_address(words: Any, family: int) -> str:
    """The address CRIU stored as ``words`` (see the module's doc); "" when there is none."""
    raw = b"".join(struct.pack("<I", w) for w in words)
    if family == socket.AF_INET:
        return socket.inet_ntop(socket.AF_INET, raw[:4].ljust(4, b"\0"))
    addr = ipaddress.IPv6Address(raw[:16].ljust(16, b"\0"))
    return str(addr.ipv4_mapped) if addr.ipv4_mapped else str(addr)


def endpoint(words: Any, port: int, family: int) -> str:
    addr = inet_address(words, family)
    return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"


def _unix_name(name: bytes) -> str:
    if not name:
        return ""
    if name[:1] == b"\0":
        return "@" + name[1:].decode("utf-8", "backslashreplace")
    return name.decode("utf-8", "backslashreplace")


def socket_of(fd: int, kind: str, file: Any, tcp_queues: Callable[[int], Any | None]) -> Socket | None:
    """The :class:`Socket` of a ``file_entry`` of type ``kind`` held at ``fd``; None for other kinds.

    ``tcp_queues(ino)`` gives a connection's ``tcp_stream_entry`` (None: not dumped).
    """
    if file is None:
        return None
    if kind == "INETSK" and file.HasField("isk"):
        sk = file.isk
        family = "inet6" if sk.family == socket.AF_INET6 else "inet"
        proto = _PROTOS.get(sk.proto, str(sk.proto))
        state = TCP_STATES.get(sk.state, str(sk.state)) if proto == "tcp" else (
            "CONNECTED" if sk.state == 1 else "UNCONNECTED")
        local = endpoint(sk.src_addr, sk.src_port, sk.family)
        remote = endpoint(sk.dst_addr, sk.dst_port, sk.family) if sk.dst_port else ""
        q = tcp_queues(sk.ino) if proto == "tcp" and sk.state == 1 else None
        return Socket(fd=fd, family=family, proto=proto, state=state, inode=sk.ino, local=local, remote=remote,
                      send_queue=q.outq_len if q is not None else None,
                      recv_queue=q.inq_len if q is not None else None,
                      unsent=q.unsq_len if q is not None and q.HasField("unsq_len") else None)
    if kind == "UNIXSK" and file.HasField("usk"):
        sk = file.usk
        return Socket(fd=fd, family="unix", proto=_TYPES.get(sk.type, str(sk.type)),
                      state=_UNIX_STATES.get(sk.state, str(sk.state)), inode=sk.ino, local=_unix_name(sk.name),
                      peer_inode=sk.peer or None)
    if kind == "PACKETSK" and file.HasField("psk"):
        sk = file.psk
        return Socket(fd=fd, family="packet", proto=_TYPES.get(sk.type, str(sk.type)), state="",
                      inode=getattr(sk, "id", 0), local=f"ifindex {sk.ifindex} protocol {sk.protocol:#x}")
    if kind == "NETLINKSK" and file.HasField("nlsk"):
        sk = file.nlsk
        return Socket(fd=fd, family="netlink", proto=str(sk.protocol), state="", inode=sk.ino,
                      local=f"portid {sk.portid}")
    return None


def describe(s: Socket) -> str:
    """A socket as one line, for an fd's target."""
    if s.family in ("inet", "inet6"):
        return f"{s.proto} {s.local}" + (f" -> {s.remote}" if s.remote else "") + f" ({s.state})"
    if s.family == "unix":
        return f"unix {s.proto} {s.local or '(unnamed)'}" + (f" peer ino {s.peer_inode}" if s.peer_inode else "")
    return f"{s.family} {s.local}"
