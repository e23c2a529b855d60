"""Ending a CRIU process together with everything it started.

CRIU restores a tree by forking it: until CRIU answers, the tasks being
restored are CRIU's descendants (with ``rst_sibling`` the root is forked
with CLONE_PARENT and so is the *caller's* child; the client names those
roots itself).  A CRIU killed alone would leave them behind, half restored
and holding CRIU's fds, so :func:`kill_tree` first finds every descendant
through the ``ppid`` fields of ``/proc/*/stat`` (collected before anything
is killed: once CRIU is dead its children are re-parented and the link is
lost), stops them so that none can fork again, then SIGKILLs all of them.
Signals go through pidfds, never a bare pid that may have been reused.

The tree being *dumped* is never a descendant of CRIU (CRIU only ptraces
it), so killing a dumping CRIU this way leaves that tree alone.
"""

from __future__ import annotations

import os
import select
import signal
import time
from collections.abc import Container, Iterable, Mapping
from dataclasses import dataclass

__all__ = ["ProcStat", "parse_stat", "process_table", "descendants", "children_of", "kill_tree"]

# A tree we keep stopping while it forks: a handful of rounds settles it
# (a stopped task cannot fork; only ones not yet seen still can).
_MAX_ROUNDS = 8
#: How long kill_tree waits for SIGKILLed tasks to end (D state can delay it).
KILL_WAIT = 10.0


@dataclass(frozen=True, slots=True, kw_only=True)
class ProcStat:
    """The fields of ``/proc/PID/stat`` this module needs."""

    pid: int
    state: str
    ppid: int


def parse_stat(text: str) -> ProcStat:
    """Parse one ``/proc/PID/stat`` line (the command may hold spaces and ')').

    Raises ValueError on a line that is not one.
    """
    head, sep, rest = text.rpartition(")")
    fields = rest.split()
    if not sep or len(fields) < 2 or "(" not in head:
        raise ValueError(f"not a /proc/PID/stat line: {text[:80]!r}")
    return ProcStat(pid=int(head.split("(", 1)[0]), state=fields[0], ppid=int(fields[1]))


def process_table() -> dict[int, ProcStat]:
    """Every process of this pid namespace, by pid (ones that vanish while read are skipped)."""
    table: dict[int, ProcStat] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="utf-8", errors="replace") as f:
                st = parse_stat(f.read())
        except (OSError, ValueError):
            continue
        table[st.pid] = st
    return table


def children_of(pid: int, table: Mapping[int, ProcStat]) -> set[int]:
    """Direct children of ``pid`` in ``table``."""
    return {p for p, st in table.items() if st.ppid == pid}


def descendants(roots: Iterable[int], table: Mapping[int, ProcStat]) -> list[int]:
    """Every descendant of ``roots`` in ``table`` (roots excluded), parents before children."""
    kids: dict[int, list[int]] = {}
    for p, st in table.items():
        kids.setdefault(st.ppid, []).append(p)
    seen = set(roots)
    order: list[int] = []
    todo = list(roots)
    while todo:
        for child in sorted(kids.get(todo.pop(0), ())):
            if child not in seen:
                seen.add(child)
                order.append(child)
                todo.append(child)
    return order


def _pidfd_of(pid: int, parent_ok: set[int]) -> int | None:
    """A pidfd for ``pid`` if it is still the child of one of ``parent_ok``."""
    try:
        fd = os.pidfd_open(pid)
    except OSError:  # gone (ESRCH)
        return None
    # The pid was read from /proc before the pidfd was opened: check that it
    # still names the same task (a child of a process we are ending).
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as f:
            ok = parse_stat(f.read()).ppid in parent_ok
    except (OSError, ValueError):
        ok = False
    if not ok:
        os.close(fd)
        return None
    return fd


def _signal(pidfd: int, sig: int) -> None:
    try:
        signal.pidfd_send_signal(pidfd, sig)
    except ProcessLookupError:  # already exited
        pass


def kill_tree(roots: Mapping[int, int], extra_roots: Iterable[int] = (), *,
              no_reap: Container[int] = (), wait: float = KILL_WAIT) -> list[int]:
    """SIGKILL ``roots`` (pid -> pidfd, e.g. CRIU), ``extra_roots`` (pids)
    and all their descendants; return every pid killed, roots included.

    ``extra_roots`` are tasks the caller knows CRIU started elsewhere (the
    ``rst_sibling`` root, a child of the caller).  Waits up to ``wait``
    seconds for every task to end, then reaps those that are the caller's
    own children, except the pids in ``no_reap`` (a ``Popen`` reaps its
    own).  The caller keeps ownership of the ``roots`` pidfds.  Never
    raises for a task that is already gone.
    """
    for fd in roots.values():  # first: a stopped CRIU forks no more
        _signal(fd, signal.SIGSTOP)
    members: dict[int, int] = {}  # pid -> pidfd opened here
    try:
        for pid in extra_roots:
            if pid not in roots and pid not in members:
                try:
                    fd = os.pidfd_open(pid)
                except OSError:
                    continue
                members[pid] = fd
                _signal(fd, signal.SIGSTOP)
        for _ in range(_MAX_ROUNDS):
            known = {*roots, *members}
            found = [p for p in descendants(known, process_table()) if p not in known]
            if not found:
                break
            for pid in found:
                fd = _pidfd_of(pid, known)
                if fd is not None:
                    members[pid] = fd
                    _signal(fd, signal.SIGSTOP)
        every = {**roots, **members}
        for fd in every.values():
            _signal(fd, signal.SIGKILL)
        _wait_all(list(every.values()), wait)
        for pid, fd in every.items():
            if pid not in no_reap:
                _reap_if_ours(fd)
        return sorted(every)
    finally:
        for fd in members.values():
            os.close(fd)


def _wait_all(pidfds: list[int], wait: float) -> None:
    poller = select.poll()
    for fd in pidfds:
        poller.register(fd, select.POLLIN)
    left = set(pidfds)
    end = time.monotonic() + wait
    while left:
        events = poller.poll(max(0, int((end - time.monotonic()) * 1000)))
        if not events:
            return  # still dying after `wait`: leave it rather than block the caller forever
        for fd, _ in events:
            poller.unregister(fd)
            left.discard(fd)


def _reap_if_ours(pidfd: int) -> None:
    try:
        os.waitid(os.P_PIDFD, pidfd, os.WEXITED | os.WNOHANG)
    except ChildProcessError:  # not our child: its own parent (or init) reaps it
        pass
