"""Run a function inside another network namespace without moving the caller: :func:`in_netns`.

setns(2) changes the calling *thread*. A short-lived thread enters the
namespace alone, runs the function and ends there (a Python thread is never
reused), so the rest of the process stays where it was. Sockets made inside
keep their namespace after the thread is gone.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import TypeVar

from runtime.linux import syscalls as sc

__all__ = ["in_netns"]

T = TypeVar("T")


def in_netns(path: str, fn: Callable[[], T]) -> T:
    """``fn()`` run in the network namespace file ``path``; its result, or its exception re-raised.

    Raises OSError naming ``path`` (no such file, not a network namespace).
    """
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    outcome: list[tuple[bool, object]] = []

    def inside() -> None:  # this thread alone enters the netns, and ends there
        try:
            sc.setns(fd, sc.CLONE_NEWNET, path)
            outcome.append((True, fn()))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            outcome.append((False, exc))

    try:
        thread = threading.Thread(target=inside, name="criu-cr-setns", daemon=True)
        thread.start()
        thread.join()
    finally:
        os.close(fd)
    ok, value = outcome[0]
    if not ok:
        raise value  # type: ignore[misc]
    return value  # type: ignore[return-value]
