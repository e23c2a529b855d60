"""Image sources for the tests: the stored real checkpoint, and in-memory copies to damage."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import BinaryIO

from criu_image import DirSource, MissingImage

DATA = Path(__file__).resolve().parents[1] / "data"
IMAGES = DATA / "images"  # made by scripts/make-test-images
CRIT = json.loads((DATA / "images.crit.json").read_text())  # crit decode of each, plain and --pretty


def stored() -> DirSource:
    return DirSource(IMAGES)


class _Stream(io.RawIOBase):
    """A forward-only stream (a pipe, an archive member being decompressed)."""

    def __init__(self, data: bytes) -> None:
        self._inner = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:  # type: ignore[override]
        return self._inner.readinto(b)


class MemSource:
    """Files held in memory; ``seekable=False`` serves forward-only streams; ``opened`` logs opens."""

    def __init__(self, files: dict[str, bytes], *, seekable: bool = True) -> None:
        self.files = dict(files)
        self.seekable = seekable
        self.opened: list[str] = []

    @classmethod
    def copy_of(cls, src: DirSource, **kw: bool) -> MemSource:
        return cls({n: (Path(src.path) / n).read_bytes() for n in src.names()}, **kw)

    def names(self) -> list[str]:
        return sorted(self.files)

    def open(self, name: str) -> BinaryIO:
        if name not in self.files:
            raise MissingImage(name, "not in the test source")
        self.opened.append(name)
        data = self.files[name]
        return io.BytesIO(data) if self.seekable else io.BufferedReader(_Stream(data))  # type: ignore[return-value]

    def exists(self, name: str) -> bool:
        return name in self.files

    def size(self, name: str) -> int:
        if name not in self.files:
            raise MissingImage(name, "not in the test source")
        return len(self.files[name])


def encode(magic_name: str, *messages: object, common: bool = True) -> bytes:
    """An image as CRIU writes it (for damaged variants of the stored ones)."""
    from criu_image.magic import IMG_COMMON_MAGIC, MAGICS

    out = (IMG_COMMON_MAGIC.to_bytes(4, "little") if common else b"") + MAGICS[magic_name].to_bytes(4, "little")
    for msg in messages:
        data = msg.SerializePartialToString()  # type: ignore[attr-defined]
        out += len(data).to_bytes(4, "little") + data
    return out
