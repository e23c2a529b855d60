"""Post-copy (lazy) migration: the container runs on the destination while its memory is still arriving.

The source checkpoints with ``lazy_port`` (CRIU's lazy dump): every image
but the lazy memory is written, and at CRIU's post-dump -- the tree frozen,
the images complete -- checkpoint's ``before_kill`` sends them as stop-and-copy
does (the archive through ``migrate._Move._hand_over``) over the authenticated
channel and waits for the destination to have them staged. Then
CRIU serves the frozen tree's memory from its page server; the destination
restores with CRIU's lazy-pages daemon fetching from that page server
(:mod:`runtime.cr.lazy`) and the container runs there at once. CRIU's DUMP
answer comes only after the last page has gone; CRIU then kills the tree.

The conversation, after the handshake of :mod:`runtime.cr.migrate_proto`::

    S: OFFER   {"id", "tcp", "mode": "lazy", "page_server_port"}
    D: READY                              (or RESULT ok=false: nothing was frozen)
    S: ARCHIVE {"size"} DATA... END       at post-dump: the archive (no lazy memory in it)
    D: STAGED                             unpacked and checked (else RESULT ok=false: S aborts the dump)
    S: GO      {"pages": "serving"}       CRIU's page server listens (its status-ready notify)
    D: RESULT  {"ok", "phase": "running", "pid", ...}  the container runs (the downtime ends)
    D: RESULT  {"ok", "phase": "pages", "pages_s"}     the last page arrived

Rollback, and the window where there is none:

* Until the destination says "running" the source can take the container
  back: a failure while sending, a destination that refuses the images or
  whose restore fails, one that vanishes before any page was fetched -- the
  source kills its CRIU (CRIU 4.2.1 serves the pages even after a refused
  post-dump), which lets go of the ptrace-stopped tree: it runs on, and the
  network lock is lifted.
* From the moment the destination's tree runs, memory is split between the
  hosts: neither side can run the container alone until every page has
  gone. A connection lost then cannot be rolled back: the source lets CRIU
  end its dump (pages served: the destination has it all; else CRIU resumes
  the source's tree) and the destination kills its copy if its pages stop
  coming. That window is the page transfer, as short as the link allows.

The page server is CRIU's own: it listens on every address of the source
(CRIU uses only the port of a lazy dump's ``ps``) and serves, unauthenticated
and unencrypted, the first client that connects -- for the short time
between the images' acknowledgement and the destination's daemon.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import socket
import threading
import time
from typing import Any

from criu_rpc import NotifyHandler
from runtime.cr.migrate import MigrationError, _answer, _Move, _Refused
from runtime.cr.migrate_dest import Received
from runtime.cr.migrate_proto import Kind, ProtocolError, json_bytes
from runtime.cr.migrate_wire import Conn, recv_file
from runtime.cr.options import CheckpointOptions, LazyPages, RestoreOptions
from runtime.errors import ContainerError

__all__ = ["LazyMigrated", "migrate_lazy", "receive_lazy", "LISTEN_TIMEOUT"]

_log = logging.getLogger("criu_cr.cr")

LISTEN_TIMEOUT = 10.0  # seconds for CRIU's page server to listen (its status-ready) once the images went
DEFAULT_WAIT = 60.0  # seconds for the destination's last word once CRIU's dump has ended


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class LazyMigrated:
    """A finished post-copy migration (seconds from the freeze)."""

    container_id: str
    pid: int  # on the destination
    bytes: int  # the archive sent (without the lazy memory)
    images_s: float  # freeze, dump without the memory, archive sent and acknowledged
    downtime_s: float  # until the container ran on the destination
    pages_s: float  # until the last page arrived there
    restore_s: float | None  # the destination's restore (unpack + CRIU)


# -- source ---------------------------------------------------------------------------------

class _Source(NotifyHandler):
    """The source's side: the images at post-dump (CRIU waits), the rest of the conversation on a thread."""

    def __init__(self, move: _Move, port: int) -> None:
        self.move, self.conn, self.cid, self.port = move, move.conn, move.ctr.id, port
        self.criu_pid: int | None = None
        self.t_images = self.t_running = self.t_pages = 0.0
        self.running: dict[str, Any] = {}
        self.failure: str | None = None  # the destination failed before it ran the container
        self.rolled_back = False
        self._thread: threading.Thread | None = None
        self._serving = threading.Event()  # CRIU's page server listens

    def pre_dump(self, ctx: Any) -> None:
        self.criu_pid = ctx.criu_pid  # our swrk child: killed to take the container back

    def status_ready(self, ctx: Any) -> None:
        self._serving.set()  # CRIU says so once its lazy page server listens

    def send_images(self, work_dir: str) -> None:
        """checkpoint's before_kill: the archive over the channel, until the destination staged it."""
        try:
            self.move._hand_over(work_dir)  # ARCHIVE, DATA... END, then STAGED
        except BaseException as exc:
            if isinstance(exc, _Refused):
                self.failure = str(exc)
            # A refused post-dump does not stop CRIU 4.2.1 from serving the pages (and waiting for a
            # client); killed here, it lets go of the tree, which runs on (criu_rpc.faults).
            self._abort_dump()
            raise
        self.t_images = time.monotonic()
        self._thread = threading.Thread(target=self._converse, name="criu-cr-lazy-source", daemon=True)
        self._thread.start()

    def _converse(self) -> None:
        """While CRIU serves the pages: tell the destination to go, learn when it runs and when it has all."""
        try:
            if not self._serving.wait(LISTEN_TIMEOUT):
                raise TimeoutError(f"CRIU's page server did not listen on port {self.port}")
            self.conn.send(Kind.GO, json_bytes({"pages": "serving"}))
            answer = self.conn.recv(Kind.RESULT).json()
            if not answer.get("ok"):
                self.failure = f"the destination could not restore it: {answer.get('error')}"
                self._abort_dump()
                return
            self.running, self.t_running = answer, time.monotonic()
            done = self.conn.recv(Kind.RESULT).json()
            self.t_pages = time.monotonic()
            if not done.get("ok"):
                _log.warning("container %r: the destination lost its pages: %s", self.cid, done.get("error"))
        except (OSError, ContainerError) as exc:
            if not self.running and not _page_client(self.port):
                # The destination never fetched a page, so it never ran the container: take it back.
                self.failure = f"the destination did not confirm that it runs the container ({exc})"
                self._abort_dump()
            else:
                _log.warning("container %r: the connection to the destination failed while its memory was "
                             "moving (%s): CRIU's dump decides who has it", self.cid, exc)

    def _abort_dump(self) -> None:
        if self.criu_pid and not self.rolled_back:
            self.rolled_back = True
            os.kill(self.criu_pid, signal.SIGKILL)  # our swrk child, unreaped: the tree, ptrace-stopped, runs on

    def join(self, timeout: float) -> None:
        if self._thread is not None:
            self._thread.join(timeout)


