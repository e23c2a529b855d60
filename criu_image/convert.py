"""Messages and entries as the JSON-ready dicts ``crit decode`` prints.

crit (python3-pycriu 4.2.1) conventions, kept exactly so the two agree:

* only fields that are set appear; enums by value name; bytes as base64
  with ``base64.encodebytes``'s line breaks (or quoted-printable where the
  field's ``(criu).conv`` is ``unix_name``);
* with ``pretty``: ``(criu).hex`` integers as ``"0x.."`` (inherited by
  nested messages), ``(criu).dev`` as ``"major:minor"``, ``(criu).flags``
  as ``"A | B | 0x.."``, ``(criu).dict`` through its name tables, and
  ``(criu).ipadd`` repeated fields as a one-item list with the address;
* an entry's extra bytes under ``"extra"`` as crit shapes them per kind.
"""

from __future__ import annotations

import base64
import quopri
import socket
import struct
from ipaddress import IPv4Address, IPv6Address
from typing import Any

from google.protobuf.descriptor import FieldDescriptor as FD
from google.protobuf.message import Message

from ._pb import ipc_msg_pb2, opts_pb2
from .image import Entry, Image
from .kinds import round_up

__all__ = ["to_dict", "image_to_dict", "FLAG_NAMES"]

_INTS = frozenset({FD.TYPE_FIXED64, FD.TYPE_FIXED32, FD.TYPE_SFIXED64, FD.TYPE_SFIXED32, FD.TYPE_INT64,
                   FD.TYPE_UINT64, FD.TYPE_SINT64, FD.TYPE_INT32, FD.TYPE_UINT32, FD.TYPE_SINT32})

#: ``(criu).flags`` table name -> (bit name, bit) pairs (Linux and CRIU constants).
FLAG_NAMES: dict[str, tuple[tuple[str, int], ...]] = {
    "mmap.prot": (("PROT_READ", 0x1), ("PROT_WRITE", 0x2), ("PROT_EXEC", 0x4)),
    "mmap.flags": (("MAP_SHARED", 0x1), ("MAP_PRIVATE", 0x2), ("MAP_DROPPABLE", 0x08), ("MAP_ANON", 0x20),
                   ("MAP_GROWSDOWN", 0x0100)),
    "mmap.status": (("VMA_AREA_NONE", 0), ("VMA_AREA_REGULAR", 1 << 0), ("VMA_AREA_STACK", 1 << 1),
                    ("VMA_AREA_VSYSCALL", 1 << 2), ("VMA_AREA_VDSO", 1 << 3), ("VMA_AREA_HEAP", 1 << 5),
                    ("VMA_FILE_PRIVATE", 1 << 6), ("VMA_FILE_SHARED", 1 << 7), ("VMA_ANON_SHARED", 1 << 8),
                    ("VMA_ANON_PRIVATE", 1 << 9), ("VMA_AREA_SYSVIPC", 1 << 10), ("VMA_AREA_SOCKET", 1 << 11),
                    ("VMA_AREA_VVAR", 1 << 12), ("VMA_AREA_AIORING", 1 << 13), ("VMA_AREA_MEMFD", 1 << 14),
                    ("VMA_AREA_SHSTK", 1 << 15), ("VMA_AREA_UPROBES", 1 << 17), ("VMA_UNSUPP", 1 << 31)),
    "rfile.flags": (("O_WRONLY", 0o1), ("O_RDWR", 0o2), ("O_CREAT", 0o100), ("O_EXCL", 0o200),
                    ("O_NOCTTY", 0o400), ("O_TRUNC", 0o1000), ("O_APPEND", 0o2000), ("O_NONBLOCK", 0o4000),
                    ("O_DSYNC", 0o10000), ("FASYNC", 0o20000), ("O_DIRECT", 0o40000),
                    ("O_LARGEFILE", 0o100000), ("O_DIRECTORY", 0o200000), ("O_NOFOLLOW", 0o400000),
                    ("O_NOATIME", 0o1000000), ("O_CLOEXEC", 0o2000000)),
    "pmap.flags": (("PE_PARENT", 1 << 0), ("PE_LAZY", 1 << 1), ("PE_PRESENT", 1 << 2)),
    "seals.flags": (("F_SEAL_SEAL", 0x1), ("F_SEAL_SHRINK", 0x2), ("F_SEAL_GROW", 0x4), ("F_SEAL_WRITE", 0x8),
                    ("F_SEAL_FUTURE_WRITE", 0x10)),
}

# ``(criu).dict`` table -> field name -> value -> name.
_DICTS: dict[str, dict[str, dict[int, str]]] = {
    "gen": {"task_state": {1: "Alive", 3: "Zombie", 6: "Stopped"}},
    "sk": {
        "family": {1: "UNIX", 2: "INET", 10: "INET6", 16: "NETLINK", 17: "PACKET"},
        "type": {1: "STREAM", 2: "DGRAM", 3: "RAW", 5: "SEQPACKET", 10: "PACKET"},
        "state": {1: "ESTABLISHED", 2: "SYN_SENT", 3: "SYN_RECV", 4: "FIN_WAIT1", 5: "FIN_WAIT2",
                  6: "TIME_WAIT", 7: "CLOSE", 8: "CLOSE_WAIT", 9: "LAST_ACK", 10: "LISTEN"},
        "proto": {0: "IP", 6: "TCP", 17: "UDP", 136: "UDPLITE"},
    },
}
_MINORBITS = 20  # the kernel's dev_t encoding, which CRIU stores unless (criu).odev


