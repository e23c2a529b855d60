"""A process's memory: its VMAs, its pagemap, and the pages behind them.

``pagemap-PID.img`` starts with a ``pagemap_head`` whose ``pages_id`` names
``pages-ID.img``; each following ``pagemap_entry`` covers ``nr_pages``
pages from ``vaddr``.  Entries flagged ``PE_PRESENT`` have their pages in
the pages file, back to back in pagemap order (so the file offset of an
entry is the sum of the present entries before it).  ``PE_PARENT`` pages
are in the parent checkpoint, ``PE_LAZY`` ones without ``PE_PRESENT`` stay
with the lazy-pages server.  Images older than the ``flags`` field say
``in_parent`` instead, and ``compat_nr_pages`` for ``nr_pages``.

Shared anonymous memory and memfds are dumped once per object, not per
process: their pages are in ``pagemap-shmem-SHMID.img``, whose entries are
indexed by offset in the object (``vma.pgoff`` plus the offset in the VMA).
SHMID is ``vma.shmid`` for a shared anonymous VMA; for a memfd VMA (which is
how Linux 6.x shows shared anonymous mappings too) ``vma.shmid`` is the
memfd's id in files.img, whose ``inode_id`` names a memfd.img entry holding
the SHMID.

What ``read`` returns where nothing was dumped: an address outside every
VMA raises ``UnmappedAddress``; a page of anonymous memory (private or
shared) that is not in its pagemap was never touched and reads as zeros;
any other missing content (file pages CRIU leaves to the file, SysV shared
memory, parent or lazy pages) raises ``NotDumped`` rather than inventing
bytes.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

from google.protobuf.message import Message

from .errors import BadPagemap, NotDumped, UnmappedAddress
from .image import Entry, iter_entries
from .source import ImageSource

__all__ = ["PAGE_SIZE", "PE_PARENT", "PE_LAZY", "PE_PRESENT", "PagemapRun", "ProcessMemory", "load_memory"]

#: x86_64's page size, CRIU's unit in pagemaps.
PAGE_SIZE = 4096
PE_PARENT = 1 << 0
PE_LAZY = 1 << 1
PE_PRESENT = 1 << 2
# VMA status bits (criu/include/image.h) that decide what a missing page means.
_VMA_ANON_SHARED = 1 << 8
_VMA_ANON_PRIVATE = 1 << 9
_VMA_SYSVIPC = 1 << 10
_VMA_AREA_MEMFD = 1 << 14
#: Bytes yielded at once by ``iter_present``.
CHUNK = 8 << 20


@dataclass(frozen=True, slots=True, kw_only=True)
class PagemapRun:
    """One pagemap entry: ``nr_pages`` pages from ``vaddr`` with ``flags``.

    ``offset`` is where its pages start in the pages file (``None`` unless
    ``PE_PRESENT``).
    """

    vaddr: int
    nr_pages: int
    flags: int
    offset: int | None

    @property
    def end(self) -> int:
        return self.vaddr + self.nr_pages * PAGE_SIZE

    @property
    def present(self) -> bool:
        return bool(self.flags & PE_PRESENT)


def _flags(entry: Message) -> int:
    if entry.HasField("flags"):
        return entry.flags
    return PE_PARENT if entry.in_parent else PE_PRESENT


@dataclass(frozen=True, slots=True, kw_only=True)
class _Pagemap:
    """One pagemap image (``name``) and the pages file it indexes."""

    name: str
    pages_name: str
    runs: tuple[PagemapRun, ...]
    starts: tuple[int, ...]

    def run_at(self, addr: int) -> tuple[PagemapRun | None, int]:
        """The run holding ``addr`` (or ``None``) and where the next run starts."""
        i = bisect.bisect_right(self.starts, addr) - 1
        if i >= 0 and addr < self.runs[i].end:
            return self.runs[i], self.runs[i].end
        return None, self.runs[i + 1].vaddr if i + 1 < len(self.runs) else 1 << 64


class ProcessMemory:
    """The memory of process ``pid`` in a checkpoint (built by ``load_memory``)."""

    __slots__ = ("src", "pid", "vmas", "_own", "_vma_starts", "_shmem", "_memfd_shmid")

    def __init__(self, *, src: ImageSource, pid: int, vmas: tuple[Message, ...], own: _Pagemap,
                 memfd_shmid: Callable[[int], int | None] | None = None) -> None:
        self.src = src
        self.pid = pid
        self.vmas = vmas
        self._own = own
        self._vma_starts = [vma.start for vma in vmas]
        self._shmem: dict[int, _Pagemap | None] = {}
        self._memfd_shmid = memfd_shmid

    def __repr__(self) -> str:
        return f"<ProcessMemory pid={self.pid} vmas={len(self.vmas)} runs={len(self.pagemap)}>"

    @property
    def pagemap(self) -> tuple[PagemapRun, ...]:
        """The process's own pagemap entries (shared anonymous memory has its own pagemaps)."""
        return self._own.runs

    @property
    def pages_name(self) -> str:
        """The pages file of the process's own pagemap."""
        return self._own.pages_name

    def dumped_bytes(self) -> int:
        """Bytes of this process's pages held in its pages file."""
        return sum(run.nr_pages for run in self.pagemap if run.present) * PAGE_SIZE

    def vma_at(self, addr: int) -> Message | None:
        """The VMA holding ``addr``, if any."""
        i = bisect.bisect_right(self._vma_starts, addr) - 1
        if i >= 0 and addr < self.vmas[i].end:
            return self.vmas[i]
        return None

    def _shared(self, vma: Message) -> _Pagemap | None:
        """The pagemap of the shared memory object behind ``vma`` (None if CRIU dumped none).

        A memfd mapping (which is also what the kernel makes of a shared
        anonymous one) names its file in ``vma.shmid``; the memfd inode names
        the object.  Other shared anonymous VMAs name the object directly.
        """
        shmid: int | None = vma.shmid
        if vma.status & _VMA_AREA_MEMFD:
            shmid = self._memfd_shmid(vma.shmid) if self._memfd_shmid else None
        if shmid is None:
            return None
        if shmid not in self._shmem:
            name = f"pagemap-shmem-{shmid}.img"
            self._shmem[shmid] = _load_pagemap(self.src, name) if self.src.exists(name) else None
        return self._shmem[shmid]

    def read(self, addr: int, length: int) -> bytes:
        """``length`` bytes of memory at ``addr``.

        Raises ``UnmappedAddress``, ``NotDumped`` (see the module's doc),
        ``BadPagemap`` if a pages file is shorter than its pagemap says.
        Needs a seekable source.
        """
        if addr < 0 or length < 0:
            raise ValueError("address and length must not be negative")
        out = bytearray()
        end = addr + length
        files: dict[str, BinaryIO] = {}
        try:
            while addr < end:
                vma = self.vma_at(addr)
                if vma is None:
                    raise UnmappedAddress(f"mm-{self.pid}.img", addr)
                if vma.status & (_VMA_ANON_SHARED | _VMA_AREA_MEMFD) and not vma.status & _VMA_SYSVIPC:
                    # The object's pagemap is indexed by offset in the object.
                    pagemap, base, zeros = self._shared(vma), vma.start - vma.pgoff, True
                    if pagemap is None:
                        raise NotDumped(f"mm-{self.pid}.img", addr, _why_missing(vma))
                else:
                    pagemap, base, zeros = self._own, 0, bool(vma.status & _VMA_ANON_PRIVATE)
                addr = self._copy(out, files, pagemap, vma, base, zeros, addr, min(end, vma.end))
        finally:
            for f in files.values():
                f.close()
        return bytes(out)

    def _copy(self, out: bytearray, files: dict[str, BinaryIO], pagemap: _Pagemap, vma: Message, base: int,
              zeros: bool, addr: int, stop: int) -> int:
        """Append memory [addr, stop) of one VMA to ``out``; return ``stop``."""
        while addr < stop:
            run, nxt = pagemap.run_at(addr - base)
            if run is None:
                upto = min(stop, nxt + base)
                if not zeros:  # never-touched anonymous memory is zeros; anything else lives elsewhere
                    raise NotDumped(pagemap.name, addr, _why_missing(vma))
                out += bytes(upto - addr)
                addr = upto
                continue
            upto = min(stop, run.end + base)
            if not run.present:
                why = "in the parent checkpoint" if run.flags & PE_PARENT else "with the lazy-pages server"
                raise NotDumped(pagemap.name, addr, why)
            assert run.offset is not None
            pos = run.offset + (addr - base - run.vaddr)
            if pagemap.pages_name not in files:
                files[pagemap.pages_name] = self.src.open(pagemap.pages_name)
            pages = files[pagemap.pages_name]
            pages.seek(pos)
            data = pages.read(upto - addr)
            if len(data) != upto - addr:
                raise BadPagemap(pagemap.pages_name, f"pages file ends before the page of {addr:#x}", pos)
            out += data
            addr = upto
        return addr

    def iter_present(self, chunk: int = CHUNK) -> Iterator[tuple[int, memoryview]]:
        """(vaddr, data) for every dumped page range, in address order, at most ``chunk`` bytes each.

        Reads the pages file front to back once.  ``data`` is a view of a
        buffer reused for the next chunk: copy it to keep it.
        """
        if not any(run.present for run in self.pagemap):
            return  # nothing dumped: the pages file may not even exist
        buf = bytearray(max(PAGE_SIZE, chunk - chunk % PAGE_SIZE))
        view = memoryview(buf)
        with self.src.open(self.pages_name) as pages:
            pos = 0
            for run in self.pagemap:
                if not run.present:
                    continue
                assert run.offset is not None
                if pos != run.offset:  # runs are contiguous; a gap means a seek (only if corrupt)
                    pages.seek(run.offset)
                    pos = run.offset
                vaddr, left = run.vaddr, run.nr_pages * PAGE_SIZE
                while left:
                    n = min(left, len(buf))
                    got = _read_into(pages, view[:n])
                    pos += got
                    if got != n:
                        raise BadPagemap(self.pages_name, f"pages file ends inside the pages of {vaddr:#x}", pos)
                    yield vaddr, view[:n]
                    vaddr += n
                    left -= n


