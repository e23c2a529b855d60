"""``criu-cr diff A B``: what changed between two checkpoints of one container. Pure.

Processes are matched by pid (a container's pids are its own namespace's and
a restore keeps them), file descriptors by number, sockets by descriptor
(the same inode: the same socket, whose state may have changed), mappings
by start address and else by end (a stack grows down), mounts by mountpoint.
The result is a flat list of :class:`Change` s in a stable order: the text
view groups them by process, the JSON view lists them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from runtime.inspect.model import Fd, Process, Report, Socket, Vma
from runtime.inspect.render import Node, draw, human_bytes

__all__ = ["Change", "Diff", "diff_reports", "render_diff", "diff_document"]


@dataclass(frozen=True, kw_only=True)
class Change:
    """``section``: process, fd, socket, memory, vma, mount; ``change``: added, removed, changed;
    ``key`` names the thing within its process (fd number, mapping start...); ``delta``: bytes
    (memory and mappings), else 0."""

    section: str
    change: str
    pid: int | None
    key: str
    before: str = ""
    after: str = ""
    delta: int = 0


@dataclass(frozen=True, kw_only=True)
class Diff:
    a: str
    b: str
    changes: tuple[Change, ...]
    same_container: bool = True


def _proc_label(p: Process) -> str:
    return " ".join(p.cmdline) if p.cmdline else p.comm


def _fd_label(f: Fd) -> str:
    return f"{f.kind} {f.target}"


def _sock_label(s: Socket) -> str:
    ends = f"{s.local} -> {s.remote}" if s.remote else s.local
    return f"{s.proto} {s.state} {ends}".strip()


def _vma_label(v: Vma) -> str:
    return f"{v.start:#x}-{v.end:#x} {v.prot} {v.backing}".rstrip()


def _fds(pid: int, a: tuple[Fd, ...], b: tuple[Fd, ...]) -> Iterable[Change]:
    before, after = {f.fd: f for f in a}, {f.fd: f for f in b}
    for fd in sorted(before.keys() | after.keys()):
        x, y = before.get(fd), after.get(fd)
        if x is None and y is not None:
            yield Change(section="fd", change="added", pid=pid, key=str(fd), after=_fd_label(y))
        elif y is None and x is not None:
            yield Change(section="fd", change="removed", pid=pid, key=str(fd), before=_fd_label(x))
        elif x is not None and y is not None and (x.kind, x.target) != (y.kind, y.target):
            yield Change(section="fd", change="changed", pid=pid, key=str(fd), before=_fd_label(x), after=_fd_label(y))


def _sockets(pid: int, a: tuple[Socket, ...], b: tuple[Socket, ...]) -> Iterable[Change]:
    before, after = {s.fd: s for s in a}, {s.fd: s for s in b}
    for fd in sorted(before.keys() | after.keys()):
        x, y = before.get(fd), after.get(fd)
        if x is not None and y is not None and x.inode == y.inode:
            if (x.state, x.local, x.remote) != (y.state, y.local, y.remote):
                yield Change(section="socket", change="changed", pid=pid, key=str(fd), before=_sock_label(x),
                             after=_sock_label(y))
            continue
        if x is not None:
            yield Change(section="socket", change="removed", pid=pid, key=str(fd), before=_sock_label(x))
        if y is not None:
            yield Change(section="socket", change="added", pid=pid, key=str(fd), after=_sock_label(y))


def _match_vmas(a: tuple[Vma, ...], b: tuple[Vma, ...]) -> tuple[list[tuple[Vma, Vma]], list[Vma], list[Vma]]:
    by_start = {v.start: v for v in a}
    pairs, added = [], []
    left = dict(by_start)
    for v in b:
        if v.start in left:
            pairs.append((left.pop(v.start), v))
        else:
            added.append(v)
    by_end = {v.end: v for v in left.values()}
    still = []
    for v in added:
        if v.end in by_end:
            old = by_end.pop(v.end)
            left.pop(old.start, None)
            pairs.append((old, v))
        else:
            still.append(v)
    return pairs, still, sorted(left.values(), key=lambda v: v.start)


def _memory(pid: int, a: Process, b: Process) -> Iterable[Change]:
    if a.memory is None or b.memory is None:
        return
    ma, mb = a.memory, b.memory
    if (ma.size, ma.dumped) != (mb.size, mb.dumped):
        yield Change(section="memory", change="changed", pid=pid, key="total",
                     before=f"{human_bytes(ma.size)} mapped, {human_bytes(ma.dumped)} dumped",
                     after=f"{human_bytes(mb.size)} mapped, {human_bytes(mb.dumped)} dumped",
                     delta=mb.dumped - ma.dumped)
    pairs, added, removed = _match_vmas(ma.vmas, mb.vmas)
    changes = []
    for x, y in pairs:
        if (x.size, x.dumped, x.prot, x.backing) != (y.size, y.dumped, y.prot, y.backing):
            what = "grew" if y.size > x.size else "shrank" if y.size < x.size else "changed"
            changes.append(Change(section="vma", change="changed", pid=pid, key=f"{y.start:#x}",
                                  before=f"{_vma_label(x)} {human_bytes(x.size)} ({human_bytes(x.dumped)} dumped)",
                                  after=f"{what}: {_vma_label(y)} {human_bytes(y.size)} ({human_bytes(y.dumped)} dumped)",
                                  delta=y.size - x.size))
    for v in added:
        changes.append(Change(section="vma", change="added", pid=pid, key=f"{v.start:#x}",
                              after=f"{_vma_label(v)} {human_bytes(v.size)}", delta=v.size))
    for v in removed:
        changes.append(Change(section="vma", change="removed", pid=pid, key=f"{v.start:#x}",
                              before=f"{_vma_label(v)} {human_bytes(v.size)}", delta=-v.size))
    yield from sorted(changes, key=lambda c: int(c.key, 16))


def diff_reports(a: Report, b: Report) -> Diff:
    """What changed from checkpoint ``a`` to checkpoint ``b`` (both read with every section)."""
    changes: list[Change] = []
    pa, pb = {p.pid: p for p in a.processes}, {p.pid: p for p in b.processes}
    for pid in sorted(pa.keys() | pb.keys()):
        x, y = pa.get(pid), pb.get(pid)
        if x is None and y is not None:
            changes.append(Change(section="process", change="added", pid=pid, key=str(pid),
                                  after=f"{_proc_label(y)} (parent {y.ppid})"))
            continue
        if y is None and x is not None:
            changes.append(Change(section="process", change="removed", pid=pid, key=str(pid), before=_proc_label(x)))
            continue
        assert x is not None and y is not None
        if _proc_label(x) != _proc_label(y) or x.ppid != y.ppid:
            changes.append(Change(section="process", change="changed", pid=pid, key=str(pid),
                                  before=f"{_proc_label(x)} (parent {x.ppid})", after=f"{_proc_label(y)} (parent {y.ppid})"))
        changes.extend(_fds(pid, x.fds or (), y.fds or ()))
        changes.extend(_sockets(pid, x.sockets or (), y.sockets or ()))
        changes.extend(_memory(pid, x, y))
    ma = {m.mountpoint: m for m in a.mounts or ()}
    mb = {m.mountpoint: m for m in b.mounts or ()}
    for mp in sorted(ma.keys() ^ mb.keys()):
        m = ma.get(mp) or mb[mp]
        label = f"{m.fstype} from {m.source}"
        changes.append(Change(section="mount", change="removed" if mp in ma else "added", pid=None, key=mp,
                              before=label if mp in ma else "", after="" if mp in ma else label))
    ida, idb = a.overview.container_id, b.overview.container_id
    return Diff(a=a.overview.source, b=b.overview.source, changes=tuple(changes),
                same_container=not (ida and idb and ida != idb))


_SIGN = {"added": "+", "removed": "-", "changed": "~"}


def _line(c: Change) -> str:
    what = {"fd": f"fd {c.key}", "socket": f"socket on fd {c.key}", "vma": f"mapping {c.key}",
            "memory": "memory", "process": "process", "mount": f"mount {c.key}"}[c.section]
    if c.change == "changed":
        return f"~ {what}: {c.before} => {c.after}"
    return f"{_SIGN[c.change]} {what}: {c.after or c.before}"


def render_diff(d: Diff) -> str:
    root = Node(f"Changes from {d.a} to {d.b}" + ("" if d.same_container else " (different containers!)"))
    if not d.changes:
        root.add("no changes")
    procs: dict[int, Node] = {}
    for c in d.changes:
        if c.pid is None:
            root.add(_line(c))
            continue
        if c.section == "process":
            procs[c.pid] = root.add(f"{_line(c)} [{c.pid}]")
            continue
        if c.pid not in procs:
            procs[c.pid] = root.add(f"[{c.pid}]")
        procs[c.pid].add(_line(c))
    return draw(root)


def diff_document(d: Diff) -> dict[str, Any]:
    from runtime.inspect.jsondoc import SCHEMA_VERSION

    return {"schema_version": SCHEMA_VERSION, "a": d.a, "b": d.b, "same_container": d.same_container,
            "changes": [{"section": c.section, "change": c.change, "pid": c.pid, "key": c.key, "before": c.before,
                         "after": c.after, "delta": c.delta} for c in d.changes]}
