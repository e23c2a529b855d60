"""Stop-and-copy migration of a container to another criu-cr over TCP (issue 10; docs/migration.md).

The source (:func:`migrate`) proves the shared token first -- a wrong token
or nobody listening fails before anything is frozen. It then opens the page
connection the destination offers (its ticket proves it belongs to this
session) and checkpoints the container through :mod:`runtime.cr.checkpoint`
with that connection as CRIU's page server: the pages go straight to the
destination's CRIU, never to this machine's disk. At CRIU's post-dump --
the images complete, the tree frozen, CRIU waiting for our word -- the rest
of the checkpoint (CRIU's other images, the rootfs diff, criu-cr's files:
an archive of a few hundred KiB) goes over the channel, and the destination
says STAGED. Only then is CRIU told to end the tree, and the destination to
restore (GO). Only a confirmed restore lets the source delete its copy.

Rollback, decided here:
- anything that fails before STAGED (the destination refuses, the
  connection breaks, CRIU dies on either side) fails the post-dump hook:
  CRIU resumes the tree, the container never stopped running here;
- a destination whose restore fails after GO sends the pages back: the
  source restores its own checkpoint, the container runs here again;
- the connection breaks after GO and before the answer: the source cannot
  know whether the destination runs it, so it restores nothing (no
  duplicate); the error says how to find out and what to do.

Security: the token never crosses the wire (HMAC-SHA256 over each side's
fresh nonce, both sides prove it), but nothing is encrypted.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from criu_rpc import PageServer
from runtime.container.state import Action, StateStore
from runtime.cr import archive, manifest, pending
from runtime.cr.migrate_dest import DEFAULT_TIMEOUT, Received, Receiver
from runtime.cr.migrate_proto import (NONCE_BYTES, Kind, ProtocolError, check_proof, encode, is_page_image,
                                      json_bytes, proof, ticket)
from runtime.cr.migrate_wire import Conn, recv_file, send_file
from runtime.cr.options import CheckpointOptions, RestoreOptions
from runtime.errors import ContainerError

if TYPE_CHECKING:
    from runtime.cr.migrate_lazy import LazyMigrated

__all__ = ["Receiver", "Received", "migrate", "Migrated", "MigrationError", "parse_address", "MigrationProgress"]

_log = logging.getLogger("criu_cr.cr")

#: progress(phase, done, total): phase "pages" (bytes CRIU sent, total: the container's memory if
#: known), "images" (the archive of the rest), "restore" (waiting for the destination; done=total=0).
MigrationProgress = Callable[[str, int, "int | None"], None]


class MigrationError(ContainerError):
    """A migration did not happen. ``where``: "source" or "destination"; ``restored_locally``: the
    source runs the container again (or never stopped it); ``archive``: the checkpoint kept on the
    source, if any."""

    def __init__(self, container_id: str, problem: str, *, where: str = "source", restored_locally: bool = False,
                 archive_path: str | None = None, hint: str = "") -> None:
        text = f"migration of {container_id!r} failed: {problem}"
        if hint:
            text += f" ({hint})"
        super().__init__(text)
        self.container_id, self.problem, self.where = container_id, problem, where
        self.restored_locally, self.archive, self.hint = restored_locally, archive_path, hint


class _Refused(Exception):
    """The destination said no (``where`` = "destination")."""


def parse_address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ValueError(f"address {text!r} is not HOST:PORT")
    return host.strip("[]"), int(port)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Migrated:
    """A finished migration, with where the downtime went (seconds)."""

    container_id: str
    pid: int  # on the destination
    bytes: int  # the archive without the pages
    page_bytes: int  # what CRIU sent to the destination's page server
    checkpoint_s: float  # freeze + dump (pages sent) + archive sent and staged
    send_s: float  # the archive's part of checkpoint_s
    restore_s: float  # from GO to the destination's answer
    frozen_s: float | None  # CRIU's frozen_time (dump)
    criu_restore_s: float | None  # CRIU's restore_time on the destination
    downtime_s: float  # freeze to the destination's answer


def migrate(container_id: str, address: tuple[str, int], token: bytes, *, root: str | None = None,
            criu_path: str | None = None, compress: str = "none", tcp_established: bool = False,
            timeout: float = DEFAULT_TIMEOUT, progress: MigrationProgress | None = None,
            notify: Any = None, pre_copy: int = 0, lazy: bool = False) -> Migrated | LazyMigrated:
    """Move the running container ``container_id`` (state root ``root``) to the receiver at ``address``.

    ``pre_copy``: up to that many pre-dump iterations first (runtime.cr.precopy); refused before
    anything is frozen or sent when CRIU cannot track memory (FEATURE_CHECK mem_track).
    ``lazy``: post-copy (runtime.cr.migrate_lazy; returns a LazyMigrated): the container runs on the
    destination while its memory still moves; refused before anything is frozen where CRIU's page
    server cannot work (runtime.cr.lazy.page_server_problem).
    ``progress``: see MigrationProgress. ``notify``: CRIU's dump callbacks (a
    criu_rpc.NotifyHandler; tests inject faults there). ``Container.migrate`` is the same.
    Raises ContainerNotFoundError, ContainerStateError (not running: nothing
    happened), MigrationError (``.restored_locally``: the container runs here;
    else ``.hint`` says how to get it back), ContainerError (it could not be
    checkpointed: it runs on).
    """
    ctr = _Local(StateStore(root), container_id)
    ctr.state().check(Action.CHECKPOINT)  # before anything is sent
    if pre_copy:
        _require_pre_copy(container_id, criu_path)
    if lazy:
        _require_lazy(container_id, pre_copy)
    try:
        sock = socket.create_connection(address, timeout=timeout)
    except OSError as exc:
        raise MigrationError(container_id, f"cannot reach {address[0]}:{address[1]}: {exc}",
                             hint="nothing was frozen; is `criu-cr receive` listening there?") from exc
    with sock:
        conn = Conn(sock)
        try:
            nonces = _authenticate(conn, token)
            if not lazy:
                conn.send(Kind.OFFER, json_bytes({"id": ctr.id, "tcp": "established" if tcp_established else "close"}))
                psock = _page_connection(conn, address[0], token, nonces, timeout)
        except (OSError, ProtocolError, _Refused) as exc:
            raise MigrationError(container_id, str(exc), where=_where(exc),
                                 hint="nothing was frozen: the container runs here") from exc
        if lazy:
            from runtime.cr.migrate_lazy import migrate_lazy

            return migrate_lazy(ctr, conn, criu_path, compress, tcp_established)
        with psock:
            return _Move(ctr, conn, psock, criu_path, compress, progress).run(notify)


def _require_pre_copy(container_id: str, criu_path: str | None) -> None:
    """Pre-copy needs CRIU's memory tracking: asked before anything is frozen or sent."""
    from criu_rpc import CriuClient, CriuError
    from runtime.cr.precopy import PreCopyUnavailable, require_mem_track

    try:
        require_mem_track(CriuClient(criu_path))
    except (PreCopyUnavailable, CriuError) as exc:
        raise MigrationError(container_id, str(exc), hint="nothing was frozen: the container runs here") from exc
    # The iterations (runtime.cr.precopy) are not yet carried over the wire: every machine this
    # was built on lacks soft-dirty tracking, so that path could not be run even once.
    raise MigrationError(container_id, "pre-copy over the network is not implemented in this criu-cr (its "
                         "iteration logic is runtime.cr.precopy)", hint="nothing was frozen: use stop-and-copy or --lazy")


