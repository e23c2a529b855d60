"""A whole checkpoint as typed, lazily read objects.

``Checkpoint(src)`` reads nothing until asked; each image it reads is read
once and kept (metadata only: pages are read through ``memory(pid)`` and
only when its ``read``/``iter_present`` are called).  Image names are
CRIU 4.2's: ``pstree.img``, ``core-PID.img``, ``mm-PID.img``,
``pagemap-PID.img``, ``fdinfo-FILES_ID.img``, ``files.img``,
``mountpoints-MNT_NS_ID.img``, ``netdev-NET_NS_ID.img``, ``stats-dump``...
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import Message

from criu_rpc._pb import stats_pb2

from .errors import ImageError
from .image import iter_entries
from .memory import ProcessMemory, load_memory
from .netlink import Address, Route, parse_addresses, parse_routes
from .source import ImageSource

__all__ = ["Checkpoint", "Process", "Fd", "NetNs", "Stats", "TASK_ZOMBIE"]

#: ``task_core_entry.task_state`` of a zombie (CRIU's TASK_DEAD): it has no fds and no mm.
TASK_ZOMBIE = 3


@dataclass(frozen=True, slots=True, kw_only=True)
class Process:
    """One task of the process tree (a ``pstree_entry``)."""

    pid: int
    ppid: int
    pgid: int
    sid: int
    threads: tuple[int, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Fd:
    """An open file descriptor: its ``fdinfo_entry`` and the ``file_entry`` it names.

    ``file`` is ``None`` when files.img has no entry of that id (a damaged
    or partial checkpoint).  ``type`` is the fd_types name (REG, PIPE,
    INETSK, UNIXSK, TTY, EVENTFD, ...).
    """

    fd: int
    type: str
    flags: int
    id: int
    info: Message
    file: Message | None


@dataclass(frozen=True, slots=True, kw_only=True)
class NetNs:
    """A network namespace CRIU dumped: its devices and the raw iproute2 dumps.

    ``addresses``/``routes``/``routes6``/``rules`` are the bytes of
    ifaddr/route/route6/rule-ID.img (``ip ... save`` format: rtnetlink
    messages after a 4-byte magic), or ``None`` when absent.
    """

    id: int
    devices: tuple[Message, ...]
    netns: Message | None
    addresses: bytes | None
    routes: bytes | None
    routes6: bytes | None
    rules: bytes | None

    def parsed_addresses(self) -> tuple[Address, ...]:
        """``addresses`` decoded (empty when absent); raises ``ImageError`` when damaged."""
        return parse_addresses(self.addresses, f"ifaddr-{self.id}.img") if self.addresses else ()

    def parsed_routes(self) -> tuple[Route, ...]:
        """``routes`` then ``routes6`` decoded; raises ``ImageError`` when damaged."""
        return tuple(r for data, name in ((self.routes, "route"), (self.routes6, "route6")) if data
                     for r in parse_routes(data, f"{name}-{self.id}.img"))


@dataclass(frozen=True, slots=True, kw_only=True)
class Stats:
    """CRIU's own statistics: ``dump_stats_entry`` and ``restore_stats_entry`` (or ``None``)."""

    dump: Message | None
    restore: Message | None


def _first(src: ImageSource, name: str) -> Message:
    """The first entry's message (the file is closed at once, not when collected)."""
    entries = iter_entries(src, name)
    try:
        for entry in entries:
            return entry.msg
    finally:
        entries.close()
    raise ImageError(name, "image has no entry")