def migrate_lazy(ctr: Any, conn: Conn, criu_path: str | None, compress: str, tcp_established: bool) -> LazyMigrated:
    """The post-copy move of ``ctr`` (a runtime.cr.migrate._Local) over the authenticated ``conn``.

    Raises MigrationError (``restored_locally``: it runs here, it never stopped), ContainerError (it
    could not be checkpointed: it runs on).
    """
    port = _free_port()
    try:
        conn.send(Kind.OFFER, json_bytes({"id": ctr.id, "tcp": "established" if tcp_established else "close",
                                          "mode": "lazy", "page_server_port": port}))
        _answer(conn, Kind.READY)
    except (OSError, ProtocolError, _Refused) as exc:
        raise MigrationError(ctr.id, str(exc), where="destination" if isinstance(exc, _Refused) else "source",
                             hint="nothing was frozen: the container runs here") from exc
    src = _Source(_Move(ctr, conn, None, criu_path, compress, None), port)  # type: ignore[arg-type]
    t0 = time.monotonic()
    try:
        ctr.checkpoint(CheckpointOptions(lazy_port=port, before_kill=src.send_images, tcp_established=True,
                                         tcp_skip_in_flight=True),
                       criu_path=criu_path, notify=src)
    except ContainerError as exc:
        src.join(5)
        if ctr.state().status != "running":
            raise
        raise MigrationError(ctr.id, src.failure or str(exc), where="destination" if src.failure else "source",
                             restored_locally=True, hint="it never stopped running here") from exc
    src.join(DEFAULT_WAIT)
    ctr.release()
    t_end = time.monotonic()
    return LazyMigrated(container_id=ctr.id, pid=int(src.running.get("pid") or 0), bytes=src.move.sent_archive,
                        images_s=src.t_images - t0,
                        downtime_s=(src.t_running or t_end) - t0, pages_s=(src.t_pages or t_end) - t0,
                        restore_s=(src.running.get("restore_us") or 0) / 1e6 or None)


def _free_port() -> int:
    """A TCP port free on every address now (CRIU's page server binds it a moment later)."""
    with socket.socket(socket.AF_INET6 if socket.has_ipv6 else socket.AF_INET) as s:
        s.bind(("", 0))
        return int(s.getsockname()[1])


