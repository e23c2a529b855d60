"""runtime.linux.signals: a fork of the CLI (a library's helper child) dies of SIGTERM, never runs our code."""

from __future__ import annotations

import os
import signal
import time

from runtime.linux import signals


def _fork_and_term() -> int:
    """Fork a child that waits; SIGTERM it; its wait status."""
    pid = os.fork()
    if pid == 0:  # the child: anything but dying of the signal exits 3
        try:
            time.sleep(5)
        except BaseException:  # noqa: BLE001 - the parent's Interrupted would land here
            os._exit(3)
        os._exit(4)
    time.sleep(0.05)
    os.kill(pid, signal.SIGTERM)
    return os.waitpid(pid, 0)[1]


def test_a_forked_child_of_the_cli_dies_of_sigterm():
    previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        signals.install_cli_handlers()
        status = _fork_and_term()
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGTERM


def test_a_forked_child_inside_deferred_dies_of_sigterm():
    with signals.deferred("the test") as received:
        status = _fork_and_term()
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGTERM
    assert received == []  # the parent itself got nothing