def _require_lazy(container_id: str, pre_copy: int) -> None:
    """Post-copy needs CRIU's page server to work here: asked before anything is frozen or sent."""
    from runtime.cr.lazy import page_server_problem

    problem = "--lazy and --pre-copy exclude each other" if pre_copy else page_server_problem()
    if problem:
        raise MigrationError(container_id, problem, hint="nothing was frozen: the container runs here")


def _where(exc: BaseException) -> str:
    return "destination" if isinstance(exc, _Refused) else "source"


def _authenticate(conn: Conn, token: bytes) -> tuple[bytes, bytes]:
    challenge = conn.recv(Kind.CHALLENGE).payload
    mine = secrets.token_bytes(NONCE_BYTES)
    conn.send(Kind.PROOF, proof(token, "source", challenge) + mine)
    answer = conn.recv(Kind.PROVEN, Kind.REFUSED)
    if answer.kind is Kind.REFUSED:
        raise _Refused(f"the destination refused: {answer.payload.decode(errors='replace')}")
    if not check_proof(token, "destination", mine, answer.payload):
        raise ProtocolError("the destination does not hold the token (bad proof): refusing to send to it")
    return challenge, mine


def _answer(conn: Conn, *expected: Kind) -> Any:
    """The next message, one of ``expected``; a RESULT that says no raises _Refused."""
    msg = conn.recv(*expected, Kind.RESULT)
    if msg.kind is Kind.RESULT and msg.kind not in expected:
        raise _Refused(f"the destination refused: {msg.json().get('error')}")
    return msg


