"""The compressed streams of checkpoint archives: zstd (podman's default, multi-threaded), gzip, none.

Writers and readers are streams over an open file that never close it (the
archive writer still fsyncs and renames it); the reader side can be capped,
so a small archive cannot unpack into an unbounded amount of data.
"""

from __future__ import annotations

import gzip
import io
from typing import IO, Any

import zstandard

__all__ = ["ZSTD_LEVEL", "GZIP_LEVEL", "CHUNK", "compressor", "decompressor", "detect_compression", "Counted",
           "LimitReached", "STREAM_ERRORS", "Positioned"]

ZSTD_LEVEL = 3
# zstd's job size when threaded: each worker holds about two jobs' input and output, and
# libzstd's own default at level 3 (8 MiB) made a 1 GiB export peak at ~135 MiB RSS; at
# 2 MiB it stays near 40 MiB, at the same speed (issue 12, scripts/bench_scale.py footprint).
ZSTD_JOB_SIZE = 2 << 20
GZIP_LEVEL = 6
CHUNK = 1 << 20
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_GZIP_MAGIC = b"\x1f\x8b"
# What a damaged or cut compressed stream raises while it is read.
STREAM_ERRORS: tuple[type[BaseException], ...] = (zstandard.ZstdError, EOFError, gzip.BadGzipFile)


def compressor(raw: IO[bytes], compression: str, threads: int) -> Any:
    """A writable stream through the compressor into ``raw``; closing it ends the stream, not ``raw``."""
    if compression == "zstd":
        params = zstandard.ZstdCompressionParameters.from_level(
            ZSTD_LEVEL, threads=threads, job_size=ZSTD_JOB_SIZE if threads else 0, write_checksum=True)
        cctx = zstandard.ZstdCompressor(compression_params=params)
        return cctx.stream_writer(raw, closefd=False)
    if compression == "gzip":
        return gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=GZIP_LEVEL, mtime=0)
    return _Unclosing(raw)


class _Unclosing(io.RawIOBase):
    """``raw`` for "none": the tar may close it, the file stays open for fsync."""

    def __init__(self, raw: IO[bytes]) -> None:
        super().__init__()
        self._raw = raw

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        return self._raw.write(b)


def detect_compression(head: bytes) -> str:
    """The compression of an archive starting with ``head`` (its first bytes). Pure."""
    if head.startswith(_ZSTD_MAGIC):
        return "zstd"
    if head.startswith(_GZIP_MAGIC):
        return "gzip"
    return "none"


def decompressor(f: IO[bytes], compression: str) -> Any:
    if compression == "zstd":
        return zstandard.ZstdDecompressor().stream_reader(f, read_across_frames=True, closefd=False)
    if compression == "gzip":
        return gzip.GzipFile(fileobj=f, mode="rb")
    return _NoClose(f)


class _NoClose:
    def __init__(self, f: IO[bytes]) -> None:
        self._f = f

    def read(self, n: int = -1) -> bytes:
        return self._f.read(n)

    def __enter__(self) -> "_NoClose":
        return self

    def __exit__(self, *exc: object) -> None:
        pass


class LimitReached(Exception):
    """More came out of a capped stream than it was allowed."""


class Counted:
    """The decompressed stream, ended once more than ``cap`` bytes came out of it."""

    def __init__(self, stream: Any, cap: int) -> None:
        # read1: what is there, without looping for more. tarfile reads ahead (1 MiB); a
        # looping read() that meets a truncated stream would raise for the member before the
        # one it is cut in, and lose what it had decompressed.
        self._read = getattr(stream, "read1", stream.read)
        self._left = cap

    def read(self, n: int = -1) -> bytes:
        data = self._read(n if n >= 0 else CHUNK)
        self._left -= len(data)
        if self._left < 0:
            raise LimitReached()
        return data


class Positioned:
    """A write-only stream that tells its position: tarfile's plain "w" mode asks it once, at the
    start (its stream mode "w|" needs no tell, but re-buffers every write in 10 KiB records)."""

    def __init__(self, out: IO[bytes]) -> None:
        self._out, self._pos = out, 0

    def write(self, b: Any) -> int:
        self._pos += len(b)
        return self._out.write(b)

    def tell(self) -> int:
        return self._pos