def _read_into(stream, view: memoryview) -> int:
    done = 0
    while done < len(view):
        got = stream.readinto(view[done:])
        if not got:
            break
        done += got
    return done


def _why_missing(vma: Message) -> str:
    if vma.status & _VMA_AREA_MEMFD:
        return "memfd whose content is not in the images"
    if vma.status & ((1 << 6) | (1 << 7)):
        return "file-backed page left to the mapped file"
    if vma.status & (1 << 8):
        return "shared anonymous memory (pagemap-shmem-*.img)"
    return f"VMA with status {vma.status:#x}"


def _load_pagemap(src: ImageSource, name: str) -> _Pagemap:
    """A pagemap image, checked against its pages file's size (which is not read)."""
    entries = iter_entries(src, name)
    try:
        head = next(entries, None)
        if head is None:
            raise BadPagemap(name, "no pagemap_head", 8)
        runs = _runs(name, entries)
    finally:
        entries.close()
    pages_name = f"pages-{head.msg.pages_id}.img"
    needed = sum(r.nr_pages for r in runs if r.present) * PAGE_SIZE
    size = src.size(pages_name) if needed else 0
    if needed > size:
        raise BadPagemap(pages_name, f"{name} places {needed} bytes of pages in a {size}-byte file")
    return _Pagemap(name=name, pages_name=pages_name, runs=runs, starts=tuple(r.vaddr for r in runs))


