"""Notify callbacks: CRIU's action-script hooks, answered from Python.

When a request's options set ``notify_scripts`` (the client does so whenever
a handler is given), CRIU stops at each hook, sends a NOTIFY naming it and
waits for the answer.  Subclass :class:`NotifyHandler` and override the
hooks you care about; every hook does nothing by default.

* A hook that returns acknowledges: CRIU goes on.
* A hook that raises makes the client answer ``notify_success=false`` and
  the caller gets :class:`~criu_rpc.errors.NotifyAbortedError` whose
  ``__cause__`` is the hook's exception. CRIU aborts the request at every
  hook up to ``post-restore`` (a dump leaves the tree running, unfrozen; a
  restore kills what it restored) -- but not at ``pre-resume`` and
  ``post-resume``: there CRIU 4.2 only logs the failure and lets the tree
  run (cr-restore.c), so a hook that must stop a restored tree from running
  has to raise at ``post-restore`` at the latest.
* ``orphan_pts_master`` receives the pts master fd CRIU sends
  (``ctx.fd``); call ``ctx.take_fd()`` to keep it, otherwise the client
  closes it when the hook returns.
* ``query_ext_files`` may return external keys (``"file[...]..."`` etc.)
  that CRIU adds as if given with ``--external``.
* A script name this module does not know (a newer CRIU) goes to
  :meth:`NotifyHandler.unknown_script`, which logs and acknowledges: a hook
  nobody asked for must not make a checkpoint fail.  Override it to be
  stricter.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["NOTIFY_SCRIPTS", "NotifyContext", "NotifyHandler", "NotifyAck", "dispatch"]

log = logging.getLogger("criu_cr.rpc.notify")  # under criu_cr: the CLI shows one tree of loggers

#: CRIU's hook names (action-scripts.c) -> the NotifyHandler method for each.
NOTIFY_SCRIPTS: dict[str, str] = {
    "pre-dump": "pre_dump",
    "post-dump": "post_dump",
    "pre-restore": "pre_restore",
    "post-restore": "post_restore",
    "network-lock": "network_lock",
    "network-unlock": "network_unlock",
    "setup-namespaces": "setup_namespaces",
    "post-setup-namespaces": "post_setup_namespaces",
    "pre-resume": "pre_resume",
    "post-resume": "post_resume",
    "orphan-pts-master": "orphan_pts_master",
    "status-ready": "status_ready",
    "query-ext-files": "query_ext_files",
    "pre-stream": "pre_stream",
}


class NotifyContext:
    """What a hook gets: the ``script`` name, the ``request`` it belongs to
    (e.g. ``"DUMP"``), CRIU's ``pid`` for the restored root task when CRIU
    sends it (setup-namespaces, post-restore), the received ``fd`` if any,
    and ``criu_pid``: the pid of the CRIU process serving the request (None
    over a ``criu service`` connection).
    """

    __slots__ = ("script", "request", "pid", "criu_pid", "_fd")

    def __init__(self, *, script: str, request: str, pid: int | None = None,
                 fd: int | None = None, criu_pid: int | None = None) -> None:
        self.script = script
        self.request = request
        self.pid = pid
        self.criu_pid = criu_pid
        self._fd = fd

    @property
    def fd(self) -> int | None:
        """The fd CRIU sent with this notify; valid during the hook only,
        unless taken with :meth:`take_fd`."""
        return self._fd

    def take_fd(self) -> int:
        """Take ownership of the received fd (the caller must close it).

        Raises LookupError when there is no fd (or it was already taken).
        """
        if self._fd is None:
            raise LookupError(f"notify {self.script!r} carries no fd (or it was taken)")
        fd, self._fd = self._fd, None
        return fd

    def close(self) -> None:
        """Close the received fd unless a hook took it."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)

    def __repr__(self) -> str:
        return (f"NotifyContext(script={self.script!r}, request={self.request!r}, pid={self.pid!r}, "
                f"fd={self._fd!r}, criu_pid={self.criu_pid!r})")


class NotifyHandler:
    """Override the hooks you need; each default does nothing (acknowledges)."""

    def pre_dump(self, ctx: NotifyContext) -> None:
        """Before CRIU seizes the tree on dump / pre-dump."""

    def post_dump(self, ctx: NotifyContext) -> None:
        """After the tree is dumped, before it is killed or resumed."""

    def pre_restore(self, ctx: NotifyContext) -> None:
        """Before CRIU starts restoring."""

    def post_restore(self, ctx: NotifyContext) -> None:
        """Tree restored, still stopped; ``ctx.pid`` is its root."""

    def network_lock(self, ctx: NotifyContext) -> None:
        """CRIU is about to lock the tree's network."""

    def network_unlock(self, ctx: NotifyContext) -> None:
        """CRIU is about to unlock the tree's network."""

    def setup_namespaces(self, ctx: NotifyContext) -> None:
        """Namespaces created on restore (e.g. move veths in); ``ctx.pid`` is the root task."""

    def post_setup_namespaces(self, ctx: NotifyContext) -> None:
        """Namespaces set up on restore."""

    def pre_resume(self, ctx: NotifyContext) -> None:
        """Just before the restored tree resumes (raising here does not stop it: CRIU resumes anyway)."""

    def post_resume(self, ctx: NotifyContext) -> None:
        """The restored tree runs."""

    def orphan_pts_master(self, ctx: NotifyContext) -> None:
        """CRIU sends the master of an orphan pts in ``ctx.fd`` (take it to keep it)."""

    def status_ready(self, ctx: NotifyContext) -> None:
        """CRIU is ready (lazy-pages / page server)."""

    def query_ext_files(self, ctx: NotifyContext) -> Iterable[str] | None:
        """Return external keys CRIU should treat as ``--external`` (default: none)."""
        return None

    def pre_stream(self, ctx: NotifyContext) -> None:
        """Before CRIU connects to the image streamer."""

    def unknown_script(self, ctx: NotifyContext) -> None:
        """A hook this client does not know: log it and acknowledge."""
        log.warning("CRIU sent unknown notify %r during %s; acknowledged", ctx.script, ctx.request)


@dataclass(frozen=True, slots=True, kw_only=True)
class NotifyAck:
    """How to answer one notify: ``success``, ``externals`` for
    query-ext-files, and the hook's ``error`` when it raised."""

    success: bool
    externals: tuple[str, ...] = ()
    error: Exception | None = None


def dispatch(handler: NotifyHandler, ctx: NotifyContext) -> NotifyAck:
    """Run ``handler``'s hook for ``ctx.script`` and say how to answer CRIU.

    Never raises an Exception from the hook: it is returned in
    ``NotifyAck.error`` with ``success=False``.
    """
    method = getattr(handler, NOTIFY_SCRIPTS.get(ctx.script, "unknown_script"))
    try:
        result = method(ctx)
        externals = tuple(result) if ctx.script == "query-ext-files" and result else ()
        if any(not isinstance(e, str) for e in externals):
            raise TypeError("query_ext_files must return strings (external keys)")
    except Exception as exc:  # deliberately broad: any hook failure becomes a nack; the caller re-raises it chained
        log.debug("notify %r handler raised %r; telling CRIU to abort", ctx.script, exc)
        return NotifyAck(success=False, error=exc)
    return NotifyAck(success=True, externals=externals)
