"""Moving CRIU's RPC messages: a ``criu swrk`` child or a ``criu service`` socket.

Both transports carry whole SOCK_SEQPACKET messages.  Receiving peeks at the
next message's real size first (``MSG_PEEK|MSG_TRUNC``), so no reply is ever
cut at a fixed buffer size, and keeps the fds CRIU passes with SCM_RIGHTS
(received close-on-exec).  A message that still arrives truncated raises
:class:`~criu_rpc.errors.CriuProtocolError`.

:class:`SwrkProcess` is a context manager: ``__exit__`` closes the socket,
which makes CRIU exit, then reaps the child; only when CRIU does not exit in
time is that child (and only it) killed.

Every receive waits with ``poll()`` against an optional monotonic deadline
(``TimeoutError`` when it passes).  A swrk receive also watches CRIU's
pidfd: tasks CRIU forked inherit its end of the socket, so a dead CRIU does
not always mean EOF on the socket -- its exit counts as one.
:meth:`SwrkProcess.kill` ends CRIU and what it started (see
:mod:`criu_rpc.proctree`); a ``criu service`` worker cannot be killed by
its client, so :meth:`Connection.kill` there only closes the connection.
"""

from __future__ import annotations

import array
import os
import select
import socket
import subprocess
import time
from collections.abc import Iterable, Sequence

from .errors import CriuNotFoundError, CriuProtocolError
from .logs import is_harmless
from .proctree import kill_tree

__all__ = ["Connection", "SwrkProcess", "ServiceConnection", "recv_message", "send_message", "MAX_FDS"]

#: Most fds one CRIU message may carry (CRIU sends at most one).
MAX_FDS = 16
_FD_SIZE = array.array("i").itemsize
# How much of CRIU's stderr is kept for error reporting.
_STDERR_KEPT = 65536


def send_message(sock: socket.socket, data: bytes) -> None:
    """Send one message; raises BrokenPipeError/ConnectionError if the peer is gone."""
    sent = sock.send(data, socket.MSG_NOSIGNAL)
    if sent != len(data):  # cannot happen on SOCK_SEQPACKET, but never send half a request silently
        raise CriuProtocolError(f"sent {sent} of {len(data)} bytes of a request")


def wait_readable(fds: Sequence[int], deadline: float | None) -> set[int]:
    """Wait until one of ``fds`` is readable (or hung up); return those that are.

    ``deadline`` is a :func:`time.monotonic` time; raises TimeoutError once
    it passes with nothing readable.
    """
    poller = select.poll()
    for fd in fds:
        poller.register(fd, select.POLLIN)
    while True:
        ms = None if deadline is None else max(0, int((deadline - time.monotonic()) * 1000 + 0.999))
        ready = {fd for fd, _ in poller.poll(ms)}
        if ready:
            return ready
        if deadline is not None and time.monotonic() >= deadline:
            raise TimeoutError("no message from CRIU before the deadline")


def _close_all(fds: Iterable[int]) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


def recv_message(sock: socket.socket) -> tuple[bytes, list[int]] | None:
    """Receive one whole message and the fds passed with it; None at EOF.

    The caller owns the returned fds.  CRIU never sends an empty message, so
    a zero-length read is taken as EOF.
    """
    # A 1-byte peek buffer: CPython skips the syscall for an empty one.
    size = sock.recv_into(bytearray(1), 1, socket.MSG_PEEK | socket.MSG_TRUNC)
    if size == 0:
        return None
    data, ancdata, flags, _ = sock.recvmsg(size, socket.CMSG_SPACE(MAX_FDS * _FD_SIZE),
                                           socket.MSG_CMSG_CLOEXEC)
    fds: list[int] = []
    for level, kind, payload in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            arr = array.array("i")
            arr.frombytes(payload[: len(payload) - len(payload) % _FD_SIZE])
            fds.extend(arr)
    if flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC):
        _close_all(fds)
        what = "message" if flags & socket.MSG_TRUNC else "passed fds (more than %d)" % MAX_FDS
        raise CriuProtocolError(f"CRIU's {what} arrived truncated ({len(data)} of {size} bytes read)")
    if not data:
        _close_all(fds)
        return None
    return data, fds


