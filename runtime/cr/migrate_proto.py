"""The migration wire protocol (issue 10): frames and the token handshake, pure (bytes in, messages out).

A frame is ``type:u8 length:u32be payload``. The conversation, source (S)
and destination (D)::

    D: CHALLENGE nonce_d(32)
    S: PROOF     hmac(token, "source" nonce_d) nonce_s(32)
    D: PROVEN    hmac(token, "destination" nonce_s)   | REFUSED reason
    S: OFFER     json {"id", "size"}
    S: DATA ...  the exported checkpoint archive, in chunks
    S: END       sha256 of all DATA
    D: RESULT    json {"ok", "id", "pid", "error"}

Both sides prove they hold the token without sending it (HMAC-SHA256 over
the other side's fresh nonce); the destination refuses before it reads
anything else. Nothing here is encrypted: see the module docs of
:mod:`runtime.cr.migrate`.
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
           "NONCE_BYTES", "MAX_FRAME", "read_token"]

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


def read_token(path: str) -> bytes:
    """The shared token from its file (surrounding whitespace dropped); refuses an empty one."""
    with open(path, "rb") as f:
        token = f.read().strip()
    if len(token) < 16:
        raise ValueError(f"the token in {path} is {len(token)} bytes: use at least 16 (e.g. openssl rand -hex 32)")
    return token
