"""Progress of the archive's long copies, as a callback: the archive counts, the caller renders.

A :data:`Progress` is told ``(bytes done, total or None)`` about once per
chunk and once more at the end; drawing and rate-limiting belong to the
caller (the CLI's ``runtime.cli.progress``), so the archive code stays
silent and pure of terminals. Export counts the image files it reads
(total: their sizes), import the archive bytes it has consumed (total: the
archive's size), so both reach their total exactly.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import IO

__all__ = ["Progress", "Meter", "Metered"]

Progress = Callable[[int, "int | None"], None]


class Meter:
    """Counts bytes for one :data:`Progress` callback."""

    def __init__(self, progress: Progress, total: int | None) -> None:
        self.progress, self.total, self.done = progress, total, 0

    def add(self, n: int) -> None:
        self.done += n
        self.progress(self.done, self.total)

    def at(self, done: int) -> None:
        self.done = done
        self.progress(done, self.total)

    def end(self) -> None:
        self.progress(self.total if self.total is not None else self.done, self.total)


class Metered:
    """A file read by tarfile's copy loop, telling a meter what went through."""

    def __init__(self, f: IO[bytes], meter: Meter) -> None:
        self._f, self._meter = f, meter

    def read(self, n: int = -1) -> bytes:
        data = self._f.read(n)
        self._meter.add(len(data))
        return data