class Connection:
    """A socket to CRIU; subclasses say how it was obtained."""

    sock: socket.socket

    #: pid of the CRIU process on the other end, when we know it.
    pid: int | None = None

    def send(self, data: bytes) -> None:
        send_message(self.sock, data)

    def recv(self, deadline: float | None = None) -> tuple[bytes, list[int]] | None:
        """The next message, None at EOF; TimeoutError after ``deadline`` (monotonic)."""
        wait_readable([self.sock.fileno()], deadline)
        return recv_message(self.sock)

    def kill(self, extra_roots: Sequence[int] = ()) -> tuple[bool, tuple[int, ...]]:
        """End the request: ``(criu_killed, other pids killed)``.

        Here only the connection is closed: the CRIU at the other end is
        not ours to kill (see :class:`SwrkProcess`).
        """
        self.close()
        return False, ()

    def wait(self, timeout: float | None = None) -> int | None:
        """Exit status of CRIU after the connection ended (None if unknown)."""
        return None

    def stderr_errors(self, limit: int = 3) -> list[str]:
        """CRIU's own error lines from its stderr, when we kept it."""
        return []

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SwrkProcess(Connection):
    """A ``criu swrk <fd>`` child connected by a SOCK_SEQPACKET socketpair.

    ``pass_fds`` are our fds the child must have at the same numbers (fds
    named in the request: inherit_fd, page-server socket, images dir).
    CRIU's stderr (where it reports what happens outside a request's log)
    goes to an anonymous memory file, read back by :meth:`stderr_errors`.
    Raises CriuNotFoundError when ``criu_path`` cannot be executed; nothing
    stays open after a failed spawn.
    """

    def __init__(self, criu_path: str, *, pass_fds: Sequence[int] = (), reap_timeout: float = 10.0) -> None:
        self.reap_timeout = reap_timeout
        self.returncode: int | None = None
        self._stderr_head = b""
        # Python creates both ends close-on-exec; pass_fds re-enables only the child's.
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        # A memfd, not a file in /tmp: no disk, and a pipe could fill and block CRIU.
        self._stderr = os.fdopen(os.memfd_create("criu-swrk-stderr", os.MFD_CLOEXEC), "w+b")
        try:
            self._proc = subprocess.Popen(
                [criu_path, "swrk", str(theirs.fileno())],
                pass_fds=(theirs.fileno(), *pass_fds),
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self._stderr,
                close_fds=True,
            )
        except BaseException as exc:  # cleanup, then re-raise: a failed spawn holds no fd
            ours.close()
            theirs.close()
            self._stderr.close()
            if isinstance(exc, (FileNotFoundError, PermissionError)):
                raise CriuNotFoundError([criu_path], f"cannot execute it: {exc.strerror}") from exc
            raise
        # Keep no copy of CRIU's end: when CRIU dies, our reads see EOF
        # instead of hanging on a socket we hold open ourselves.
        theirs.close()
        self.sock = ours
        self.pid = self._proc.pid
        # Our unreaped child: its pid cannot be reused, so this pidfd is CRIU's.
        try:
            self._pidfd: int | None = os.pidfd_open(self.pid)
        except OSError:  # kernel < 5.3: EOF alone tells that CRIU is gone
            self._pidfd = None

    def recv(self, deadline: float | None = None) -> tuple[bytes, list[int]] | None:
        """The next message; None at EOF or once CRIU has exited; TimeoutError after ``deadline``."""
        if self._pidfd is None:
            return super().recv(deadline)
        ready = wait_readable([self.sock.fileno(), self._pidfd], deadline)
        if self.sock.fileno() not in ready:
            # CRIU exited with nothing left unread (what it sent before exiting
            # would make the socket readable too): its end may be held open by
            # tasks it forked, so do not wait for EOF.
            return None
        return recv_message(self.sock)

    def kill(self, extra_roots: Sequence[int] = ()) -> tuple[bool, tuple[int, ...]]:
        """SIGKILL CRIU and every task it started, then reap CRIU.

        ``extra_roots``: tasks CRIU forked that are not its descendants (the
        ``rst_sibling`` root, a child of ours); they and their descendants
        die too.  Returns ``(True, pids killed besides CRIU)``.
        """
        killed: list[int] = []
        if self._proc.returncode is None and self._pidfd is not None:
            killed = kill_tree({self.pid: self._pidfd}, extra_roots, no_reap={self.pid})
            killed.remove(self.pid)
        elif self._proc.returncode is None:
            self._proc.kill()
        self.sock.close()
        self.returncode = self._proc.wait()
        self._close_pidfd()
        self._close_stderr()
        return True, tuple(killed)

    def _close_pidfd(self) -> None:
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None

    def wait(self, timeout: float | None = None) -> int | None:
        """Reap CRIU; its exit status, or -signal.  Raises subprocess.TimeoutExpired."""
        if timeout is not None and self._proc.returncode is None:
            self._wait_exit(timeout)
        self.returncode = self._proc.wait()
        return self.returncode

    def _wait_exit(self, timeout: float) -> None:
        # Popen.wait(timeout) polls with growing sleeps, adding milliseconds
        # to every request; a pidfd becomes readable the moment CRIU exits.
        if self._pidfd is None:  # kernel < 5.3: fall back to polling
            self._proc.wait(timeout)
            return
        if not select.select([self._pidfd], [], [], timeout)[0]:
            raise subprocess.TimeoutExpired(self._proc.args, timeout)

    def close(self) -> None:
        """Close the socket, then reap CRIU (killing it only after ``reap_timeout``)."""
        if self.sock.fileno() != -1:
            self.sock.close()
        if self._proc.returncode is None:
            try:
                self.wait(self.reap_timeout)
            except subprocess.TimeoutExpired:
                self._proc.kill()  # our own child, by its pid
                self._proc.wait()
        self.returncode = self._proc.returncode
        self._close_pidfd()
        self._close_stderr()

    def _close_stderr(self) -> None:
        # Keep what stderr_errors needs, not the memfd: a closed SwrkProcess
        # may live on in a traceback and must hold no fd.
        if not self._stderr.closed:
            self._stderr.seek(0)
            self._stderr_head = self._stderr.read(_STDERR_KEPT)
            self._stderr.close()

    def stderr_errors(self, limit: int = 3) -> list[str]:
        """Up to ``limit`` error lines CRIU wrote to its stderr (harmless ones skipped)."""
        if not self._stderr.closed:
            self._stderr.seek(0)
            self._stderr_head = self._stderr.read(_STDERR_KEPT)
        lines = self._stderr_head.decode("utf-8", "replace").splitlines()
        errors = [ln.strip() for ln in lines
                  if ("Error" in ln or "error" in ln) and not is_harmless(ln)]
        return errors[:limit]

    def __enter__(self) -> SwrkProcess:
        return self


class ServiceConnection(Connection):
    """A connection to a running ``criu service --address PATH``.

    CRIU's service cannot receive fds from us: images and work dirs must be
    given by path, and inherit_fd / page-server fds / rst_sibling are refused
    (CRIU: "not allowed in standalone service").  Raises ConnectionError /
    FileNotFoundError when nothing listens at ``address``.
    """

    def __init__(self, address: str) -> None:
        self.address = address
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self.sock.connect(address)
        except OSError as exc:
            self.sock.close()
            raise type(exc)(exc.errno, f"cannot connect to criu service: {exc.strerror}", address) from exc

    def __enter__(self) -> ServiceConnection:
        return self
