"""Post-copy (lazy) migration: the container runs on the destination while its memory is still arriving.

The source checkpoints with ``lazy_port`` (CRIU's lazy dump): every image
but the lazy memory is written, and at CRIU's post-dump -- the tree frozen,
the images complete -- our hook sends them as the export archive over the
authenticated channel and waits for the destination to have them. Then
CRIU serves the frozen tree's memory from its page server; the destination
restores with CRIU's lazy-pages daemon fetching from that page server
(:mod:`runtime.cr.lazy`) and the container runs there at once. CRIU's DUMP
answer comes only after the last page has gone; CRIU then kills the tree.

The conversation, after the handshake of :mod:`runtime.cr.migrate_proto`::

    S: OFFER   {"id", "size", "tcp", "mode": "lazy", "page_server_port"}
    S: DATA... END                        the archive (no lazy memory in it)
    D: RESULT  {"ok", "phase": "images"}  received and checked (else ok=false: S aborts the dump)
    S: OFFER   {"pages": "serving"}       CRIU's page server listens (its status-ready notify)
    D: RESULT  {"ok", "phase": "running", "pid", ...}  the container runs (the downtime ends)
    D: RESULT  {"ok", "phase": "pages", "pages_s"}     the last page arrived

Rollback, and the window where there is none:

* Until the destination says "running" the source can take the container
  back: a failure while sending, or a destination that refuses the images,
  raises in the post-dump hook (CRIU aborts the dump, the tree runs on);
  a destination whose restore fails makes the source kill its CRIU (the
  tree, only ptrace-stopped, runs on; its network lock is lifted).
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
import hashlib
import logging
import os
import signal
import socket
import threading
import time
from typing import Any

from criu_rpc import NotifyHandler
from runtime.container.state import StateStore
from runtime.cr.meta import dump_dir_for
from runtime.cr.migrate import CHUNK, MigrationError, Received, _Conn, _release
from runtime.cr.migrate_proto import Kind, ProtocolError, json_bytes
from runtime.cr.options import DEFAULT_IMAGE_DIR, CheckpointOptions, LazyPages, RestoreOptions
from runtime.errors import ContainerError

__all__ = ["LazyMigrated", "migrate_lazy", "receive_lazy", "LISTEN_TIMEOUT"]

_log = logging.getLogger("criu_cr.cr")

LISTEN_TIMEOUT = 10.0  # seconds for CRIU's page server to listen (its status-ready) once the images went


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
    """The source's side of the conversation: the images at post-dump (CRIU waits), the rest on a thread."""

    def __init__(self, conn: _Conn, store: StateStore, cid: str, final_dir: str, port: int, tcp: bool,
                 compress: str) -> None:
        self.conn, self.store, self.cid, self.final_dir, self.port = conn, store, cid, final_dir, port
        self.tcp, self.compress = tcp, compress
        self.criu_pid: int | None = None
        self.bytes = 0
        self.t_images = self.t_running = self.t_pages = 0.0
        self.running: dict[str, Any] = {}
        self.failure: str | None = None  # the destination failed before it ran the container
        self.rolled_back = False
        self._thread: threading.Thread | None = None
        self._serving = threading.Event()  # CRIU's page server listens

    def post_dump(self, ctx: Any) -> None:
        self.criu_pid = ctx.criu_pid
        try:
            self._send_images()
        except BaseException:
            # A refused post-dump does not stop CRIU 4.2.1 from serving the pages (and waiting for a
            # client); killed here, it lets go of the tree, which runs on (criu_rpc.faults).
            self._abort_dump()
            raise
        self.t_images = time.monotonic()
        self._thread = threading.Thread(target=self._converse, name="criu-cr-lazy-source", daemon=True)
        self._thread.start()

    def status_ready(self, ctx: Any) -> None:
        self._serving.set()  # CRIU says so once its lazy page server listens

    def _send_images(self) -> None:
        out = self.final_dir + ".tar"
        try:
            self.bytes = _export(self.store, self.cid, dump_dir_for(self.final_dir), out, self.compress)
            self.conn.send(Kind.OFFER, json_bytes({"id": self.cid, "size": self.bytes, "mode": "lazy",
                                                   "tcp": "established" if self.tcp else "close",
                                                   "page_server_port": self.port}))
            _send_file(self.conn, out)
        finally:
            if os.path.exists(out):
                os.unlink(out)
        answer = self.conn.recv(Kind.RESULT).json()
        if not answer.get("ok"):
            self.failure = f"the destination refused the images: {answer.get('error')}"
            raise MigrationError(self.cid, self.failure, where="destination")

    def _converse(self) -> None:
        """While CRIU serves the pages: tell the destination to go, learn when it runs and when it has all."""
        try:
            if not self._serving.wait(LISTEN_TIMEOUT):
                raise TimeoutError(f"CRIU's page server did not listen on port {self.port}")
            self.conn.send(Kind.OFFER, json_bytes({"pages": "serving"}))
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


