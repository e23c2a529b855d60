"""Fault injection at CRIU's notify points -- a testing aid.

Public so that fault suites (and the runtime's own tests) can stop CRIU at
an exact phase instead of after a sleep: CRIU waits for our answer at each
notify, so an action run from the hook happens at a known point of the
dump or restore, every time.

* :class:`FaultAt` runs any action at one named notify (``script``), then
  the wrapped handler's hook; an action that raises makes the client nack
  the notify, so CRIU aborts (as any raising hook).
* :class:`KillCriuAt` SIGKILLs CRIU there (and waits until it is dead, so
  CRIU never sees the answer).  The client then raises
  :class:`~criu_rpc.errors.CriuDiedError`.  A swrk child only: over a
  ``criu service`` connection ``ctx.criu_pid`` is unknown.
* ``FaultAt(script, lambda ctx: os.kill(os.getpid(), signal.SIGKILL))``
  kills the caller itself (run it in a subprocess).

Notifies CRIU 4.2.1 sends over RPC (``notify_scripts``), verified on this
kind of machine by tests/integration/test_rpc_faults.py:

* dump, plain tree (host namespaces):
  ``pre-dump``, ``query-ext-files``, ``post-dump``.
* dump, tree in an external netns, ``network_lock=nftables``,
  ``manage_cgroups`` (soft), ``freeze_cgroup``:
  ``pre-dump``, ``network-lock``, ``query-ext-files``, ``post-dump``.
  ``network-lock`` comes *before* CRIU adds its ``inet CRIU-<uuid>`` table;
  a successful dump leaves that table in the netns for the restore.
* restore, plain tree: ``pre-restore``, ``post-restore``, ``pre-resume``,
  ``post-resume`` (``post-restore`` carries the root's pid).
* restore into that netns (``inherit_fd`` of the netns, nftables,
  manage_cgroups, ``rst_sibling``): ``pre-restore``, ``setup-namespaces``
  (root pid), ``post-setup-namespaces``, ``post-restore`` (root pid),
  ``network-unlock``, ``pre-resume``, ``post-resume``.
  ``network-unlock`` also comes before the unlock itself.

What is left when CRIU is SIGKILLed at each of them (measured):

* dump, every point, even ``post-dump`` with complete images: the tree
  runs on, unfrozen (CRIU thaws ``freeze_cgroup`` right after seizing the
  tree; ptrace, not the freezer, holds it, and lets go when CRIU dies) and
  not traced: CRIU never reaches its kill of the tree.  The netns stays
  locked (CRIU's nft table) from ``query-ext-files`` on; at
  ``network-lock`` it is not locked yet.  Only a kill between freezing and
  seizing (no notify there) could leave the freezer FROZEN.
* restore at ``pre-restore``: nothing forked yet.  From
  ``setup-namespaces`` to ``network-unlock``: a half-restored tree that
  never runs (stuck for good); from ``pre-resume`` on: the tree runs.  The
  client kills that tree in both cases (:mod:`criu_rpc.restoring`), so a
  CriuDiedError from RESTORE means nothing restored is left; its ``killed``
  lists the pids.  The netns stays locked up to ``network-unlock``
  included (the dump's lock, never lifted).  With ``manage_cgroups``, every
  point leaves CRIU's ``.criu.cgyard.*`` mounts (one per host hierarchy)
  in the images dir: unmount them before touching that directory.
"""

from __future__ import annotations

import os
import select
import signal
from collections.abc import Callable, Iterable

from .errors import InvalidOptionError
from .notify import NOTIFY_SCRIPTS, NotifyContext, NotifyHandler

__all__ = ["FaultAt", "KillCriuAt", "kill_criu"]

Action = Callable[[NotifyContext], None]

#: Seconds kill_criu waits for CRIU to be dead.
KILL_WAIT = 10.0


def kill_criu(ctx: NotifyContext) -> None:
    """SIGKILL the CRIU serving this request and wait until it is dead.

    Raises LookupError when CRIU's pid is unknown (a ``criu service``
    connection), TimeoutError if it does not die within ``KILL_WAIT``.
    """
    if ctx.criu_pid is None:
        raise LookupError(f"CRIU's pid is unknown at {ctx.script!r} (a criu service connection?)")
    # CRIU is the client's unreaped swrk child: its pid cannot have been reused.
    pidfd = os.pidfd_open(ctx.criu_pid)
    try:
        signal.pidfd_send_signal(pidfd, signal.SIGKILL)
        if not select.select([pidfd], [], [], KILL_WAIT)[0]:
            raise TimeoutError(f"CRIU (pid {ctx.criu_pid}) still alive {KILL_WAIT} s after SIGKILL")
    finally:
        os.close(pidfd)


class FaultAt(NotifyHandler):
    """Run ``action(ctx)`` at the notify named ``script``, then ``inner``'s hook.

    ``request`` (e.g. ``"RESTORE"``) limits it to that request type;
    ``occurrence`` picks the n-th such notify (1 = the first).  The action
    runs once.  ``seen`` lists ``(request, script, pid)`` of every notify
    received, in order -- the point is known to have been reached when
    ``fired`` is True.  Raises InvalidOptionError for a script name CRIU
    does not send.
    """

    def __init__(self, script: str, action: Action, *, inner: NotifyHandler | None = None,
                 request: str | None = None, occurrence: int = 1) -> None:
        if script not in NOTIFY_SCRIPTS:
            raise InvalidOptionError("script", f"{script!r} is not a CRIU notify; one of: "
                                     + ", ".join(NOTIFY_SCRIPTS))
        if occurrence < 1:
            raise InvalidOptionError("occurrence", f"must be at least 1, not {occurrence}")
        self.script = script
        self.action = action
        self.inner = inner or NotifyHandler()
        self.request = request
        self.occurrence = occurrence
        self.seen: list[tuple[str, str, int | None]] = []
        self.fired = False
        self._count = 0

    def _at(self, ctx: NotifyContext) -> None:
        self.seen.append((ctx.request, ctx.script, ctx.pid))
        if self.fired or ctx.script != self.script or self.request not in (None, ctx.request):
            return
        self._count += 1
        if self._count == self.occurrence:
            self.fired = True
            self.action(ctx)


class KillCriuAt(FaultAt):
    """SIGKILL CRIU at the notify named ``script`` (see :class:`FaultAt`)."""

    def __init__(self, script: str, *, inner: NotifyHandler | None = None, request: str | None = None,
                 occurrence: int = 1) -> None:
        super().__init__(script, kill_criu, inner=inner, request=request, occurrence=occurrence)


def _hook(method: str) -> Callable[[FaultAt, NotifyContext], Iterable[str] | None]:
    def hook(self: FaultAt, ctx: NotifyContext) -> Iterable[str] | None:
        self._at(ctx)
        return getattr(self.inner, method)(ctx)

    hook.__name__ = method
    hook.__doc__ = f"Fault point, then the wrapped handler's ``{method}``."
    return hook


# Every hook of NotifyHandler goes through _at, so no notify can slip past.
for _method in (*NOTIFY_SCRIPTS.values(), "unknown_script"):
    setattr(FaultAt, _method, _hook(_method))
del _method
