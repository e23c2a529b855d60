"""The migration wire protocol (issue 10): frames and the token handshake, pure (bytes in, messages out).

A frame is ``type:u8 length:u32be payload``. The conversation, source (S)
and destination (D), on the channel S opened::

    D: CHALLENGE nonce_d(32)
    S: PROOF     hmac(token, "source" nonce_d) nonce_s(32)
    D: PROVEN    hmac(token, "destination" nonce_s)   | REFUSED reason
    S: OFFER     json {"id", "tcp"}
    D: PAGES     json {"port"}: one connection, on the channel's own address
    S:   (page connection) TICKET hmac(token, "pages" nonce_d nonce_s), then CRIU's page protocol
    D: READY     CRIU's page server holds the page connection
    S:   freezes and dumps; CRIU sends the pages to D's page server
    S: ARCHIVE   json {"size"} -- at CRIU's post-dump: the tree is frozen, not yet ended
    S: DATA ...  the checkpoint archive without the pages (runtime.cr.archive), in chunks
    S: END       sha256 of all DATA
    D: STAGED    everything is here and checked (pages included)      | RESULT {"ok": false, "error"}
    S: GO        CRIU has ended the source's tree
    D: RESULT    json {"ok", "id", "pid", "error"}
    D: (not ok) FILE {"name", "size"} DATA... END sha256, one per pages image, then DONE: the pages
       go back, so that the source restores its container
    S: DONE      the pages arrived (until then the destination keeps its copy)

S may send ABORT {"error"} instead of its next message before GO; D then
discards everything. Both sides prove they hold the token without sending
it (HMAC-SHA256 over the other side's fresh nonce); the destination refuses
before it reads anything else, and CRIU's page server is handed only a
connection that proved it too. Nothing here is encrypted: see docs/migration.md.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import json
import struct
from dataclasses import dataclass
from typing import Any

from runtime.errors import ContainerError

__all__ = ["Kind", "Message", "Decoder", "ProtocolError", "encode", "json_bytes", "proof", "check_proof",
           "NONCE_BYTES", "MAX_FRAME", "read_token",
           "ticket", "TICKET_FRAME_BYTES", "check_ticket_frame", "is_page_image"]

NONCE_BYTES = 32
MAX_FRAME = 4 << 20  # DATA chunks are 1 MiB; nothing else comes near
_HEADER = struct.Struct(">BI")
_CONTEXT = b"criu-cr-migrate/1 "


class Kind(enum.IntEnum):
    CHALLENGE = 1
    PROOF = 2
    PROVEN = 3
    REFUSED = 4
    OFFER = 5
    DATA = 6
    END = 7
    RESULT = 8
    PAGES = 9
    TICKET = 10
    READY = 11
    ARCHIVE = 12
    STAGED = 13
    GO = 14
    FILE = 15
    DONE = 16
    ABORT = 17


class ProtocolError(ContainerError):
    """The peer spoke something that is not this protocol (``problem`` says what)."""

    def __init__(self, problem: str) -> None:
        super().__init__(f"migration protocol: {problem}")
        self.problem = problem


@dataclass(frozen=True, slots=True, kw_only=True)
class Message:
    kind: Kind
    payload: bytes

    def json(self) -> dict[str, Any]:
        try:
            value = json.loads(self.payload.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise ProtocolError(f"{self.kind.name} is not JSON ({exc})") from exc
        if not isinstance(value, dict):
            raise ProtocolError(f"{self.kind.name} is not a JSON object")
        return value


def encode(kind: Kind, payload: bytes = b"") -> bytes:
    if len(payload) > MAX_FRAME:
        raise ValueError(f"frame of {len(payload)} bytes is over {MAX_FRAME}")
    return _HEADER.pack(int(kind), len(payload)) + payload


def json_bytes(value: dict[str, Any]) -> bytes:
    return json.dumps(value, sort_keys=True).encode("utf-8")


class Decoder:
    """Feed it bytes as they come; it hands back whole messages. ``eof()`` says whether the stream
    ended between frames (else ProtocolError: truncated)."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[Message]:
        self._buf += data
        out: list[Message] = []
        while len(self._buf) >= _HEADER.size:
            kind, length = _HEADER.unpack_from(self._buf)
            try:
                k = Kind(kind)
            except ValueError:
                raise ProtocolError(f"unknown message type {kind}") from None
            if length > MAX_FRAME:
                raise ProtocolError(f"{k.name} frame of {length} bytes is over the {MAX_FRAME} limit")
            if len(self._buf) < _HEADER.size + length:
                break
            out.append(Message(kind=k, payload=bytes(self._buf[_HEADER.size:_HEADER.size + length])))
            del self._buf[:_HEADER.size + length]
        return out

    def eof(self) -> None:
        if self._buf:
            raise ProtocolError(f"connection ended inside a frame ({len(self._buf)} bytes of it came)")


def proof(token: bytes, role: str, nonce: bytes) -> bytes:
    """What ``role`` ("source"/"destination") sends to show it holds ``token``, for the peer's ``nonce``."""
    return hmac.new(token, _CONTEXT + role.encode("ascii") + b" " + nonce, hashlib.sha256).digest()


def check_proof(token: bytes, role: str, nonce: bytes, got: bytes) -> bool:
    return hmac.compare_digest(proof(token, role, nonce), got)


def ticket(token: bytes, nonce_d: bytes, nonce_s: bytes) -> bytes:
    """What opens the page connection of the session with these nonces (never valid for another)."""
    return proof(token, "pages", nonce_d + nonce_s)


#: A page connection's first bytes: one TICKET frame.
TICKET_FRAME_BYTES = _HEADER.size + 32


def check_ticket_frame(token: bytes, nonce_d: bytes, nonce_s: bytes, frame: bytes) -> bool:
    """Whether ``frame`` (exactly TICKET_FRAME_BYTES) is this session's TICKET."""
    return hmac.compare_digest(encode(Kind.TICKET, ticket(token, nonce_d, nonce_s)), frame)


_PAGE_IMAGE = ("pagemap-", "pages-")


def is_page_image(name: str) -> bool:
    """A file CRIU's page server writes (``pagemap-N.img``, ``pages-N.img``): the only names that
    may come back to a source. Pure."""
    if "/" in name or not name.endswith(".img") or not name.startswith(_PAGE_IMAGE):
        return False
    middle = name[name.index("-") + 1:-len(".img")]
    return middle.isdigit()


def read_token(path: str) -> bytes:
    """The shared token from its file (surrounding whitespace dropped); refuses an empty one."""
    with open(path, "rb") as f:
        token = f.read().strip()
    if len(token) < 16:
        raise ValueError(f"the token in {path} is {len(token)} bytes: use at least 16 (e.g. openssl rand -hex 32)")
    return token