def migrate_lazy(ctr: Any, conn: _Conn, root: str | None, criu_path: str | None, compress: str,
                 tcp_established: bool, timeout: float) -> LazyMigrated:
    """The post-copy move of ``ctr`` over the authenticated ``conn`` (see the module's text).

    Raises MigrationError (``restored_locally``: it runs here again), ContainerError (it could not be
    checkpointed: it runs on).
    """
    from runtime.cr.checkpoint import checkpoint

    store = StateStore(root)
    # The container's own checkpoint directory: a failed dump's log stays there as after any checkpoint,
    # and a successful one goes with the container.
    final = store.path(ctr.id, DEFAULT_IMAGE_DIR)
    src = _Source(conn, store, ctr.id, final, _free_port(), tcp_established, compress)
    t0 = time.monotonic()
    try:
        checkpoint(store, ctr.id, CheckpointOptions(image_path=final, tcp_established=True, tcp_skip_in_flight=True,
                                                    lazy_port=src.port),
                   criu_path=criu_path, notify=src)
    except ContainerError as exc:
        src.join(5)
        if ctr.refresh().status != "running":
            raise
        raise MigrationError(ctr.id, src.failure or str(exc), where="destination" if src.failure else "source",
                             restored_locally=True, hint="it never stopped running here") from exc
    src.join(timeout)
    _release(store, ctr)
    t_end = time.monotonic()
    return LazyMigrated(container_id=ctr.id, pid=int(src.running.get("pid") or 0), bytes=src.bytes,
                        images_s=src.t_images - t0,
                        downtime_s=(src.t_running or t_end) - t0, pages_s=(src.t_pages or t_end) - t0,
                        restore_s=(src.running.get("restore_us") or 0) / 1e6 or None)


def _export(store: StateStore, cid: str, image_dir: str, out: str, compress: str) -> int:
    from runtime.cr.portable import export_checkpoint

    export_checkpoint(store, store.read(cid), image_dir, CheckpointOptions(export=out, compress=compress))
    return os.path.getsize(out)


def _send_file(conn: _Conn, path: str) -> None:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
            conn.send(Kind.DATA, chunk)
    conn.send(Kind.END, digest.digest())


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

def receive_lazy(receiver: Any, conn: _Conn, offer: dict[str, Any], peer: str) -> Received:
    """The destination's side, from the OFFER on (``receiver``: the :class:`runtime.cr.migrate.Receiver`)."""
    from runtime.cr.portable import restore_import

    cid, size, port = str(offer.get("id", "")), offer.get("size"), offer.get("page_server_port")
    if not isinstance(size, int) or not 0 < size <= receiver.limit:
        raise ProtocolError(f"offered archive size {size!r} is not within 1..{receiver.limit}")
    if not isinstance(port, int) or not 0 < port < 65536:
        raise ProtocolError(f"page server port {port!r} is not a port")
    path = os.path.join(receiver.store.root, f".migrate-in-{os.getpid()}-{time.monotonic_ns()}.tar")
    try:
        t0 = time.monotonic()
        got = receiver._receive(conn, path, size)
        conn.send(Kind.RESULT, json_bytes({"ok": True, "phase": "images"}))
        conn.recv(Kind.OFFER)  # the page server listens
        t1 = time.monotonic()
        tcp = offer.get("tcp") == "established"
        source = LazyPages(address=conn.sock.getpeername()[0], port=port)
        try:
            res = restore_import(receiver.store, path, RestoreOptions(tcp_established=tcp, tcp_close=not tcp,
                                                                      lazy=source),
                                 limit=receiver.limit, criu_path=receiver.criu_path)
        except (ContainerError, OSError) as exc:
            conn.send(Kind.RESULT, json_bytes({"ok": False, "error": str(exc)}))
            return Received(ok=False, container_id=cid, error=str(exc), peer=peer, bytes=got)
        t2 = time.monotonic()
        with res.lazy:  # the daemon lives on whatever happens to the connection: the copy needs its memory
            _tell(conn, {"ok": True, "phase": "running", "id": cid, "pid": res.pid,
                         "restore_us": int((t2 - t1) * 1e6)})
            try:
                # No deadline of ours: while the daemon runs, pages are coming; it fails by itself when
                # the page server goes (a deadline would delete a copy that was about to be whole).
                pages_s = res.lazy.wait()
            except (ContainerError, TimeoutError) as exc:
                _kill_copy(receiver.store, cid, exc)
                _tell(conn, {"ok": False, "phase": "pages", "error": str(exc)})
                return Received(ok=False, container_id=cid, error=str(exc), peer=peer, bytes=got)
        _tell(conn, {"ok": True, "phase": "pages", "pages_s": pages_s})
        return Received(ok=True, container_id=cid, pid=res.pid, peer=peer, bytes=got, received_s=t1 - t0,
                        restore_s=t2 - t1)
    finally:
        if os.path.exists(path):
            os.unlink(path)


def _tell(conn: _Conn, answer: dict[str, Any]) -> None:
    """An answer the source may no longer hear: the copy runs on regardless."""
    try:
        conn.send(Kind.RESULT, json_bytes(answer))
    except OSError as exc:
        _log.warning("the source of %r is gone (%s); the container runs here", answer.get("id", "?"), exc)


def _kill_copy(store: StateStore, cid: str, why: BaseException) -> None:
    """A restored copy whose memory stopped coming cannot run: it goes (the source may have it back)."""
    from runtime.container import Container

    _log.warning("container %r: its memory did not all arrive (%s); deleting this copy", cid, why)
    try:
        Container.load(cid, store.root).delete(force=True)
    except ContainerError as exc:
        _log.warning("container %r: could not delete the broken copy: %s", cid, exc)
