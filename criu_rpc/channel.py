"""One request/response loop over a connection: the only place that does
I/O for a :class:`~criu_rpc.session.Session`.

:meth:`Channel.call` sends a request, answers every notify through the
handler, and returns CRIU's successful response or raises:

* :class:`~criu_rpc.errors.CriuRpcError` -- CRIU answered ``success=false``;
* :class:`~criu_rpc.errors.NotifyAbortedError` -- a hook raised (chained);
* :class:`~criu_rpc.errors.CriuDiedError` -- CRIU went away first;
* :class:`~criu_rpc.errors.CriuTimeoutError` -- no answer within ``timeout``
  seconds: CRIU (a swrk child) and every task it started were SIGKILLed and
  CRIU reaped; over a ``criu service`` connection only the connection is
  closed (the client cannot kill the service's worker);
* :class:`~criu_rpc.errors.CriuProtocolError` -- CRIU sent nonsense.

The deadline covers the whole call, notify hooks included; a hook itself is
never interrupted, the deadline is checked while waiting for CRIU.
"""

from __future__ import annotations

import logging
import os
import subprocess
import time
from typing import Any

from .errors import CriuDiedError, CriuRpcError, CriuTimeoutError, NotifyAbortedError
from .logs import first_errors, is_harmless
from .notify import NotifyContext, NotifyHandler, dispatch
from .restoring import RestoredTasks
from .session import Features, Notify, ReqType, Response, Session
from .trace import describe_message, log
from .transport import Connection

__all__ = ["Channel", "log_errors"]

_DEFAULT_HANDLER = NotifyHandler()


def log_errors(log_path: str | None) -> list[str]:
    """First real error lines of a CRIU log; [] when there is none to read."""
    if not log_path:
        return []
    try:
        return list(first_errors(log_path))
    except OSError:
        return []


def _real_errmsg(cr_errmsg: str) -> str:
    # CRIU's cr_errmsg is the first "Error" line of its log, which on our
    # machines is the harmless RLIMIT_NOFILE one; the log's real errors are
    # reported separately, so drop it rather than show it as the cause.
    return "" if is_harmless(cr_errmsg) else cr_errmsg.strip()


def _close_fds(fds: list[int]) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


class Channel:
    """A connection to CRIU, its session, and the notify handler for it."""

    def __init__(self, conn: Connection, notify: NotifyHandler | None = None) -> None:
        self.conn = conn
        self.session = Session()
        self.notify = notify
        self._restoring: RestoredTasks | None = None

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Channel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call(self, rtype: ReqType, opts: Any = None, *, keep_open: bool = False,
             features: Features | None = None, pid: int | None = None,
             log_path: str | None = None, timeout: float | None = None) -> Response:
        """Run one request to its response (see the module doc for what it raises).

        ``timeout``: seconds CRIU has to answer (None: no deadline).
        """
        if timeout is not None and timeout <= 0:
            raise ValueError(f"timeout must be positive, not {timeout}")
        deadline = None if timeout is None else time.monotonic() + timeout
        data = self.session.request(rtype, opts, keep_open=keep_open, features=features, pid=pid)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("CRIU %s request to CRIU pid %s: %s", rtype.name, self.conn.pid, describe_message(opts))
        started = time.monotonic()
        if rtype == ReqType.RESTORE:
            self._restoring = RestoredTasks(rst_sibling=bool(getattr(opts, "rst_sibling", False)),
                                            criu_pid=self.conn.pid)
        try:
            event, aborted = self._converse(data, rtype, log_path, timeout, deadline)
        finally:
            if self._restoring is not None:
                self._restoring.close()
                self._restoring = None
        log.debug("CRIU %s answered in %.3f s: success=%s cr_errno=%s", rtype.name, time.monotonic() - started,
                  event.success, event.cr_errno)
        if aborted is not None:
            script, error = aborted
            raise NotifyAbortedError(rtype.name, script) from error
        if not event.success:
            raise CriuRpcError(rtype.name, event.cr_errno, _real_errmsg(event.cr_errmsg), log_path,
                               log_errors(log_path))
        return event

    def _converse(self, data: bytes, rtype: ReqType, log_path: str | None, timeout: float | None,
                  deadline: float | None) -> tuple[Response, tuple[str, BaseException] | None]:
        self._send(data, rtype, log_path)
        aborted: tuple[str, BaseException] | None = None
        while True:
            try:
                event = self._receive(rtype, log_path, deadline)
            except TimeoutError:
                assert timeout is not None
                raise self._timed_out(rtype, timeout, log_path) from None
            if isinstance(event, Response):
                return event, aborted
            ack_ok = self._answer(event, rtype, log_path)
            if ack_ok is not None and aborted is None:
                aborted = ack_ok

    def _answer(self, event: Notify, rtype: ReqType, log_path: str | None) -> tuple[str, BaseException] | None:
        ctx = NotifyContext(script=event.script, request=rtype.name, pid=event.pid, fd=event.fd,
                            criu_pid=self.conn.pid)
        log.debug("CRIU %s notify %r (pid %s, fd %s)", rtype.name, event.script, event.pid, event.fd)
        if self._restoring is not None and event.pid:
            self._restoring.announce(event.pid)
        try:
            ack = dispatch(self.notify or _DEFAULT_HANDLER, ctx)
        finally:
            ctx.close()
        self._send(self.session.ack(ack.success, ack.externals), rtype, log_path)
        if not ack.success:
            assert ack.error is not None
            return event.script, ack.error
        return None

    def _send(self, data: bytes, rtype: ReqType, log_path: str | None) -> None:
        try:
            self.conn.send(data)
        except (BrokenPipeError, ConnectionError) as exc:
            raise self._died(rtype, log_path) from exc

    def _receive(self, rtype: ReqType, log_path: str | None, deadline: float | None) -> Response | Notify:
        try:
            msg = self.conn.recv(deadline)
        except ConnectionError as exc:
            raise self._died(rtype, log_path) from exc
        if msg is None:
            raise self._died(rtype, log_path)
        data, fds = msg
        if fds:
            log.debug("CRIU %s sent fds %s", rtype.name, fds)
        try:
            event = self.session.receive(data, fds)
        except BaseException:  # cleanup, then re-raise: whatever went wrong, no received fd leaks
            _close_fds(fds)
            raise
        kept = event.fd if isinstance(event, Notify) else None
        _close_fds([fd for fd in fds if fd != kept])
        return event

    def _died(self, rtype: ReqType, log_path: str | None) -> CriuDiedError:
        self.conn.close()  # closes our socket end, reaps a swrk child
        try:
            returncode = self.conn.wait(0)
        except subprocess.TimeoutExpired:
            returncode = None
        killed = self._restoring.kill() if self._restoring is not None else ()
        return CriuDiedError(rtype.name, returncode, log_path,
                             log_errors(log_path) or self.conn.stderr_errors(), killed=killed)

    def _timed_out(self, rtype: ReqType, timeout: float, log_path: str | None) -> CriuTimeoutError:
        extra = self._restoring.roots() if self._restoring is not None else []
        criu_killed, killed = self.conn.kill(extra)
        if self._restoring is not None:
            # Roots CRIU announced are ended even when CRIU cannot be (a
            # service's worker) or had just exited, its children re-parented.
            killed = tuple(sorted({*killed, *self._restoring.kill()}))
        return CriuTimeoutError(rtype.name, timeout, criu_pid=self.conn.pid, criu_killed=criu_killed,
                                killed=killed, log_path=log_path, log_errors=log_errors(log_path))
