"""The destination of a migration: :class:`Receiver` (docs/migration.md, protocol in migrate_proto).

For each source that proves the token, the receiver opens a one-connection
listener on the channel's own address, checks the page connection's ticket,
and hands that connection to CRIU's page server (PAGE_SERVER_CHLD with
``ps.fd``: CRIU never listens itself). The pages land in a private staging
directory under the state root, hashed as they arrive. At the source's
post-dump the rest of the checkpoint comes as an archive over the channel;
it is unpacked and checked with ``restore --import``'s code (the rules for
untrusted input), the pages join it, and the receiver says STAGED. Only
after GO -- the source's tree is gone -- does it restore. A failed restore
sends the pages back, so the source can run its container again.

A Receiver serves one migration at a time: in a thread
(``serve_forever(stop)``, ``stop`` a threading.Event) or a process (the
``criu-cr receive`` command).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import secrets
import signal
import socket
import threading
import time
from typing import Any

from criu_rpc import CriuClient, CriuError, CriuOptions, NotifyHandler, PageServer
from runtime.container.state import StateStore, validate_id
from runtime.cr import archive, manifest
from runtime.cr.migrate_proto import (NONCE_BYTES, TICKET_FRAME_BYTES, Kind, ProtocolError, check_proof,
                                      check_ticket_frame, is_page_image, json_bytes, proof)
from runtime.cr.migrate_wire import Conn, drain, recv_exact, recv_file, send_file
from runtime.cr.options import RestoreOptions
from runtime.errors import ContainerError
from runtime.linux import mounts
from runtime.linux.fsmode import makedirs_private

__all__ = ["Receiver", "Received", "DEFAULT_TIMEOUT"]

_log = logging.getLogger("criu_cr.cr")

DEFAULT_TIMEOUT = 120.0  # seconds a peer may stay silent (a dump or restore of a big container included)
ACCEPT_POLL = 0.2  # how often serve_forever looks at its stop event


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Received:
    """One migration the receiver handled: ``ok`` and the container's id/pid, or ``error``."""

    ok: bool
    container_id: str = ""
    pid: int = 0
    error: str = ""
    peer: str = ""
    bytes: int = 0  # the archive without the pages
    received_s: float = 0.0  # from READY to STAGED (the source's dump, the pages, the archive)
    restore_s: float = 0.0


class _Failed(Exception):
    """This migration failed here; the source is told ``reason`` (and gets the pages back if it sent GO)."""


class Receiver:
    """Accepts migrations on ``address`` (port 0: any; see ``.address``) into the state root ``root``.

    ``page_port``: the port of the one-time page listener (0: any; give one for a firewall).
    ``notify``: CRIU's restore callbacks (tests inject faults there). Raises OSError (the address).
    """

    def __init__(self, address: tuple[str, int], token: bytes, *, root: str | None = None,
                 criu_path: str | None = None, limit: int = archive.DEFAULT_IMPORT_LIMIT,
                 timeout: float = DEFAULT_TIMEOUT, notify: NotifyHandler | None = None, page_port: int = 0) -> None:
        self.page_port = page_port
        self.token, self.store, self.criu_path, self.limit, self.timeout = token, StateStore(root), criu_path, limit, timeout
        self.notify = notify
        self._sock = socket.create_server(address, reuse_port=False)
        self.address: tuple[str, int] = self._sock.getsockname()[:2]

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> "Receiver":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def serve_forever(self, stop: threading.Event, on_result: Any = None) -> None:
        """Handle migrations one after the other until ``stop`` is set (looked at every
        ACCEPT_POLL s between migrations; one in progress is finished first). ``on_result(Received)``
        is called after each."""
        self._sock.settimeout(ACCEPT_POLL)
        try:
            while not stop.is_set():
                try:
                    got = self.serve_once()
                except TimeoutError:
                    continue
                if on_result is not None:
                    on_result(got)
        finally:
            self._sock.settimeout(None)

    def serve_once(self) -> Received:
        """Accept one connection and handle it; never raises for what the peer did (see ``Received``).
        Raises TimeoutError when the listening socket has a timeout and nobody came."""
        conn, peer = self._sock.accept()
        where = f"{peer[0]}:{peer[1]}"
        with conn:
            conn.settimeout(self.timeout)
            return _Session(self, Conn(conn), where).run()


