"""Memory search streams chunks and finds matches across chunk edges, once each; hex dumps."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from runtime.inspect import memsearch

PAGE = 4096


@dataclass
class Run:
    vaddr: int
    nr_pages: int
    offset: int

    @property
    def end(self) -> int:
        return self.vaddr + self.nr_pages * PAGE


class FakeMemory:
    """ProcessMemory's surface that search uses: pagemap runs, pages_name, iter_present in chunks."""

    pages_name = "pages-1.img"

    def __init__(self, runs: list[tuple[int, bytes]], chunk: int) -> None:
        self.pagemap, self.data, self.chunk = [], [], chunk
        offset = 0
        for vaddr, data in runs:
            assert len(data) % PAGE == 0
            self.pagemap.append(Run(vaddr, len(data) // PAGE, offset))
            self.data.append(data)
            offset += len(data)

    def iter_present(self):
        buf = bytearray(self.chunk)  # reused, as criu_image's is
        for run, data in zip(self.pagemap, self.data):
            for i in range(0, len(data), self.chunk):
                piece = data[i:i + self.chunk]
                buf[:len(piece)] = piece
                yield run.vaddr + i, memoryview(buf)[:len(piece)]


def _hits(mem, **kw):
    pattern, window = memsearch.compile_pattern(**kw)
    return list(memsearch.search(mem, pattern, window, lambda a: "vma"))


def test_match_across_a_chunk_edge_found_once():
    data = bytearray(4 * PAGE)
    data[PAGE - 3:PAGE + 5] = b"SECRET!!"  # spans the first and second chunk
    data[3 * PAGE:3 * PAGE + 6] = b"SECRET"
    mem = FakeMemory([(0x10000, bytes(data))], chunk=PAGE)
    hits = _hits(mem, string="SECRET")
    assert [(h.address, h.pages_offset) for h in hits] == [(0x10000 + PAGE - 3, PAGE - 3), (0x10000 + 3 * PAGE, 3 * PAGE)]
    assert hits[0].match == b"SECRET" and hits[0].after.startswith(b"!!")


def test_no_match_across_a_gap_in_memory():
    a, b = bytearray(PAGE), bytearray(PAGE)
    a[-3:] = b"SEC"
    b[:3] = b"RET"
    mem = FakeMemory([(0x10000, bytes(a)), (0x20000, bytes(b))], chunk=PAGE)
    assert _hits(mem, string="SECRET") == []
    mem = FakeMemory([(0x10000, bytes(a)), (0x11000, bytes(b))], chunk=PAGE)  # adjacent runs: one string
    hits = _hits(mem, string="SECRET")
    assert [(h.address, h.pages_offset) for h in hits] == [(0x11000 - 3, PAGE - 3)]


def test_regex_and_offsets_in_later_runs():
    a, b = bytes(PAGE), bytearray(2 * PAGE)
    b[PAGE + 10:PAGE + 30] = b"token=abc123;xyz...."
    mem = FakeMemory([(0x10000, a), (0x40000, bytes(b))], chunk=PAGE)
    hits = _hits(mem, regex=r"token=[a-z0-9]+")
    assert [(h.address, h.pages_offset, h.match) for h in hits] == [(0x41000 + 10, PAGE + PAGE + 10, b"token=abc123")]


def test_limit_and_overlapping_occurrences():
    mem = FakeMemory([(0, b"ab" * (PAGE // 2))], chunk=PAGE)
    pattern, window = memsearch.compile_pattern(string="ab")
    assert len(list(memsearch.search(mem, pattern, window, str, limit=5))) == 5


def test_patterns_refused():
    with pytest.raises(ValueError):
        memsearch.compile_pattern()
    with pytest.raises(ValueError):
        memsearch.compile_pattern(string="")
    with pytest.raises(ValueError, match="--regex"):
        memsearch.compile_pattern(regex="(")


def test_hexdump_and_range():
    out = memsearch.hexdump(b"hello, world\x00\x01\x02\x03xyz", 0x7ffd0000)
    assert out.splitlines() == [
        "000000007ffd0000  68 65 6c 6c 6f 2c 20 77  6f 72 6c 64 00 01 02 03  |hello, world....|",
        "000000007ffd0010  78 79 7a                                          |xyz|"]
    assert memsearch.parse_range("0x1000:64") == (0x1000, 64)
    assert memsearch.parse_range("4096:0x10") == (4096, 16)
    with pytest.raises(ValueError):
        memsearch.parse_range("zz:1")
    with pytest.raises(ValueError):
        memsearch.parse_range("0x1000:0")