def _tcp_rows() -> list[list[str]]:
    rows: list[list[str]] = []
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(name, encoding="ascii") as f:
                rows += [line.split() for line in f.readlines()[1:]]
        except FileNotFoundError:
            continue
    return rows


def _page_client(port: int) -> bool:
    """Whether the destination's lazy-pages daemon is connected to our page server."""
    return any(r[3] == "01" and int(r[1].rsplit(":", 1)[1], 16) == port for r in _tcp_rows())


# -- destination ----------------------------------------------------------------------------

def receive_lazy(session: Any, offer: dict[str, Any], tcp: bool) -> Received:
    """The destination's side, from the OFFER on (``session``: a runtime.cr.migrate_dest._Session,
    whose run() answers a failure and removes ``session.staging``)."""
    from runtime.cr.portable import import_archive, restore_imported

    rx, conn, cid = session.rx, session.conn, session.cid
    port = offer.get("page_server_port")
    if not isinstance(port, int) or not 0 < port < 65536:
        raise ProtocolError(f"page server port {port!r} is not a port")
    session.staging = os.path.join(rx.store.root, f".migrate-in-{os.getpid()}-{time.monotonic_ns()}")
    os.mkdir(session.staging, 0o700)
    conn.send(Kind.READY)
    first = conn.recv(Kind.ARCHIVE, Kind.ABORT)  # at the source's post-dump
    if first.kind is Kind.ABORT:
        raise ProtocolError(f"the source gave up: {first.json().get('error')}")
    size = first.json().get("size")
    if not isinstance(size, int) or not 0 < size <= rx.limit:
        raise ProtocolError(f"offered archive size {size!r} is not within 1..{rx.limit}")
    t0 = time.monotonic()
    path = os.path.join(session.staging, "rest.tar")
    got = recv_file(conn, path, size, "the checkpoint archive")
    opts = RestoreOptions(tcp_established=tcp, tcp_close=not tcp,
                          lazy=LazyPages(address=conn.sock.getpeername()[0], port=port))
    session.imported = import_archive(rx.store, path, opts, limit=rx.limit)
    os.unlink(path)
    conn.send(Kind.STAGED, json_bytes({}))
    go = conn.recv(Kind.GO, Kind.ABORT)  # CRIU's page server listens
    if go.kind is Kind.ABORT:
        raise ProtocolError(f"the source gave up: {go.json().get('error')}")
    t1 = time.monotonic()
    imported, session.imported = session.imported, None  # restore_imported removes it on failure
    res = restore_imported(rx.store, imported, opts, criu_path=rx.criu_path, notify=rx.notify)
    t2 = time.monotonic()
    with res.lazy:  # the daemon lives on whatever happens to the connection: the copy needs its memory
        _tell(conn, {"ok": True, "phase": "running", "id": cid, "pid": res.pid,
                     "restore_us": int((t2 - t1) * 1e6)})
        try:
            # No deadline of ours: while the daemon runs, pages are coming; it fails by itself when
            # the page server goes (a deadline would delete a copy that was about to be whole).
            pages_s = res.lazy.wait()
        except (ContainerError, TimeoutError) as exc:
            _kill_copy(rx.store, cid, exc)
            _tell(conn, {"ok": False, "phase": "pages", "error": str(exc)})
            return Received(ok=False, container_id=cid, error=str(exc), peer=session.peer, bytes=got)
    _tell(conn, {"ok": True, "phase": "pages", "pages_s": pages_s})
    return Received(ok=True, container_id=cid, pid=res.pid, peer=session.peer, bytes=got, received_s=t1 - t0,
                    restore_s=t2 - t1)


def _tell(conn: Conn, answer: dict[str, Any]) -> None:
    """An answer the source may no longer hear: the copy runs on regardless."""
    try:
        conn.send(Kind.RESULT, json_bytes(answer))
    except OSError as exc:
        _log.warning("the source of %r is gone (%s); the container runs here", answer.get("id", "?"), exc)


def _kill_copy(store: Any, cid: str, why: BaseException) -> None:
    """A restored copy whose memory stopped coming cannot run: it goes (the source may have it back)."""
    from runtime.container import Container

    _log.warning("container %r: its memory did not all arrive (%s); deleting this copy", cid, why)
    try:
        Container.load(cid, store.root).delete(force=True)
    except ContainerError as exc:
        _log.warning("container %r: could not delete the broken copy: %s", cid, exc)
