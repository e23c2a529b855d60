"""Stop-and-copy migration of a container to another criu-cr over TCP (issue 10).

The source (:func:`migrate`) proves the shared token first -- a wrong token
or nobody listening fails before anything is frozen -- then checkpoints the
container with ``export`` (the same archive as ``checkpoint --export``),
streams that archive, and waits for the destination's answer. The
destination (:class:`Receiver`) writes what it receives to a private file
in its state root and restores it with :func:`runtime.cr.portable.restore_import`
-- the one path for archives, with its rules for untrusted input -- then
answers. Only a confirmed restore lets the source delete its copy.

Rollback, decided here: when the destination says its restore failed, or
the connection broke before the whole archive was sent (the destination
then cannot have restored), the source restores its own checkpoint at once,
so the container runs again where it was. When the connection breaks after
the archive went but before the answer came, the source cannot know
whether the destination runs it: it restores nothing (no duplicate) and the
error says how to restore locally once the destination is known not to run it.

Pages: they are written to the source's disk (the archive) before they are
sent; CRIU's page server straight to the destination is not used yet.

Security: the token never crosses the wire (HMAC-SHA256 over each side's
fresh nonce, both sides prove it), but the channel is NOT encrypted: the
memory of the container crosses in clear. Across untrusted networks run it
inside a VPN or SSH tunnel (``ssh -L``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import secrets
import socket
import time
from typing import Any

from runtime.container.state import StateStore
from runtime.cr import archive
from runtime.cr.migrate_proto import (NONCE_BYTES, Decoder, Kind, Message, ProtocolError, check_proof, encode,
                                      json_bytes, proof)
from runtime.cr.options import CheckpointOptions, RestoreOptions
from runtime.errors import ContainerError
from runtime.linux.fsmode import makedirs_private, open_private

__all__ = ["Receiver", "Received", "migrate", "Migrated", "MigrationError", "parse_address"]

_log = logging.getLogger("criu_cr.cr")

CHUNK = 1 << 20
DEFAULT_TIMEOUT = 120.0  # seconds a peer may stay silent (a restore of a big container included)


class MigrationError(ContainerError):
    """A migration did not happen. ``where``: "source" or "destination"; ``restored_locally``: the
    source runs the container again; ``archive``: the checkpoint kept on the source, if any."""

    def __init__(self, container_id: str, problem: str, *, where: str = "source", restored_locally: bool = False,
                 archive_path: str | None = None, hint: str = "") -> None:
        text = f"migration of {container_id!r} failed: {problem}"
        if hint:
            text += f" ({hint})"
        super().__init__(text)
        self.container_id, self.problem, self.where = container_id, problem, where
        self.restored_locally, self.archive, self.hint = restored_locally, archive_path, hint


def parse_address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ValueError(f"address {text!r} is not HOST:PORT")
    return host.strip("[]"), int(port)


class _Conn:
    """Messages over a socket (the framing is :mod:`runtime.cr.migrate_proto`'s)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock, self._dec, self._ready = sock, Decoder(), list[Message]()
        self.proven = False  # the peer proved the token

    def send(self, kind: Kind, payload: bytes = b"") -> None:
        self.sock.sendall(encode(kind, payload))

    def recv(self, *expected: Kind) -> Message:
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


# -- destination ------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Received:
    """One migration the receiver handled: ``ok`` and the container's id/pid, or ``error``."""

    ok: bool
    container_id: str = ""
    pid: int = 0
    error: str = ""
    peer: str = ""
    bytes: int = 0
    received_s: float = 0.0  # from OFFER to END
    restore_s: float = 0.0


class Receiver:
    """Accepts migrations on ``address`` (port 0: any; see ``.address``) into the state root ``root``."""

    def __init__(self, address: tuple[str, int], token: bytes, *, root: str | None = None,
                 criu_path: str | None = None, limit: int = archive.DEFAULT_IMPORT_LIMIT,
                 timeout: float = DEFAULT_TIMEOUT) -> None:
        self.token, self.store, self.criu_path, self.limit, self.timeout = token, StateStore(root), criu_path, limit, timeout
        self._sock = socket.create_server(address, reuse_port=False)
        self.address: tuple[str, int] = self._sock.getsockname()[:2]

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> "Receiver":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def serve_once(self) -> Received:
        """Accept one connection and handle it; never raises for what the peer did (see ``Received``)."""
        conn, peer = self._sock.accept()
        with conn:
            conn.settimeout(self.timeout)
            c = _Conn(conn)
            try:
                return self._handle(c, f"{peer[0]}:{peer[1]}")
            except (OSError, ContainerError) as exc:
                _log.warning("migration from %s:%s failed: %s", peer[0], peer[1], exc)
                if c.proven:  # the source waits for an answer: tell it, so that it runs the container again
                    try:
                        c.send(Kind.RESULT, json_bytes({"ok": False, "error": str(exc)}))
                        _drain(conn)
                    except OSError:
                        pass
                return Received(ok=False, error=str(exc), peer=f"{peer[0]}:{peer[1]}")

    def _handle(self, conn: _Conn, peer: str) -> Received:
        nonce = secrets.token_bytes(NONCE_BYTES)
        conn.send(Kind.CHALLENGE, nonce)
        msg = conn.recv(Kind.PROOF)
        if len(msg.payload) != 32 + NONCE_BYTES or not check_proof(self.token, "source", nonce, msg.payload[:32]):
            why = "bad token: the source does not hold this receiver's token"
            conn.send(Kind.REFUSED, why.encode())
            _log.warning("migration from %s refused: %s", peer, why)
            return Received(ok=False, error=why, peer=peer)
        conn.send(Kind.PROVEN, proof(self.token, "destination", msg.payload[32:]))
        conn.proven = True
        offer = conn.recv(Kind.OFFER).json()
        if offer.get("mode") == "lazy":  # post-copy: runtime.cr.migrate_lazy
            from runtime.cr.migrate_lazy import receive_lazy

            return receive_lazy(self, conn, offer, peer)
        cid, size = str(offer.get("id", "")), offer.get("size")
        if not isinstance(size, int) or not 0 < size <= self.limit:
            raise ProtocolError(f"offered archive size {size!r} is not within 1..{self.limit}")
        makedirs_private(self.store.root, 0o711)
        path = os.path.join(self.store.root, f".migrate-in-{os.getpid()}-{time.monotonic_ns()}.tar")
        try:
            t0 = time.monotonic()
            got = self._receive(conn, path, size)
            t1 = time.monotonic()
            try:
                from runtime.cr.portable import restore_import

                tcp = offer.get("tcp") == "established"
                res = restore_import(self.store, path, RestoreOptions(tcp_established=tcp, tcp_close=not tcp),
                                     limit=self.limit, criu_path=self.criu_path)
            except (ContainerError, OSError) as exc:
                conn.send(Kind.RESULT, json_bytes({"ok": False, "error": str(exc)}))
                return Received(ok=False, container_id=cid, error=str(exc), peer=peer, bytes=got)
            t2 = time.monotonic()
            conn.send(Kind.RESULT, json_bytes({"ok": True, "id": cid, "pid": res.pid,
                                                    "criu_restore_us": res.criu_duration_us,
                                                    "unpack_and_restore_us": int((t2 - t1) * 1e6)}))
            return Received(ok=True, container_id=cid, pid=res.pid, peer=peer, bytes=got,
                            received_s=t1 - t0, restore_s=t2 - t1)
        finally:
            if os.path.exists(path):
                os.unlink(path)

    def _receive(self, conn: _Conn, path: str, size: int) -> int:
        digest, got = hashlib.sha256(), 0
        with open_private(path, "wb") as f:
            while True:
                msg = conn.recv(Kind.DATA, Kind.END)
                if msg.kind is Kind.END:
                    break
                got += len(msg.payload)
                if got > size:
                    raise ProtocolError(f"more than the {size} bytes offered")
                digest.update(msg.payload)
                f.write(msg.payload)
        if got != size or digest.digest() != msg.payload:
            raise ProtocolError(f"the archive arrived damaged ({got} of {size} bytes, digest "
                                f"{'matches' if digest.digest() == msg.payload else 'differs'})")
        return got


def _drain(sock: socket.socket, budget: float = 5.0) -> None:
    """Read and drop what the source still sends, so that closing does not reset the connection
    (a reset can destroy the answer before the source reads it)."""
    sock.shutdown(socket.SHUT_WR)
    deadline = time.monotonic() + budget
    sock.settimeout(budget)
    while time.monotonic() < deadline and sock.recv(CHUNK):
        pass


# -- source -----------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Migrated:
    """A finished migration, with where the downtime went (seconds)."""

    container_id: str
    pid: int  # on the destination
    bytes: int
    checkpoint_s: float  # freeze + dump + archive
    send_s: float
    restore_s: float  # from the last byte sent to the destination's answer
    frozen_s: float | None  # CRIU's frozen_time (dump)
    criu_restore_s: float | None  # CRIU's restore_time on the destination
    downtime_s: float  # freeze to the destination's answer


def migrate(container_id: str, address: tuple[str, int], token: bytes, *, root: str | None = None,
            criu_path: str | None = None, compress: str = "none", tcp_established: bool = False,
            timeout: float = DEFAULT_TIMEOUT, lazy: bool = False) -> Any:
    """Move the running container ``container_id`` to the receiver at ``address``.

    Stop-and-copy returns a Migrated; ``lazy`` (post-copy, runtime.cr.migrate_lazy) a LazyMigrated.

    Raises MigrationError (the container runs here again, or ``.hint`` says
    how to get it back), ContainerError (it could not be checkpointed: it runs on).
    """
    from runtime.container import Container

    ctr = Container.load(container_id, root)
    if lazy:
        from runtime.cr.lazy import page_server_problem

        problem = page_server_problem()
        if problem:
            raise MigrationError(container_id, problem, hint="nothing was frozen: the container runs here")
    try:
        sock = socket.create_connection(address, timeout=timeout)
    except OSError as exc:
        raise MigrationError(container_id, f"cannot reach {address[0]}:{address[1]}: {exc}",
                             hint="nothing was frozen; is `criu-cr receive` listening there?") from exc
    with sock:
        conn = _Conn(sock)
        try:
            _authenticate(conn, token)
        except (OSError, ProtocolError) as exc:
            raise MigrationError(container_id, str(exc), hint="nothing was frozen: the container runs here") from exc
        if lazy:
            from runtime.cr.migrate_lazy import migrate_lazy

            return migrate_lazy(ctr, conn, root, criu_path, compress, tcp_established, timeout)
        return _move(ctr, conn, root, criu_path, compress, tcp_established)


def _authenticate(conn: _Conn, token: bytes) -> None:
    challenge = conn.recv(Kind.CHALLENGE).payload
    mine = secrets.token_bytes(NONCE_BYTES)
    conn.send(Kind.PROOF, proof(token, "source", challenge) + mine)
    answer = conn.recv(Kind.PROVEN, Kind.REFUSED)
    if answer.kind is Kind.REFUSED:
        raise ProtocolError(f"the destination refused: {answer.payload.decode(errors='replace')}")
    if not check_proof(token, "destination", mine, answer.payload):
        raise ProtocolError("the destination does not hold the token (bad proof): refusing to send to it")


def _move(ctr: Any, conn: _Conn, root: str | None, criu_path: str | None, compress: str,
          tcp_established: bool) -> Migrated:
    store = StateStore(root)
    out = os.path.join(store.root, f".migrate-out-{ctr.id}-{time.monotonic_ns()}.tar")
    t0 = time.monotonic()
    try:
        # A client connected during the freeze is no reason to fail: its connection is dumped
        # always, and restored on the destination only with tcp_established (else closed there);
        # one still connecting is dropped (it retries).
        ck = ctr.checkpoint(CheckpointOptions(export=out, compress=compress, tcp_established=True,
                                              tcp_skip_in_flight=True),
                            criu_path=criu_path)
    except ContainerError as exc:
        if os.path.exists(out):
            os.unlink(out)
        if ctr.refresh().status != "checkpointed":
            raise  # a failed dump leaves the container running (runtime.cr.checkpoint)
        _roll_back(ctr, criu_path, out, f"the archive could not be written: {exc}", exc)
    t1 = time.monotonic()
    size = os.path.getsize(out)
    try:
        conn.send(Kind.OFFER, json_bytes({"id": ctr.id, "size": size, "tcp": "established" if tcp_established else "close"}))
        digest = hashlib.sha256()
        with open(out, "rb") as f:
            while chunk := f.read(CHUNK):
                digest.update(chunk)
                conn.send(Kind.DATA, chunk)
        conn.send(Kind.END, digest.digest())
    except OSError as exc:  # the destination cannot have the whole archive: it cannot run the container
        why = _last_word(conn)
        if why is not None:
            _roll_back(ctr, criu_path, out, f"the destination refused it: {why}", exc, where="destination")
        _roll_back(ctr, criu_path, out, f"sending the checkpoint failed: {exc}", exc)
    t2 = time.monotonic()
    try:
        answer = conn.recv(Kind.RESULT).json()
    except (OSError, ProtocolError) as exc:
        raise MigrationError(ctr.id, f"no answer from the destination after the checkpoint was sent ({exc})",
                             archive_path=out,
                             hint=f"check the destination first; if it does not run {ctr.id}, restore it here with "
                                  f"`criu-cr restore {ctr.id}` (the archive is kept at {out})") from exc
    t3 = time.monotonic()
    if not answer.get("ok"):
        _roll_back(ctr, criu_path, out, f"the destination could not restore it: {answer.get('error')}", None,
                   where="destination")
    _release(store, ctr)
    os.unlink(out)
    return Migrated(container_id=str(answer.get("id") or ctr.id), pid=int(answer.get("pid") or 0), bytes=size,
                    checkpoint_s=t1 - t0, send_s=t2 - t1, restore_s=t3 - t2, downtime_s=t3 - t0,
                    frozen_s=_s(ck.criu_duration_us), criu_restore_s=_s(answer.get("criu_restore_us")))


def _s(us: Any) -> float | None:
    return us / 1e6 if isinstance(us, int) else None


def _last_word(conn: _Conn) -> str | None:
    """The error a destination sent before it closed on us, if it is still there to read."""
    try:
        conn.sock.settimeout(1.0)
        while True:
            msg = conn.recv()
            if msg.kind is Kind.RESULT:
                return str(msg.json().get("error"))
    except (OSError, ProtocolError):
        return None


def _roll_back(ctr: Any, criu_path: str | None, out: str, problem: str, cause: BaseException | None,
               where: str = "source") -> None:
    """Restore the source's own checkpoint (it is intact: only the archive was sent), then raise."""
    kept = out if os.path.exists(out) else None
    try:
        ctr.restore(criu_path=criu_path, tcp_established=True)  # its connections are still valid here
    except ContainerError as exc:
        raise MigrationError(ctr.id, f"{problem}; restoring it here failed too: {exc}", where=where,
                             archive_path=kept, hint=f"its checkpoint stays: `criu-cr restore {ctr.id}` "
                                                     f"once the cause is fixed") from exc
    if kept:
        os.unlink(kept)
    raise MigrationError(ctr.id, problem, where=where, restored_locally=True,
                         hint="it was restored here and runs again") from cause


def _release(store: StateStore, ctr: Any) -> None:
    """Delete the source's copy. On one host (loopback) the destination's container has the same
    cgroup path, now holding its processes: the source then leaves the cgroup to it."""
    from runtime.linux.cgroups import Cgroups

    with store.lock(ctr.id, blocking=True):
        st = store.read(ctr.id)
        cg = Cgroups.from_dict(st.cgroups) if st.cgroups else None
        if cg is not None and cg.exists() and cg.pids():
            store.write(st.replace(cgroups={}))
    ctr.delete(force=True)