class _Session:
    """One migration, destination side. Everything it made lives under ``self.staging``."""

    def __init__(self, rx: Receiver, conn: Conn, peer: str) -> None:
        self.rx, self.conn, self.peer = rx, conn, peer
        self.cid = ""
        self.staging: str | None = None
        self.server: Any = None  # criu_rpc PageServerChild
        self.imported: Any = None  # portable.Imported
        self.kept = ""  # where the staged checkpoint is kept if the channel breaks between STAGED and GO
        self.staged = False  # STAGED was sent: the source may end its tree at any moment
        self.went = False  # GO came: the source's tree is gone
        self.pages_stranded = False  # the pages could not go back: they stay in staging

    def run(self) -> Received:
        try:
            return self._run()
        except (OSError, ContainerError, CriuError, _Failed) as exc:
            if self.staged and not self.went and not isinstance(exc, _Failed):
                return self._keep(exc)
            _log.warning("migration from %s failed: %s", self.peer, exc)
            self._answer_failure(str(exc))
            return Received(ok=False, container_id=self.cid, error=str(exc), peer=self.peer)
        finally:
            self._stop_page_server()
            if self.imported is not None:
                self.imported.discard()
            if self.staging is not None and not self.pages_stranded:
                mounts.remove_tree(self.staging)

    def _run(self) -> Received:
        rx, conn = self.rx, self.conn
        nonce_d = secrets.token_bytes(NONCE_BYTES)
        conn.send(Kind.CHALLENGE, nonce_d)
        msg = conn.recv(Kind.PROOF)
        if len(msg.payload) != 32 + NONCE_BYTES or not check_proof(rx.token, "source", nonce_d, msg.payload[:32]):
            why = "bad token: the source does not hold this receiver's token"
            conn.send(Kind.REFUSED, why.encode())
            _log.warning("migration from %s refused: %s", self.peer, why)
            return Received(ok=False, error=why, peer=self.peer)
        nonce_s = msg.payload[32:]
        conn.send(Kind.PROVEN, proof(rx.token, "destination", nonce_s))
        conn.proven = True
        offer = conn.recv(Kind.OFFER).json()
        self.cid = str(offer.get("id", ""))
        try:
            validate_id(self.cid)
        except ValueError as exc:
            raise ProtocolError(f"offered container id: {exc}") from None
        if rx.store.exists(self.cid):
            raise _Failed(f"a container {self.cid!r} exists here already")
        tcp = offer.get("tcp") == "established"
        makedirs_private(rx.store.root, 0o711)
        if offer.get("mode") == "lazy":  # post-copy
            from runtime.cr.migrate_lazy import receive_lazy

            return receive_lazy(self, offer, tcp)
        self.staging = os.path.join(rx.store.root, f".migrate-in-{os.getpid()}-{time.monotonic_ns()}")
        pages_dir = os.path.join(self.staging, "pages")
        makedirs_private(pages_dir)
        t0 = time.monotonic()
        follower = self._start_page_server(pages_dir, nonce_d, nonce_s)
        with follower:
            conn.send(Kind.READY)
            # The source freezes and dumps now; the rest comes at its post-dump.
            first = conn.recv(Kind.ARCHIVE, Kind.ABORT)
            if first.kind is Kind.ABORT:
                raise _Failed(f"the source gave up: {first.json().get('error')}")
            size = first.json().get("size")
            if not isinstance(size, int) or not 0 < size <= rx.limit:
                raise ProtocolError(f"offered archive size {size!r} is not within 1..{rx.limit}")
            path = os.path.join(self.staging, "rest.tar")
            got = recv_file(conn, path, size, "the checkpoint archive")
            self._end_page_server()
            self._stage(path, pages_dir, tcp, follower)
        t1 = time.monotonic()
        self.staged = True
        conn.send(Kind.STAGED, json_bytes({"kept_at": self._kept_path()}))
        go = conn.recv(Kind.GO, Kind.ABORT)
        if go.kind is Kind.ABORT:
            raise _Failed(f"the source gave up: {go.json().get('error')}")
        self.went = True
        from runtime.cr.portable import restore_imported

        opts = RestoreOptions(tcp_established=tcp, tcp_close=not tcp)
        imported, self.imported = self.imported, None  # restore_imported removes it on failure
        res = restore_imported(rx.store, imported, opts, criu_path=rx.criu_path, notify=rx.notify)
        t2 = time.monotonic()
        conn.send(Kind.RESULT, json_bytes({"ok": True, "id": self.cid, "pid": res.pid,
                                           "criu_restore_us": res.criu_duration_us,
                                           "restore_us": int((t2 - t1) * 1e6)}))
        return Received(ok=True, container_id=self.cid, pid=res.pid, peer=self.peer, bytes=got,
                        received_s=t1 - t0, restore_s=t2 - t1)

    # -- the page connection and CRIU's page server ----------------------------------------

    def _start_page_server(self, pages_dir: str, nonce_d: bytes, nonce_s: bytes) -> manifest.Follower:
        """One connection on the channel's own address, its ticket checked, handed to CRIU."""
        local = self.conn.sock.getsockname()[0]
        with socket.create_server((local, self.rx.page_port), family=self.conn.sock.family, backlog=1) as listener:
            listener.settimeout(self.rx.timeout)
            self.conn.send(Kind.PAGES, json_bytes({"port": listener.getsockname()[1]}))
            psock, _ = listener.accept()  # the listener closes now: nobody else gets in
        with psock:
            psock.settimeout(self.rx.timeout)
            if not check_ticket_frame(self.rx.token, nonce_d, nonce_s, recv_exact(psock, TICKET_FRAME_BYTES)):
                raise _Failed("the page connection did not carry this session's ticket: refused")
            psock.settimeout(None)  # CRIU's page server owns it now (blocking)
            client = CriuClient(self.rx.criu_path)
            self.server = client.page_server_child(CriuOptions(images_dir=pages_dir, ps=PageServer(fd=psock.fileno()),
                                                               log_level=4), timeout=self.rx.timeout)
        return manifest.follow(pages_dir)

    def _end_page_server(self) -> None:
        """The page server's word: all pages written (exit 0), else this migration fails."""
        server, self.server = self.server, None
        try:
            status = server.wait()
        finally:
            server.close()
        if not (os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0):
            raise _Failed(f"CRIU's page server failed (wait status {status}; log: {server.log_path})")

    def _stop_page_server(self) -> None:
        server, self.server = self.server, None
        if server is None:
            return
        try:
            if server.pid:
                # Our swrk's child, unreaped until WAIT_PID: the pid cannot have been reused.
                os.kill(server.pid, signal.SIGKILL)
            server.wait()
        except (OSError, CriuError):
            pass
        finally:
            server.close()

    # -- staging and failure ---------------------------------------------------------------

    def _stage(self, path: str, pages_dir: str, tcp: bool, follower: manifest.Follower) -> None:
        """Unpack the archive (checked as any import), add the pages, seal the manifest again."""
        from runtime.cr.portable import import_archive

        opts = RestoreOptions(tcp_established=tcp, tcp_close=not tcp)
        self.imported = import_archive(self.rx.store, path, opts, limit=self.rx.limit)
        os.unlink(path)
        pages = [n for n in os.listdir(pages_dir) if is_page_image(n)]
        if not any(n.startswith("pagemap-") for n in pages):
            raise _Failed("no pages arrived from the source's CRIU")
        for name in pages:
            # Linked, not moved: the staging copy goes back to the source if the restore fails.
            os.link(os.path.join(pages_dir, name), os.path.join(self.imported.image_dir, name))
        manifest.write_manifest(self.imported.image_dir, followed=follower)

    def _kept_path(self) -> str:
        if not self.kept:
            self.kept = os.path.join(self.rx.store.root, f".migrate-kept-{self.cid}-{time.monotonic_ns()}")
        return self.kept

    def _keep(self, exc: BaseException) -> Received:
        """The channel broke between STAGED and GO: the source may have ended its tree (it got STAGED)
        or resumed it (it did not). Restoring could make a duplicate, discarding could lose the
        container: the complete checkpoint is kept, and the operator told how to restore it."""
        imported, self.imported = self.imported, None
        kept = self._kept_path()
        os.rename(imported.work, kept)
        how = (f"criu-cr restore {self.cid} --image-path {kept}/checkpoint --bundle {kept}/bundle "
               "--tcp-established")
        error = (f"the connection broke after everything was staged ({exc}); if the source no longer runs "
                 f"{self.cid!r}, restore it here: {how}; else remove {kept}")
        _log.warning("migration from %s: %s", self.peer, error)
        return Received(ok=False, container_id=self.cid, error=error, peer=self.peer)

    def _answer_failure(self, error: str) -> None:
        """Tell a proven source; after GO also hand the pages back. Drain, so the answer survives."""
        if not self.conn.proven:
            return
        try:
            self.conn.send(Kind.RESULT, json_bytes({"ok": False, "error": error}))
            if self.went and self.staging is not None:
                self._send_pages_back(os.path.join(self.staging, "pages"))
                self.conn.recv(Kind.DONE)  # the source has them: only now may they go here
            drain(self.conn.sock)
        except (OSError, ProtocolError) as exc:
            _log.warning("migration from %s: could not answer the source: %s", self.peer, exc)
            if self.went and self.staging is not None:
                # The source's tree is gone and its checkpoint lacks exactly these: never delete them.
                self.pages_stranded = True
                _log.warning("migration of %r: its pages stay in %s/pages; copy them into the source's "
                             "checkpoint directory and run `criu-cr restore %s` there", self.cid,
                             self.staging, self.cid)

    def _send_pages_back(self, pages_dir: str) -> None:
        for name in sorted(os.listdir(pages_dir)):
            if is_page_image(name):
                path = os.path.join(pages_dir, name)
                self.conn.send(Kind.FILE, json_bytes({"name": name, "size": os.path.getsize(path)}))
                send_file(self.conn, path)
        self.conn.send(Kind.DONE)
