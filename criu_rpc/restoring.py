"""What a RESTORE request has started, so that a CRIU ending early takes it along.

Until CRIU answers a RESTORE, the tree it is building belongs to nobody
else: the caller gets no pid, no result.  If CRIU is killed or dies
before answering, CRIU 4.2.1 leaves that tree behind -- stuck for good
when CRIU dies between ``post-restore`` and ``network-unlock``, running
when it dies at ``pre-resume`` or later (measured, see
:mod:`criu_rpc.faults`).  So the client ends it: "a restore either runs
and is returned, or leaves nothing running".

Once CRIU is dead its children are re-parented and the tree cannot be found
through CRIU any more; it is found through

* the root CRIU announces in ``setup-namespaces`` / ``post-restore``
  notifies (a pidfd is opened at once, while CRIU still holds the task), and
* with ``rst_sibling``, the caller's children that appeared during the
  request (CRIU forks that root with CLONE_PARENT).

A tree whose root was never announced (no notify handler, no
``rst_sibling``) can only be ended while CRIU lives: by a deadline.
"""

from __future__ import annotations

import os

from .proctree import children_of, kill_tree, process_table

__all__ = ["RestoredTasks"]


class RestoredTasks:
    """The tasks one RESTORE request has forked so far (see the module doc)."""

    def __init__(self, *, rst_sibling: bool, criu_pid: int | None) -> None:
        self._criu_pid = criu_pid
        self._before = children_of(os.getpid(), process_table()) if rst_sibling else None
        self._announced: dict[int, int] = {}  # pid -> pidfd

    def announce(self, pid: int) -> None:
        """CRIU named ``pid`` as the restored root; hold a pidfd to it."""
        if pid > 0 and pid not in self._announced:
            try:
                self._announced[pid] = os.pidfd_open(pid)
            except OSError:  # already gone: nothing to end later
                pass

    def roots(self) -> list[int]:
        """Roots of what was restored so far: announced ones and our new children."""
        found = set(self._announced)
        if self._before is not None:
            found |= children_of(os.getpid(), process_table()) - self._before - {self._criu_pid}
        return sorted(found)

    def kill(self) -> tuple[int, ...]:
        """SIGKILL the restored tasks CRIU left (after CRIU ended); the pids killed."""
        extra = [p for p in self.roots() if p not in self._announced]
        if not self._announced and not extra:
            return ()
        return tuple(kill_tree(self._announced, extra))

    def close(self) -> None:
        while self._announced:
            os.close(self._announced.popitem()[1])
