"""Reading a process's memory through its pagemap, in the stored real checkpoint."""

from __future__ import annotations

from pathlib import Path

import pytest

from criu_image import PAGE_SIZE, Checkpoint, NotDumped, ProcessMemory, UnmappedAddress
from tests.unit.image.sources import IMAGES, MemSource, stored

ANON_PRIVATE, FILE_PRIVATE = 1 << 9, 1 << 6


@pytest.fixture(params=[True, False], ids=["dir", "memory"])
def ckpt(request: pytest.FixtureRequest) -> Checkpoint:
    return Checkpoint(stored() if request.param else MemSource.copy_of(stored()))


def _root_memory(ckpt: Checkpoint) -> ProcessMemory:
    return ckpt.memory(ckpt.processes[0].pid)


def _covered(mem: ProcessMemory, addr: int) -> bool:
    return any(r.vaddr <= addr < r.end for r in mem.pagemap)


def _first_gap(mem: ProcessMemory, status_bit: int) -> int:
    for vma in mem.vmas:
        if vma.status & status_bit:
            for addr in range(vma.start, vma.end, PAGE_SIZE):
                if not _covered(mem, addr):
                    return addr
    raise AssertionError("no such gap in the stored checkpoint")


def test_command_line_read_from_memory(ckpt: Checkpoint) -> None:
    root = ckpt.processes[0].pid
    mm = ckpt.mm(root)
    args = _root_memory(ckpt).read(mm.mm_arg_start, mm.mm_arg_end - mm.mm_arg_start).split(b"\0")
    assert args[:2] == [b"sh", b"-c"] and b"sleep 100000" in args[2]


def test_iter_present_streams_the_whole_pages_file(ckpt: Checkpoint) -> None:
    for p in ckpt.processes:
        mem = ckpt.memory(p.pid)
        chunks = [(vaddr, bytes(data)) for vaddr, data in mem.iter_present(chunk=2 * PAGE_SIZE)]
        assert b"".join(d for _, d in chunks) == (IMAGES / mem.pages_name).read_bytes()
        assert sum(len(d) for _, d in chunks) == mem.dumped_bytes()
        assert all(len(d) <= 2 * PAGE_SIZE for _, d in chunks)
        # each chunk is what read() gives at its address
        for vaddr, data in chunks:
            assert mem.read(vaddr, len(data)) == data


def test_a_read_across_runs_and_holes_of_anonymous_memory(ckpt: Checkpoint) -> None:
    mem = _root_memory(ckpt)
    gap = _first_gap(mem, ANON_PRIVATE)
    # never touched anonymous memory reads as zeros, dumped pages as themselves
    assert mem.read(gap, PAGE_SIZE) == bytes(PAGE_SIZE)
    if _covered(mem, gap - PAGE_SIZE):
        data = mem.read(gap - 16, 32)
        assert data[16:] == bytes(16) and data[:16] == mem.read(gap - 16, 16)


def test_unmapped_and_not_dumped_are_errors_not_zeros(ckpt: Checkpoint) -> None:
    mem = _root_memory(ckpt)
    with pytest.raises(UnmappedAddress) as exc:
        mem.read(0x1000, 8)
    assert exc.value.address == 0x1000
    last = mem.vmas[0]
    with pytest.raises(UnmappedAddress):  # runs off the end of a VMA into nothing
        mem.read(last.end - 8, 16) if not mem.vma_at(last.end) else mem.read(0, 1)
    gap = _first_gap(mem, FILE_PRIVATE)
    with pytest.raises(NotDumped, match="mapped file") as nd:
        mem.read(gap, 1)
    assert nd.value.address == gap


def test_negative_reads_are_refused(ckpt: Checkpoint) -> None:
    with pytest.raises(ValueError):
        _root_memory(ckpt).read(-1, 1)


def test_pages_of_every_process_sum_to_the_stats(ckpt: Checkpoint) -> None:
    total = sum(ckpt.memory(p.pid).dumped_bytes() for p in ckpt.processes)
    assert total == ckpt.stats().dump.pages_written * PAGE_SIZE
    assert total == sum(Path(IMAGES, ckpt.memory(p.pid).pages_name).stat().st_size for p in ckpt.processes)


def test_iter_present_needs_no_seek() -> None:
    # An archive member streamed through a decompressor cannot seek: searching must still work.
    src = MemSource.copy_of(stored(), seekable=False)
    ckpt = Checkpoint(src)
    for p in ckpt.processes:
        mem = ckpt.memory(p.pid)
        assert sum(len(d) for _, d in mem.iter_present()) == mem.dumped_bytes()