def _page_connection(conn: Conn, host: str, token: bytes, nonces: tuple[bytes, bytes],
                     timeout: float) -> socket.socket:
    """Connect to the destination's one-time page port and show the session's ticket."""
    port = _answer(conn, Kind.PAGES).json().get("port")
    if not isinstance(port, int) or not 0 < port < 65536:
        raise ProtocolError(f"bad page port {port!r}")
    psock = socket.create_connection((host, port), timeout=timeout)
    try:
        psock.sendall(encode(Kind.TICKET, ticket(token, *nonces)))
        _answer(conn, Kind.READY)
        psock.settimeout(None)  # CRIU's dump owns it from now on (blocking)
    except BaseException:
        psock.close()
        raise
    return psock


class _Local:
    """The container on this side, through runtime.cr and the state store (never the facade)."""

    def __init__(self, store: StateStore, cid: str) -> None:
        self.store, self.id = store, cid

    def state(self) -> Any:
        return pending.current(self.store, self.id)

    def checkpoint(self, opts: CheckpointOptions, *, criu_path: str | None, notify: Any) -> Any:
        from runtime.cr.checkpoint import checkpoint

        return checkpoint(self.store, self.id, opts, criu_path=criu_path, notify=notify)

    def restore(self, *, criu_path: str | None, tcp_established: bool) -> Any:
        from runtime.cr.restore import restore

        return restore(self.store, self.id, RestoreOptions(tcp_established=tcp_established), criu_path=criu_path)

    def release(self) -> None:
        """Delete this side's copy once the destination runs it. (Processes found in its cgroup are
        not its own -- CRIU ended its tree -- and destroy() leaves them alone.)"""
        from runtime.container.host import destroy, release_network_lock

        with self.store.lock(self.id, blocking=True):
            st = self.state()
            st.check(Action.FORCE_DELETE)
            destroy(self.store, st, adopted=st.adopted_from is not None, force=True)
            try:
                release_network_lock(st)
            except OSError as exc:
                _log.warning("container %r: could not remove CRIU's network lock: %s", self.id, exc)
            self.store.remove(self.id)


