"""Byte ranges of a checkpoint's files as seekable readers, for :mod:`runtime.inspect.sources`.

A member of a plain tar is read with ``pread`` at its offset (no shared file
position, so any number may be open). A member of a compressed tar is read
through the source's one :class:`Cursor`: a decompressed stream that reads
forward and starts over only when a reader goes back.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Callable
from typing import IO, BinaryIO

from runtime.cr.compression import CHUNK

__all__ = ["Cursor", "window", "restream", "Hashing"]


class Member(io.RawIOBase):
    """``size`` bytes at ``start`` of something, seekable; subclasses say how bytes are fetched."""

    def __init__(self, start: int, size: int) -> None:
        super().__init__()
        self._start, self._size, self._pos = start, size, 0

    def _fetch(self, at: int, n: int) -> bytes:
        raise NotImplementedError

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        n = min(len(b), self._size - self._pos)
        if n <= 0:
            return 0
        data = self._fetch(self._start + self._pos, n)
        b[:len(data)] = data
        self._pos += len(data)
        return len(data)

    def seek(self, pos: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + pos)
        return self._pos

    def tell(self) -> int:
        return self._pos


class Window(Member):
    """Bytes ``start`` to ``start + size`` of file descriptor ``fd``, read with pread (no shared offset)."""

    def __init__(self, fd: int, start: int, size: int) -> None:
        super().__init__(start, size)
        self._fd = fd

    def _fetch(self, at: int, n: int) -> bytes:
        return os.pread(self._fd, n, at)


def window(fd: int, start: int, size: int) -> BinaryIO:
    """Bytes ``start..start+size`` of ``fd``, buffered."""
    return io.BufferedReader(Window(fd, start, size), CHUNK)  # type: ignore[return-value]


class Cursor:
    """One decompressed stream of a compressed tar, shared by all its members' readers.

    A read at or after where the stream stands goes on from there (dropping what
    lies between); a read before it starts the stream over. Readers that go in
    the archive's order (see :meth:`Source.position`) decompress it once.
    """

    def __init__(self, plain: Callable[[], IO[bytes]]) -> None:
        self._plain = plain
        self._stream: IO[bytes] | None = None
        self.pos = 0

    def read_at(self, pos: int, n: int) -> bytes:
        if self._stream is None or pos < self.pos:
            self.close()
            self._stream, self.pos = self._plain(), 0
        while self.pos < pos:
            got = self._stream.read(min(pos - self.pos, CHUNK))
            if not got:
                raise EOFError("the compressed stream ends early")
            self.pos += len(got)
        data = self._stream.read(n)
        self.pos += len(data)
        return data

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()
            self._stream = None


class Restream(Member):
    """A member of a compressed tar, read through the source's :class:`Cursor`; its last
    ``len(tail)`` bytes, kept when the archive was indexed, without it."""

    def __init__(self, cursor: Cursor, start: int, size: int, tail: bytes = b"") -> None:
        super().__init__(start, size)
        self._cursor, self._tail = cursor, tail
        self._tail_at = start + size - len(tail)

    def _fetch(self, at: int, n: int) -> bytes:
        if self._tail and at >= self._tail_at:
            return self._tail[at - self._tail_at:at - self._tail_at + n]
        return self._cursor.read_at(at, n)


class Hashing(io.RawIOBase):
    def __init__(self, raw: BinaryIO, sha: "hashlib._Hash") -> None:
        super().__init__()
        self._raw, self._sha = raw, sha

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self._raw.read(len(b))
        self._sha.update(data)
        b[:len(data)] = data
        return len(data)


def restream(cursor: Cursor, start: int, size: int, tail: bytes = b"") -> BinaryIO:
    """The decompressed bytes ``start..start+size`` of ``cursor``'s stream, buffered (see :class:`Restream`)."""
    return io.BufferedReader(Restream(cursor, start, size, tail), CHUNK)  # type: ignore[return-value]