def _runs(name: str, entries: Iterator[Entry]) -> tuple[PagemapRun, ...]:
    """The pagemap entries as runs, each present one placed after the ones before it."""
    runs: list[PagemapRun] = []
    offset = 0
    last_end = 0
    for e in entries:
        pe = e.msg
        nr = pe.nr_pages if pe.HasField("nr_pages") else pe.compat_nr_pages
        flags = _flags(pe)
        if pe.vaddr % PAGE_SIZE or pe.vaddr < last_end:
            raise BadPagemap(name, f"entry at {pe.vaddr:#x} is unaligned or overlaps the one before", e.offset)
        run = PagemapRun(vaddr=pe.vaddr, nr_pages=nr, flags=flags, offset=offset if flags & PE_PRESENT else None)
        if run.present:
            offset += nr * PAGE_SIZE
        last_end = run.end
        runs.append(run)
    return tuple(runs)


def load_memory(src: ImageSource, pid: int, vmas: tuple[Message, ...],
                memfd_shmid: Callable[[int], int | None] | None = None) -> ProcessMemory:
    """``ProcessMemory`` of ``pid`` from ``pagemap-PID.img``, checked against the pages file's size.

    ``memfd_shmid`` maps a memfd's file id to its shared memory object (from
    files.img and memfd.img; ``Checkpoint`` gives it); without it memfd
    mappings read as ``NotDumped``.  Reads the pagemap (never the pages).
    Raises ``BadPagemap`` when entries overlap, are unaligned, or need more
    bytes than the pages file has.
    """
    return ProcessMemory(src=src, pid=pid, vmas=tuple(vmas), own=_load_pagemap(src, f"pagemap-{pid}.img"),
                         memfd_shmid=memfd_shmid)
