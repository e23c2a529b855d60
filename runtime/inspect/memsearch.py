"""``criu-cr inspect memory``: find strings in a process's dumped memory, dump a range as hex.

The search streams the process's pages file front to back once
(``ProcessMemory.iter_present``: chunks of a few MiB, never the whole file)
and runs one compiled pattern over each chunk in place. A match may span two
chunks: the last ``window`` bytes of a chunk are searched again together
with the start of the next one when the two are adjacent in memory (the
needle's length minus one for a string; :data:`REGEX_WINDOW` for a regular
expression, the longest match a regex search can find across a chunk edge).
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

__all__ = ["WARNING", "REGEX_WINDOW", "Hit", "compile_pattern", "search", "hexdump", "parse_range", "printable"]

WARNING = ("criu-cr: warning: a checkpoint's memory pages hold the process's secrets (keys, passwords, "
           "tokens); what is shown here is as sensitive")
REGEX_WINDOW = 4096
CONTEXT = 16  # bytes shown on each side of a match, within the chunk it was found in


@dataclass(frozen=True, kw_only=True)
class Hit:
    """A match: its virtual address, where its first byte is in the pages file, the mapping holding it."""

    address: int
    pages_file: str
    pages_offset: int
    vma: str
    match: bytes
    before: bytes = b""
    after: bytes = b""


def compile_pattern(*, string: str | None = None, regex: str | None = None) -> tuple[re.Pattern[bytes], int]:
    """The pattern to search for and its window (see the module's doc). Raises ValueError."""
    if (string is None) == (regex is None):
        raise ValueError("give exactly one of --search STRING or --regex RE")
    if string is not None:
        needle = string.encode("utf-8", "surrogateescape")
        if not needle:
            raise ValueError("--search needs a non-empty string")
        return re.compile(re.escape(needle)), len(needle) - 1
    try:
        return re.compile(regex.encode("utf-8", "surrogateescape")), REGEX_WINDOW  # type: ignore[union-attr]
    except re.error as exc:
        raise ValueError(f"--regex {regex!r}: {exc}") from exc


def _offset_of(mem: Any, starts: list[int], addr: int) -> int:
    run = mem.pagemap[bisect.bisect_right(starts, addr) - 1]
    return int(run.offset) + (addr - run.vaddr)


def search(mem: Any, pattern: re.Pattern[bytes], window: int, vma_label: Callable[[int], str], *,
           limit: int = 0) -> Iterator[Hit]:
    """Every match of ``pattern`` in the dumped memory of ``mem`` (a ``criu_image`` ProcessMemory),
    in address order; at most ``limit`` (0: all). ``vma_label(addr)`` names the mapping of an address."""
    starts = [run.vaddr for run in mem.pagemap]
    found = 0
    tail, tail_end = b"", -1

    def hit(addr: int, m: re.Match[bytes], buf: Any) -> Hit:
        return Hit(address=addr, pages_file=mem.pages_name, pages_offset=_offset_of(mem, starts, addr),
                   vma=vma_label(addr), match=m.group(0),
                   before=bytes(buf[max(0, m.start() - CONTEXT):m.start()]), after=bytes(buf[m.end():m.end() + CONTEXT]))

    for vaddr, data in mem.iter_present():
        if tail and vaddr == tail_end and window:
            edge = tail + bytes(data[:window])
            for m in pattern.finditer(edge):
                if m.start() < len(tail) < m.end():
                    yield hit(tail_end - len(tail) + m.start(), m, edge)
                    found += 1
                    if limit and found >= limit:
                        return
        for m in pattern.finditer(data):
            yield hit(vaddr + m.start(), m, data)
            found += 1
            if limit and found >= limit:
                return
        tail = bytes(data[-window:]) if window else b""
        tail_end = vaddr + len(data)


def parse_range(text: str) -> tuple[int, int]:
    """``ADDR:LEN`` (either may be hex with 0x, or decimal) -> (address, length). Raises ValueError."""
    addr, sep, length = text.partition(":")
    try:
        a, n = int(addr, 0), int(length, 0) if sep else 256
    except ValueError:
        raise ValueError(f"--dump {text!r}: expected ADDR:LEN, e.g. 0x7ffd4e346000:256") from None
    if a < 0 or n <= 0 or n > 64 << 20:
        raise ValueError(f"--dump {text!r}: the length must be 1..{64 << 20}")
    return a, n


def hexdump(data: bytes, base: int) -> str:
    """``data`` as lines of 16 bytes: address, hex in two groups of 8, the printable characters. Pure."""
    lines = []
    for i in range(0, len(data), 16):
        row = data[i:i + 16]
        hexes = " ".join(f"{b:02x}" for b in row[:8]) + "  " + " ".join(f"{b:02x}" for b in row[8:])
        text = "".join(chr(b) if 32 <= b < 127 else "." for b in row)
        lines.append(f"{base + i:016x}  {hexes:<48}  |{text}|")
    return "\n".join(lines) + ("\n" if lines else "")


def printable(data: bytes) -> str:
    return "".join(chr(b) if 32 <= b < 127 else "." for b in data)
