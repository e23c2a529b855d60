"""Migration messages over a socket: the framing of :mod:`runtime.cr.migrate_proto` put on TCP,
and a file sent as ``DATA ... END sha256`` (used both ways: the archive to the destination,
pages back to the source)."""

from __future__ import annotations

import hashlib
import socket
import time
from collections.abc import Callable

from runtime.cr.migrate_proto import Decoder, Kind, Message, ProtocolError, encode
from runtime.linux.fsmode import open_private

__all__ = ["Conn", "CHUNK", "send_file", "recv_file", "recv_exact", "drain"]

CHUNK = 1 << 20


class Conn:
    """Messages over a connected socket (blocking, with the socket's own timeout)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock, self._dec, self._ready = sock, Decoder(), list[Message]()
        self.proven = False  # the peer proved the token
        self.sent = 0  # payload bytes sent, for progress

    def send(self, kind: Kind, payload: bytes = b"") -> None:
        self.sock.sendall(encode(kind, payload))
        self.sent += len(payload)

    def recv(self, *expected: Kind) -> Message:
        """The next message; ProtocolError when it is none of ``expected``, ConnectionError at EOF."""
        while not self._ready:
            data = self.sock.recv(CHUNK)
            if not data:
                self._dec.eof()
                raise ConnectionError("the peer closed the connection")
            self._ready.extend(self._dec.feed(data))
        msg = self._ready.pop(0)
        if expected and msg.kind not in expected:
            raise ProtocolError(f"expected {'/'.join(k.name for k in expected)}, got {msg.kind.name}")
        return msg


def send_file(conn: Conn, path: str, progress: Callable[[int], None] | None = None) -> int:
    """``DATA``... ``END sha256`` of the file at ``path``; returns its size. Raises OSError."""
    digest, done = hashlib.sha256(), 0
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
            conn.send(Kind.DATA, chunk)
            done += len(chunk)
            if progress:
                progress(done)
    conn.send(Kind.END, digest.digest())
    return done


def recv_file(conn: Conn, path: str, size: int, what: str) -> int:
    """Receive ``DATA``... ``END`` into a new private file at ``path``: exactly ``size`` bytes whose
    sha256 is END's. Raises ProtocolError (more than offered, damaged), OSError."""
    digest, got = hashlib.sha256(), 0
    with open_private(path, "wb") as f:
        while True:
            msg = conn.recv(Kind.DATA, Kind.END)
            if msg.kind is Kind.END:
                break
            got += len(msg.payload)
            if got > size:
                raise ProtocolError(f"{what}: more than the {size} bytes offered")
            digest.update(msg.payload)
            f.write(msg.payload)
    if got != size or digest.digest() != msg.payload:
        raise ProtocolError(f"{what} arrived damaged ({got} of {size} bytes, digest "
                            f"{'matches' if digest.digest() == msg.payload else 'differs'})")
    return got


def recv_exact(sock: socket.socket, n: int) -> bytes:
    """Exactly ``n`` bytes and not one more (what follows belongs to CRIU). Raises ConnectionError."""
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError(f"the peer closed the connection after {len(data)} of {n} bytes")
        data += chunk
    return data


def drain(sock: socket.socket, budget: float = 5.0) -> None:
    """Read and drop what the peer still sends, so that closing does not reset the connection
    (a reset can destroy our last message before the peer reads it)."""
    try:
        sock.shutdown(socket.SHUT_WR)
        deadline = time.monotonic() + budget
        sock.settimeout(budget)
        while time.monotonic() < deadline and sock.recv(CHUNK):
            pass
    except OSError:
        pass
