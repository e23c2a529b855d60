"""The framing of a CRIU protobuf image, read forward from a binary stream.

    IMAGE ::= [IMG_COMMON_MAGIC | IMG_SERVICE_MAGIC] MAGIC { ENTRY }
    ENTRY ::= SIZE MESSAGE [ EXTRA ]

All integers are little-endian u32 (CRIU writes host order; its images are
only read back on the same architecture, and every supported one here is
little-endian).  ``SIZE`` is the length of the serialized ``MESSAGE``;
``EXTRA`` is kind-specific (see ``kinds``).

``FrameReader`` keeps the offset of what it reads, so every error names
the byte where the file stopped making sense.  It never reads more than
it needs: a corrupt size cannot make it allocate beyond the file's end.
"""

from __future__ import annotations

import io
import struct
from typing import BinaryIO, TypeVar

from google.protobuf.message import DecodeError, Message

from .errors import ImageError, TruncatedImage, UnknownMagic
from .magic import IMG_COMMON_MAGIC, IMG_SERVICE_MAGIC, NAMES

__all__ = ["FrameReader", "MAX_ENTRY"]

_U32 = struct.Struct("<I")
#: The largest entry message accepted.  CRIU's biggest (a core entry with
#: an xsave area, an mm with thousands of VMAs) are well under this.
MAX_ENTRY = 256 << 20
# Bytes read at once when a payload is skipped on a stream that cannot seek
# or copied into memory: bounded, so a lying size fails at EOF, not in malloc.
_CHUNK = 1 << 20

M = TypeVar("M", bound=Message)


class FrameReader:
    """Reads one image's magic and entries from ``stream`` (which it does not own)."""

    __slots__ = ("name", "stream", "offset", "_seekable")

    def __init__(self, name: str, stream: BinaryIO, offset: int = 0) -> None:
        self.name = name
        self.stream = stream
        self.offset = offset
        try:
            self._seekable = stream.seekable()
        except (AttributeError, ValueError):
            self._seekable = False

    def read_exact(self, size: int, what: str) -> bytes:
        """``size`` bytes, or ``TruncatedImage`` naming ``what`` was cut."""
        start = self.offset
        if size <= _CHUNK:
            data = self.stream.read(size)
        else:
            buf = bytearray()
            while len(buf) < size:
                chunk = self.stream.read(min(_CHUNK, size - len(buf)))
                if not chunk:
                    break
                buf += chunk
            data = bytes(buf)
        self.offset += len(data)
        if len(data) != size:
            raise TruncatedImage(self.name, f"file ends inside {what} ({len(data)} of {size} bytes)", start)
        return data

    def skip(self, size: int, what: str) -> None:
        """Move past ``size`` bytes; ``TruncatedImage`` if the file is shorter."""
        if size == 0:
            return
        start = self.offset
        if self._seekable:
            here = self.stream.tell()
            end = self.stream.seek(0, io.SEEK_END)
            if end - here < size:
                self.offset += end - here
                raise TruncatedImage(self.name, f"file ends inside {what} ({end - here} of {size} bytes)",
                                     start)
            self.stream.seek(here + size)
            self.offset += size
            return
        left = size
        while left:
            chunk = self.stream.read(min(_CHUNK, left))
            if not chunk:
                raise TruncatedImage(self.name, f"file ends inside {what} ({size - left} of {size} bytes)",
                                     start)
            left -= len(chunk)
            self.offset += len(chunk)

    def read_magic(self) -> tuple[str, int]:
        """The image's magic name and its own magic number (after the common one)."""
        start = self.offset
        head = self.stream.read(4)
        self.offset += len(head)
        if len(head) < 4:
            raise TruncatedImage(self.name, f"file ends inside the magic ({len(head)} of 4 bytes)", start)
        (value,) = _U32.unpack(head)
        if value in (IMG_COMMON_MAGIC, IMG_SERVICE_MAGIC):
            start = self.offset
            (value,) = _U32.unpack(self.read_exact(4, "the image magic"))
        name = NAMES.get(value)
        if name is None or name in ("IMG_COMMON", "IMG_SERVICE"):
            raise UnknownMagic(self.name, value, start)
        return name, value

    def read_sized(self, what: str = "an entry") -> tuple[int, bytes] | None:
        """The next size-prefixed block's offset and bytes, or ``None`` at a clean end of file."""
        start = self.offset
        head = self.stream.read(4)
        self.offset += len(head)
        if not head:
            return None
        if len(head) < 4:
            raise TruncatedImage(self.name, f"file ends inside the size of {what} ({len(head)} of 4 bytes)",
                                 start)
        (size,) = _U32.unpack(head)
        if size > MAX_ENTRY:
            raise ImageError(self.name, f"{what} claims {size} bytes, more than any CRIU entry", start)
        return start, self.read_exact(size, what)

    def parse(self, cls: type[M], data: bytes, start: int, what: str = "an entry") -> M:
        """``data`` (read at ``start``) as a complete ``cls`` message, or ``ImageError``."""
        msg = cls()
        try:
            msg.ParseFromString(data)
        except DecodeError as exc:
            raise ImageError(self.name, f"{what} is not a valid {cls.DESCRIPTOR.name}: {exc}", start) from exc
        # proto2 required fields: ParseFromString accepts a message missing
        # them (a cut-short buffer can parse); CRIU never writes one so.
        if not msg.IsInitialized():
            missing = ", ".join(msg.FindInitializationErrors())
            raise ImageError(self.name, f"{what} ({cls.DESCRIPTOR.name}) lacks required {missing}", start)
        return msg

    def read_message(self, cls: type[M], what: str = "an entry") -> tuple[int, M] | None:
        """The next entry's offset and message, or ``None`` at a clean end of file."""
        got = self.read_sized(f"{what} ({cls.DESCRIPTOR.name})")
        if got is None:
            return None
        start, data = got
        return start, self.parse(cls, data, start, what)