class _Move:
    """The checkpoint with its post-dump hand-over, then GO and the answer."""

    def __init__(self, ctr: _Local, conn: Conn, psock: socket.socket, criu_path: str | None,
                 compress: str, progress: MigrationProgress | None) -> None:
        self.ctr, self.conn, self.psock, self.store = ctr, conn, psock, ctr.store
        self.criu_path, self.compress, self.progress = criu_path, compress, progress
        self.sent_archive = 0
        self.t_sent = 0.0
        self.meter: _PageMeter | None = None
        self.kept_at = ""  # where the destination keeps the checkpoint if the channel breaks before GO

    def run(self, notify: Any) -> Migrated:
        ctr, conn = self.ctr, self.conn
        meter = self.meter = _PageMeter(self.psock, self.progress)
        t0 = time.monotonic()
        try:
            with meter:
                # A client connected during the freeze is no reason to fail: its connection is dumped
                # always, and restored on the destination only with tcp_established (else closed there);
                # one still connecting is dropped (it retries).
                ck = ctr.checkpoint(CheckpointOptions(page_server=PageServer(fd=self.psock.fileno()),
                                                      before_kill=self._hand_over, tcp_established=True,
                                                      tcp_skip_in_flight=True),
                                    criu_path=self.criu_path, notify=notify)
        except ContainerError as exc:
            if ctr.state().status == "running":  # else the destination's staged copy may be all there is
                self._abort(str(exc))
                cause = exc.__cause__
                why = str(cause.__cause__ or cause) if cause is not None else str(exc)
                raise MigrationError(ctr.id, why, where=_where(cause.__cause__ if cause else exc),
                                     restored_locally=True,
                                     hint="CRIU resumed it: the container runs here, it never stopped") from exc
            raise
        self.psock.close()
        t1 = time.monotonic()
        try:
            conn.send(Kind.GO)
            if self.progress:
                self.progress("restore", 0, 0)
            answer = conn.recv(Kind.RESULT)
            result = answer.json()
        except (OSError, ProtocolError) as exc:
            raise MigrationError(ctr.id, f"no answer from the destination after it was told to restore ({exc})",
                                 hint=f"check the destination first: if it does not run {ctr.id}, it kept the "
                                      f"complete checkpoint at {self.kept_at or 'its state root'} and says how "
                                      f"to restore it; this side holds all but the pages at {ck.image_dir}") from exc
        t2 = time.monotonic()
        if not result.get("ok"):
            self._restore_here(ck.image_dir, f"the destination could not restore it: {result.get('error')}")
        ctr.release()
        return Migrated(container_id=str(result.get("id") or ctr.id), pid=int(result.get("pid") or 0),
                        bytes=self.sent_archive, page_bytes=meter.bytes, checkpoint_s=t1 - t0,
                        send_s=self.t_sent, restore_s=t2 - t1, downtime_s=t2 - t0,
                        frozen_s=_s(ck.criu_duration_us), criu_restore_s=_s(result.get("criu_restore_us")))

    def _hand_over(self, work_dir: str) -> None:
        """At post-dump: send the rest, wait for STAGED. Raising makes CRIU resume the tree."""
        from runtime.cr.export_members import archive_members

        t = time.monotonic()
        if self.meter is not None:
            self.meter.stop()  # the pages are all sent: from here the progress is the archive's
        st = self.store.read(self.ctr.id)
        out = os.path.join(self.store.root, f".migrate-out-{self.ctr.id}-{time.monotonic_ns()}.tar")
        try:
            extra, extra_files = archive_members(self.store, st, work_dir)
            archive.write_archive(out, work_dir, extra=extra, extra_files=extra_files, compression=self.compress)
            size = os.path.getsize(out)
            self.conn.send(Kind.ARCHIVE, json_bytes({"size": size}))
            report = (lambda done: self.progress("images", done, size)) if self.progress else None
            self.sent_archive = send_file(self.conn, out, report)
        finally:
            if os.path.exists(out):
                os.unlink(out)
        self.kept_at = str(_answer(self.conn, Kind.STAGED).json().get("kept_at") or "")
        self.t_sent = time.monotonic() - t

    def _abort(self, why: str) -> None:
        try:
            self.conn.send(Kind.ABORT, json_bytes({"error": why}))
        except OSError:
            pass

    def _restore_here(self, image_dir: str, problem: str) -> None:
        """Take the pages back from the destination, restore the container here, raise."""
        try:
            self._pages_back(image_dir)
            self.conn.send(Kind.DONE)  # the destination keeps its copy of the pages until it hears this
            manifest.write_manifest(image_dir)
            self.ctr.restore(criu_path=self.criu_path, tcp_established=True)  # its connections are valid here
        except (OSError, ProtocolError, ContainerError) as exc:
            raise MigrationError(self.ctr.id, f"{problem}; restoring it here failed too: {exc}",
                                 where="destination", hint=f"its checkpoint (without the pages, if they did "
                                 f"not come back) is at {image_dir}; the destination kept nothing") from exc
        raise MigrationError(self.ctr.id, problem, where="destination", restored_locally=True,
                             hint="its pages came back and it was restored here: it runs again")

    def _pages_back(self, image_dir: str) -> None:
        while True:
            msg = self.conn.recv(Kind.FILE, Kind.DONE)
            if msg.kind is Kind.DONE:
                return
            head = msg.json()
            name, size = str(head.get("name")), head.get("size")
            if not is_page_image(name) or not isinstance(size, int) or size < 0:
                raise ProtocolError(f"the destination sent back {name!r}, not a pages image")
            recv_file(self.conn, os.path.join(image_dir, name), size, name)


class _PageMeter:
    """The pages CRIU has sent so far (TCP_INFO's bytes_acked on our copy of the page socket),
    reported every 0.25 s while the dump runs."""

    _BYTES_ACKED = slice(120, 128)  # struct tcp_info's tcpi_bytes_acked (Linux >= 4.1)

    def __init__(self, sock: socket.socket, progress: MigrationProgress | None) -> None:
        import threading

        self.sock, self.progress, self.bytes = sock, progress, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="criu-cr-migrate-meter", daemon=True)

    def _read(self) -> None:
        try:
            info = self.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 232)
        except OSError:
            return
        if len(info) >= self._BYTES_ACKED.stop:
            self.bytes = max(self.bytes, int.from_bytes(info[self._BYTES_ACKED], "little"))

    def _run(self) -> None:
        while not self._stop.wait(0.25):
            self._read()
            if self.progress:
                self.progress("pages", self.bytes, None)

    def __enter__(self) -> "_PageMeter":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        self._read()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def _s(us: Any) -> float | None:
    return us / 1e6 if isinstance(us, int) else None
