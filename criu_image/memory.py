"""A process's memory: its VMAs, its pagemap, and the pages behind them.

``pagemap-PID.img`` starts with a ``pagemap_head`` whose ``pages_id`` names
``pages-ID.img``; each following ``pagemap_entry`` covers ``nr_pages``
pages from ``vaddr``.  Entries flagged ``PE_PRESENT`` have their pages in
the pages file, back to back in pagemap order (so the file offset of an
entry is the sum of the present entries before it).  ``PE_PARENT`` pages
are in the parent checkpoint, ``PE_LAZY`` ones without ``PE_PRESENT`` stay
with the lazy-pages server.  Images older than the ``flags`` field say
``in_parent`` instead, and ``compat_nr_pages`` for ``nr_pages``.

What ``read`` returns where nothing was dumped: an address outside every
VMA raises ``UnmappedAddress``; a page of private anonymous memory that is
not in the pagemap was never touched (or was zero) and reads as zeros; any
other missing content (file pages CRIU leaves to the file, shared memory,
parent or lazy pages) raises ``NotDumped`` rather than inventing bytes.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from dataclasses import dataclass

from google.protobuf.message import Message

from .errors import BadPagemap, NotDumped, UnmappedAddress
from .image import iter_entries
from .source import ImageSource

__all__ = ["PAGE_SIZE", "PE_PARENT", "PE_LAZY", "PE_PRESENT", "PagemapRun", "ProcessMemory", "load_memory"]

#: x86_64's page size, CRIU's unit in pagemaps.
PAGE_SIZE = 4096
PE_PARENT = 1 << 0
PE_LAZY = 1 << 1
PE_PRESENT = 1 << 2
# VMA status bits (criu/include/image.h) that decide what a missing page means.
_VMA_ANON_PRIVATE = 1 << 9
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


class ProcessMemory:
    """The memory of process ``pid`` in a checkpoint (built by ``load_memory``)."""

    __slots__ = ("src", "pid", "vmas", "pagemap", "pages_name", "_starts", "_vma_starts")

    def __init__(self, *, src: ImageSource, pid: int, vmas: tuple[Message, ...],
                 pagemap: tuple[PagemapRun, ...], pages_name: str) -> None:
        self.src = src
        self.pid = pid
        self.vmas = vmas
        self.pagemap = pagemap
        self.pages_name = pages_name
        self._starts = [run.vaddr for run in pagemap]
        self._vma_starts = [vma.start for vma in vmas]

    def __repr__(self) -> str:
        return f"<ProcessMemory pid={self.pid} vmas={len(self.vmas)} runs={len(self.pagemap)}>"

    def dumped_bytes(self) -> int:
        """Bytes of this process's pages held in its pages file."""
        return sum(run.nr_pages for run in self.pagemap if run.present) * PAGE_SIZE

    def vma_at(self, addr: int) -> Message | None:
        """The VMA holding ``addr``, if any."""
        i = bisect.bisect_right(self._vma_starts, addr) - 1
        if i >= 0 and addr < self.vmas[i].end:
            return self.vmas[i]
        return None

    def _run_at(self, addr: int) -> tuple[PagemapRun | None, int]:
        """The run holding ``addr`` (or ``None``) and where the next run starts."""
        i = bisect.bisect_right(self._starts, addr) - 1
        if i >= 0 and addr < self.pagemap[i].end:
            return self.pagemap[i], self.pagemap[i].end
        nxt = self.pagemap[i + 1].vaddr if i + 1 < len(self.pagemap) else 1 << 64
        return None, nxt

    def read(self, addr: int, length: int) -> bytes:
        """``length`` bytes of memory at ``addr``.

        Raises ``UnmappedAddress``, ``NotDumped`` (see the module's doc),
        ``TruncatedImage`` if the pages file is shorter than its pagemap says.
        Needs a seekable source.
        """
        if addr < 0 or length < 0:
            raise ValueError("address and length must not be negative")
        out = bytearray()
        end = addr + length
        with self.src.open(self.pages_name) as pages:
            while addr < end:
                vma = self.vma_at(addr)
                if vma is None:
                    raise UnmappedAddress(f"mm-{self.pid}.img", addr)
                stop = min(end, vma.end)
                while addr < stop:
                    run, nxt = self._run_at(addr)
                    if run is None:
                        upto = min(stop, nxt)
                        if not vma.status & _VMA_ANON_PRIVATE:
                            raise NotDumped(f"pagemap-{self.pid}.img", addr, _why_missing(vma))
                        out += bytes(upto - addr)
                        addr = upto
                        continue
                    upto = min(stop, run.end)
                    if not run.present:
                        why = "in the parent checkpoint" if run.flags & PE_PARENT else "with the lazy-pages server"
                        raise NotDumped(f"pagemap-{self.pid}.img", addr, why)
                    assert run.offset is not None
                    pos = run.offset + (addr - run.vaddr)
                    pages.seek(pos)
                    data = pages.read(upto - addr)
                    if len(data) != upto - addr:
                        raise BadPagemap(self.pages_name, f"pages file ends before the page of {addr:#x}", pos)
                    out += data
                    addr = upto
        return bytes(out)

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
    if vma.status & ((1 << 6) | (1 << 7)):
        return "file-backed page left to the mapped file"
    if vma.status & (1 << 8):
        return "shared anonymous memory (pagemap-shmem-*.img)"
    return f"VMA with status {vma.status:#x}"


def load_memory(src: ImageSource, pid: int, vmas: tuple[Message, ...]) -> ProcessMemory:
    """``ProcessMemory`` of ``pid`` from ``pagemap-PID.img``, checked against the pages file's size.

    Reads the pagemap (never the pages).  Raises ``BadPagemap`` when entries
    overlap, are unaligned, or need more bytes than the pages file has.
    """
    name = f"pagemap-{pid}.img"
    entries = iter_entries(src, name)
    head = next(entries, None)
    if head is None:
        raise BadPagemap(name, "no pagemap_head", 8)
    pages_name = f"pages-{head.msg.pages_id}.img"
    runs: list[PagemapRun] = []
    offset = 0
    last_end = 0
    for e in entries:
        pe = e.msg
        nr = pe.nr_pages if pe.HasField("nr_pages") else pe.compat_nr_pages
        flags = _flags(pe)
        if pe.vaddr % PAGE_SIZE or pe.vaddr < last_end:
            raise BadPagemap(name, f"entry at {pe.vaddr:#x} is unaligned or overlaps the one before", e.offset)
        run = PagemapRun(vaddr=pe.vaddr, nr_pages=nr, flags=flags,
                         offset=offset if flags & PE_PRESENT else None)
        if run.present:
            offset += nr * PAGE_SIZE
        last_end = run.end
        runs.append(run)
    size = src.size(pages_name) if offset else 0
    if offset > size:
        raise BadPagemap(pages_name, f"pagemap-{pid}.img places {offset} bytes of pages in a {size}-byte file")
    return ProcessMemory(src=src, pid=pid, vmas=tuple(vmas), pagemap=tuple(runs), pages_name=pages_name)