class Checkpoint:
    """A lazy, read-only view of the checkpoint in ``src`` (an ``ImageSource``).

    Every accessor raises ``MissingImage`` when the image it needs is not in
    the source, and the other ``ImageError``s when one is damaged.
    """

    def __init__(self, src: ImageSource) -> None:
        self.src = src
        self._cache: dict[Any, Any] = {}

    def __repr__(self) -> str:
        return f"Checkpoint({self.src!r})"

    def _cached(self, key: Any, make: Any) -> Any:
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    def entries(self, name: str) -> tuple[Message, ...]:
        """The messages of image ``name`` (read once, kept)."""
        return self._cached(("entries", name), lambda: tuple(e.msg for e in iter_entries(self.src, name)))

    @property
    def inventory(self) -> Message:
        """The ``inventory_entry``."""
        return self._cached("inventory", lambda: _first(self.src, "inventory.img"))

    @property
    def processes(self) -> tuple[Process, ...]:
        """Every task of pstree.img, in CRIU's order (the root first)."""
        return self._cached("processes", lambda: tuple(
            Process(pid=p.pid, ppid=p.ppid, pgid=p.pgid, sid=p.sid, threads=tuple(p.threads))
            for p in self.entries("pstree.img")))

    def core(self, pid: int) -> Message:
        """The ``core_entry`` of task (or thread) ``pid``."""
        return self._cached(("core", pid), lambda: _first(self.src, f"core-{pid}.img"))

    def ids(self, pid: int) -> Message:
        """The ``task_kobj_ids_entry`` of ``pid`` (from its core, or ids-PID.img of older CRIU)."""
        core = self.core(pid)
        if core.HasField("ids"):
            return core.ids
        return self._cached(("ids", pid), lambda: _first(self.src, f"ids-{pid}.img"))

    def mm(self, pid: int) -> Message:
        """The ``mm_entry`` of ``pid`` (its VMAs are ``.vmas``)."""
        return self._cached(("mm", pid), lambda: _first(self.src, f"mm-{pid}.img"))

    def files(self) -> dict[int, Message]:
        """files.img's ``file_entry`` messages by id."""
        return self._cached("files", lambda: {f.id: f for f in self.entries("files.img")})

    def fds(self, pid: int) -> tuple[Fd, ...]:
        """The open fds of ``pid``, in fd order, each joined with its file (none for a zombie)."""
        def make() -> tuple[Fd, ...]:
            core = self.core(pid)
            if core.HasField("tc") and core.tc.task_state == TASK_ZOMBIE:
                return ()
            files = self.files()
            infos = self.entries(f"fdinfo-{self.ids(pid).files_id}.img")
            return tuple(sorted((Fd(fd=i.fd, type=i.DESCRIPTOR.fields_by_name["type"].enum_type
                                    .values_by_number[i.type].name,
                                    flags=i.flags, id=i.id, info=i, file=files.get(i.id)) for i in infos),
                                key=lambda f: f.fd))
        return self._cached(("fds", pid), make)

    def memory(self, pid: int) -> ProcessMemory:
        """The memory of ``pid``: VMAs and pagemap read, pages untouched until asked."""
        return self._cached(("memory", pid), lambda: load_memory(self.src, pid, tuple(self.mm(pid).vmas),
                                                                self.memfd_shmid))

    def memfd_shmid(self, file_id: int) -> int | None:
        """The shared memory object (pagemap-shmem-SHMID.img) of memfd file ``file_id``, if known."""
        f = self.files().get(file_id)
        if f is None or not f.HasField("memfd") or not self.src.exists("memfd.img"):
            return None
        inodes = self._cached("memfd", lambda: {m.inode_id: m.shmid for m in self.entries("memfd.img")})
        return inodes.get(f.memfd.inode_id)

    def mounts(self) -> tuple[Message, ...]:
        """The ``mnt_entry`` messages of the root task's mount namespace (all namespaces if unknown)."""
        def make() -> tuple[Message, ...]:
            root = self.inventory.root_ids if self.inventory.HasField("root_ids") else None
            if root is not None and root.HasField("mnt_ns_id"):
                name = f"mountpoints-{root.mnt_ns_id}.img"
                if self.src.exists(name):
                    return self.entries(name)
            return tuple(m for n in self.src.names() if re.fullmatch(r"mountpoints-\d+\.img", n)
                         for m in self.entries(n))
        return self._cached("mounts", make)

    def netns(self) -> tuple[NetNs, ...]:
        """Every network namespace CRIU dumped (none when the netns was external)."""
        def raw(name: str) -> bytes | None:
            if not self.src.exists(name):
                return None
            with self.src.open(name) as f:
                return f.read()

        def make() -> tuple[NetNs, ...]:
            out = []
            for n in self.src.names():
                m = re.fullmatch(r"netdev-(\d+)\.img", n)
                if not m:
                    continue
                nsid = int(m.group(1))
                ns_name = f"netns-{nsid}.img"
                out.append(NetNs(id=nsid, devices=self.entries(n),
                                 netns=_first(self.src, ns_name) if self.src.exists(ns_name) else None,
                                 addresses=raw(f"ifaddr-{nsid}.img"), routes=raw(f"route-{nsid}.img"),
                                 routes6=raw(f"route6-{nsid}.img"), rules=raw(f"rule-{nsid}.img")))
            return tuple(out)
        return self._cached("netns", make)

    def stats(self) -> Stats:
        """stats-dump and stats-restore, each ``None`` when absent."""
        def one(name: str, field: str) -> Message | None:
            if not self.src.exists(name):
                return None
            entry: stats_pb2.stats_entry = _first(self.src, name)
            return getattr(entry, field) if entry.HasField(field) else None
        return self._cached("stats", lambda: Stats(dump=one("stats-dump", "dump"),
                                                   restore=one("stats-restore", "restore")))