def _opts(field: FD) -> Any:
    return field.GetOptions().Extensions[opts_pb2.criu]


def _b64(data: bytes) -> str:
    return base64.encodebytes(data).decode()


def _flags(value: int, table: tuple[tuple[str, int], ...]) -> str:
    names = [name for name, bit in table if value & bit]
    rest = value & ~sum(bit for _, bit in table)
    if rest:
        names.append(f"{rest:#x}")
    return " | ".join(names)


def _dev(value: int, old: bool) -> str:
    if old:  # glibc's gnu_dev_major/minor of a 64-bit dev_t
        major = ((value >> 32) & 0xFFFFF000) | ((value >> 8) & 0xFFF)
        minor = ((value >> 12) & 0xFFFFFF00) | (value & 0xFF)
        return f"{major}:{minor}"
    return f"{value >> _MINORBITS}:{value & ((1 << _MINORBITS) - 1)}"


def _scalar(field: FD, value: Any, pretty: bool, is_hex: bool) -> Any:
    is_hex = is_hex or _opts(field).hex
    if field.type == FD.TYPE_MESSAGE:
        return _message(value, pretty, is_hex)
    if field.type == FD.TYPE_BYTES:
        if _opts(field).conv == "unix_name":
            return quopri.encodestring(value).decode()
        return _b64(value)
    if field.type == FD.TYPE_ENUM:
        return field.enum_type.values_by_number[value].name
    if field.type == FD.TYPE_BOOL:
        return bool(value)
    if field.type == FD.TYPE_STRING:
        return value
    if field.type not in _INTS:
        raise TypeError(f"field {field.full_name} has a type crit does not convert ({field.type})")
    if not pretty:
        return int(value)
    opts = _opts(field)
    if is_hex:
        return f"{value:#x}"
    if opts.dev:
        return _dev(value, opts.odev)
    if opts.flags:
        table = FLAG_NAMES.get(opts.flags)
        return _flags(value, table) if table is not None else f"{value:#x}"
    if opts.dict:
        return _DICTS[opts.dict][field.name].get(value, int(value))
    return int(value)


def _ip(words: Any) -> str:
    if len(words) == 1:
        return IPv4Address(socket.ntohl(words[0])).compressed
    value = 0
    for word in words[:4]:
        value = value << 32 | socket.ntohl(word)
    return IPv6Address(value).compressed


def _message(msg: Message, pretty: bool, is_hex: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for field, value in msg.ListFields():
        if field.is_repeated if hasattr(field, "is_repeated") else field.label == FD.LABEL_REPEATED:
            if pretty and _opts(field).ipadd:
                out[field.name] = [_ip(value)]
            else:
                out[field.name] = [_scalar(field, v, pretty, is_hex) for v in value]
        else:
            out[field.name] = _scalar(field, value, pretty, is_hex)
    return out


def _extra(kind: str, msg: Message, payload: bytes) -> Any:
    """crit's ``extra`` for an entry of ``kind`` whose extra bytes are ``payload``."""
    if kind == "TCP_STREAM":
        return {"inq": _b64(payload[:msg.inq_len]), "outq": _b64(payload[msg.inq_len:msg.inq_len + msg.outq_len])}
    if kind == "IPCNS_SHM":
        return _b64(payload[:msg.size])
    if kind == "IPCNS_SEM":
        return list(struct.unpack_from(f"<{msg.nsems}H", payload))
    if kind == "IPCNS_MSG":
        out: list[Any] = []
        pos = 0
        while pos < len(payload):
            (size,) = struct.unpack_from("<I", payload, pos)
            m = ipc_msg_pb2.ipc_msg.FromString(payload[pos + 4:pos + 4 + size])
            pos += 4 + size
            out += [_message(m, False), _b64(payload[pos:pos + m.msize])]
            pos += round_up(m.msize, 8)
        return out
    return _b64(payload)


_HAS_EXTRA = frozenset({"PIPES_DATA", "FIFO_DATA", "SK_QUEUES", "TCP_STREAM", "BPFMAP_DATA", "IPCNS_SHM",
                        "IPCNS_SEM", "IPCNS_MSG", "GHOST_FILE"})


def to_dict(msg: Message | Entry, kind: str | None = None, *, pretty: bool = False) -> dict[str, Any]:
    """``msg`` (a message, or an ``Entry`` of an image of magic ``kind``) as crit shows it.

    An ``Entry`` whose kind has extra bytes gets crit's ``"extra"`` member;
    its payload must have been read (``entries(payloads=True)``), else
    ``ValueError``.
    """
    if not isinstance(msg, Entry):
        return _message(msg, pretty)
    out = _message(msg.msg, pretty)
    if kind in _HAS_EXTRA:
        if kind == "GHOST_FILE" and msg.payload_size == 0 and getattr(msg.msg, "chunks", False):
            return out  # the head of a chunked ghost file carries no data itself
        if msg.payload is None:
            raise ValueError(f"the entry at {msg.offset} was read without its payload")
        out["extra"] = _extra(kind, msg.msg, msg.payload)
    return out


def image_to_dict(image: Image, *, pretty: bool = False) -> dict[str, Any]:
    """The whole image as ``crit decode`` prints it: ``{"magic": .., "entries": [..]}``."""
    return {"magic": image.magic_name,
            "entries": [to_dict(e, image.magic_name, pretty=pretty) for e in image.entries()]}
