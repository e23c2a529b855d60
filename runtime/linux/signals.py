"""Signals during an operation that must not be cut in half.

Once CRIU has been asked to dump or restore, stopping criu-cr half-way
loses data: CRIU goes on without us and kills the dumped tree, or a
restored tree runs on unrecorded. :func:`deferred` holds SIGINT, SIGTERM
and SIGHUP for the time of such a section (every wait in it has a
deadline) and delivers them once it is over, so the operation either
completes and is recorded, or is rolled back -- and the user is told which.

:func:`install_cli_handlers` makes SIGTERM and SIGHUP raise
:class:`Interrupted` in the CLI, so ``finally`` blocks run and the CLI can
say what state the container was left in (SIGINT already raises
KeyboardInterrupt). A SIGKILL cannot be deferred: the next command on the
container settles what it left (:mod:`runtime.cr.pending`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from collections.abc import Iterator
from types import FrameType

__all__ = ["DEFERRED_SIGNALS", "Interrupted", "deferred", "install_cli_handlers"]

_log = logging.getLogger("criu_cr.signals")

DEFERRED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Interrupted(BaseException):
    """SIGTERM or SIGHUP reached the CLI (a BaseException, like KeyboardInterrupt)."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(f"interrupted by {signal.Signals(signum).name}")

    @property
    def exit_status(self) -> int:
        return 128 + self.signum


def _forked_child(signum: int, owner: int) -> bool:
    """In a fork of the process that installed a handler (a library's helper child, e.g. pyroute2's netns
    creation, which its parent ends with SIGTERM): take the default action, never the parent's code."""
    if os.getpid() == owner:
        return False
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)
    return True


def install_cli_handlers() -> None:
    """SIGTERM/SIGHUP raise :class:`Interrupted` (main thread only; a forked child just dies)."""
    owner = os.getpid()

    def interrupted(signum: int, _frame: FrameType | None) -> None:
        if not _forked_child(signum, owner):
            raise Interrupted(signum)

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, interrupted)


@contextlib.contextmanager
def deferred(what: str) -> Iterator[list[int]]:
    """Hold SIGINT/SIGTERM/SIGHUP while the block runs; deliver them after it.

    Yields the list of signals received so far. On the first one a warning
    (logger ``criu_cr.signals``) says that ``what`` is being finished first. Outside the main
    thread (where Python cannot install handlers) this does nothing: a
    library caller in a thread owns its signals.
    """
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    owner = os.getpid()

    def hold(signum: int, _frame: FrameType | None) -> None:
        if _forked_child(signum, owner):
            return
        if not received:  # logging's locks are re-entrant: safe from a handler in the main thread
            _log.warning("%s received: finishing %s first (stopping now would lose the container)",
                         signal.Signals(signum).name, what)
        received.append(signum)

    previous = {sig: signal.signal(sig, hold) for sig in DEFERRED_SIGNALS}
    try:
        yield received
    except BaseException:
        _restore(previous)
        raise  # the block's own error says more than the signal would
    _restore(previous)
    if received:
        # Delivered to ourselves, now under the previous handlers: a KeyboardInterrupt
        # or Interrupted raised from here, or the default action.
        os.kill(os.getpid(), received[0])


def _restore(previous: dict[signal.Signals, object]) -> None:
    for sig, handler in previous.items():
        signal.signal(sig, handler)  # type: ignore[arg-type]
