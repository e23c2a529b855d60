"""Read the few CRIU image files criu-cr needs: stats and the inventory.

Layout, as CRIU 4.2 writes it (all integers little-endian u32):

* ``stats-dump`` / ``stats-restore``: ``IMG_SERVICE_MAGIC``, ``STATS_MAGIC``,
  then one entry: its size and a serialized ``stats_entry``.  (Images from
  CRIU before 1.1 lack the first magic; those are read too.)
* ``inventory.img``: ``INVENTORY_MAGIC`` alone (never the common magic),
  then the ``inventory_entry``.

Times in the stats are microseconds, exactly as CRIU stores them.
"""

from __future__ import annotations

import errno
import os
import struct
from dataclasses import dataclass, fields
from types import MappingProxyType
from typing import Literal, overload

from google.protobuf.message import DecodeError

from . import _pb  # its stats_pb2 (protobuf) is loaded when a stats image is parsed
from .errors import ImageError

__all__ = [
    "IMG_COMMON_MAGIC",
    "IMG_SERVICE_MAGIC",
    "INVENTORY_MAGIC",
    "STATS_MAGIC",
    "STATS_FILES",
    "INVENTORY_FILE",
    "DumpStats",
    "RestoreStats",
    "parse_stats",
    "read_stats",
    "has_inventory",
]

# From CRIU's criu/include/magic.h.
IMG_COMMON_MAGIC = 0x54564319
IMG_SERVICE_MAGIC = 0x55105940
INVENTORY_MAGIC = 0x58313116
STATS_MAGIC = 0x57093306

#: File name of each kind of stats image, inside the images directory.
STATS_FILES = MappingProxyType({"dump": "stats-dump", "restore": "stats-restore"})
INVENTORY_FILE = "inventory.img"

_U32 = struct.Struct("<I")
# A stats entry is a few dozen bytes; refuse to allocate for a corrupt size.
_MAX_ENTRY = 1 << 20


@dataclass(frozen=True, slots=True, kw_only=True)
class DumpStats:
    """What CRIU measured during a dump or pre-dump (times in microseconds).

    ``frozen_time`` is how long the tree stayed frozen, ``freezing_time``
    how long freezing it took, ``memdump_time``/``memwrite_time`` the time
    spent collecting/writing memory.  Counters are in pages.  Fields CRIU
    left out of the image are None.
    """

    freezing_time: int
    frozen_time: int
    memdump_time: int
    memwrite_time: int
    pages_scanned: int
    pages_skipped_parent: int
    pages_written: int
    pages_lazy: int
    irmap_resolve: int | None = None
    page_pipes: int | None = None
    page_pipe_bufs: int | None = None
    shpages_scanned: int | None = None
    shpages_skipped_parent: int | None = None
    shpages_written: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RestoreStats:
    """What CRIU measured during a restore (times in microseconds).

    ``forking_time`` is the time to recreate the tree, ``restore_time`` the
    whole restore; counters are in pages.  ``pages_restored`` is None when
    CRIU left it out of the image.
    """

    pages_compared: int
    pages_skipped_cow: int
    forking_time: int
    restore_time: int
    pages_restored: int | None = None


def _from_message(cls: type, msg: object) -> object:
    values = {}
    for f in fields(cls):
        values[f.name] = getattr(msg, f.name) if msg.HasField(f.name) else None  # type: ignore[attr-defined]
    return cls(**values)


@overload
def parse_stats(data: bytes, kind: Literal["dump"], path: str = ...) -> DumpStats: ...
@overload
def parse_stats(data: bytes, kind: Literal["restore"], path: str = ...) -> RestoreStats: ...


def parse_stats(data: bytes, kind: str, path: str = "<bytes>") -> DumpStats | RestoreStats:
    """Decode the bytes of a stats image of ``kind`` ``"dump"`` or ``"restore"``.

    ``path`` is only used in error messages.  Raises ValueError for an
    unknown kind, ImageError when the bytes are not such a stats image.
    """
    if kind not in STATS_FILES:
        raise ValueError(f"kind must be 'dump' or 'restore', not {kind!r}")
    offset = 0
    if len(data) >= 4 and _U32.unpack_from(data)[0] == IMG_SERVICE_MAGIC:
        offset = 4
    if len(data) < offset + 8:
        raise ImageError(path, f"truncated: {len(data)} bytes, no room for the magic and entry size")
    magic, size = struct.unpack_from("<II", data, offset)
    if magic != STATS_MAGIC:
        raise ImageError(path, f"magic {magic:#010x} is not the stats magic {STATS_MAGIC:#010x}")
    body = offset + 8
    if size > _MAX_ENTRY:
        raise ImageError(path, f"entry size {size} is implausible")
    if len(data) < body + size:
        raise ImageError(path, f"truncated: entry of {size} bytes, only {len(data) - body} present")
    entry = _pb.stats_pb2.stats_entry()
    try:
        entry.ParseFromString(data[body:body + size])
    except DecodeError as exc:
        raise ImageError(path, f"cannot decode the stats entry: {exc}") from exc
    if not entry.HasField(kind):
        raise ImageError(path, f"holds no {kind} statistics")
    cls = DumpStats if kind == "dump" else RestoreStats
    sub = getattr(entry, kind)
    if not sub.IsInitialized():
        missing = ", ".join(sub.FindInitializationErrors())
        raise ImageError(path, f"{kind} statistics lack required fields: {missing}")
    return _from_message(cls, sub)  # type: ignore[return-value]


@overload
def read_stats(images_dir: str | os.PathLike[str], kind: Literal["dump"] = ...) -> DumpStats: ...
@overload
def read_stats(images_dir: str | os.PathLike[str], kind: Literal["restore"]) -> RestoreStats: ...


def read_stats(images_dir: str | os.PathLike[str], kind: str = "dump") -> DumpStats | RestoreStats:
    """Read ``stats-dump`` (``kind="dump"``) or ``stats-restore`` from ``images_dir``.

    Raises ValueError for an unknown kind, ImageError (with ``path``) when
    the file is missing, unreadable or malformed.
    """
    if kind not in STATS_FILES:
        raise ValueError(f"kind must be 'dump' or 'restore', not {kind!r}")
    path = os.path.join(os.fspath(images_dir), STATS_FILES[kind])
    try:
        with open(path, "rb") as image:
            data = image.read(_MAX_ENTRY + 12)
    except OSError as exc:
        raise ImageError(path, f"cannot read it: {exc.strerror}") from exc
    return parse_stats(data, kind, path)  # type: ignore[call-overload,no-any-return]


def has_inventory(images_dir: str | os.PathLike[str]) -> bool:
    """True if ``images_dir`` holds an ``inventory.img`` with CRIU's inventory magic.

    Every complete dump writes one; pre-dumps do too.  A missing file (or
    directory) gives False.  Raises ImageError when the file exists but
    cannot be read.
    """
    path = os.path.join(os.fspath(images_dir), INVENTORY_FILE)
    try:
        with open(path, "rb") as image:
            head = image.read(4)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            return False
        raise ImageError(path, f"cannot read it: {exc.strerror}") from exc
    return len(head) == 4 and _U32.unpack(head)[0] == INVENTORY_MAGIC
