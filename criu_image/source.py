"""Where image files come from: the ``ImageSource`` protocol and ``DirSource``.

An image source is a flat namespace of CRIU image files (an images
directory, an archive's checkpoint/ member, ...).  Readers open one file at
a time and close it when done.

Seeking: iterating an image's entries only reads forward (skipped payloads
are read and dropped when the stream cannot seek).  Reading process memory
(``ProcessMemory.read``) and re-reading a payload after iteration moved on
(``Image.read_payload``) need ``seek``; a source whose streams cannot seek
gets ``io.UnsupportedOperation`` from them.
"""

from __future__ import annotations

import errno
import os
from typing import BinaryIO, Protocol, runtime_checkable

from .errors import MissingImage

__all__ = ["ImageSource", "DirSource"]


@runtime_checkable
class ImageSource(Protocol):
    """A set of named image files (names are paths relative to the source)."""

    def names(self) -> list[str]:
        """Every file name in the source, sorted."""
        ...

    def open(self, name: str) -> BinaryIO:
        """A binary stream of ``name`` from its first byte; raises ``MissingImage``."""
        ...

    def exists(self, name: str) -> bool:
        """Whether ``name`` is a file of the source."""
        ...

    def size(self, name: str) -> int:
        """The size of ``name`` in bytes; raises ``MissingImage``."""
        ...


class DirSource:
    """The image files of a directory on disk (sub-directories are not descended)."""

    __slots__ = ("path",)

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)

    def __repr__(self) -> str:
        return f"DirSource({self.path!r})"

    def _file(self, name: str) -> str:
        if not name or name.startswith("/") or ".." in name.split("/"):
            raise MissingImage(name, f"not a file name inside {self.path}")
        return os.path.join(self.path, name)

    def names(self) -> list[str]:
        with os.scandir(self.path) as it:
            return sorted(e.name for e in it if e.is_file(follow_symlinks=False))

    def open(self, name: str) -> BinaryIO:
        try:
            # Unbuffered reads of large page ranges go straight into the
            # caller's buffer; entry headers are read through a small buffer.
            return open(self._file(name), "rb")
        except FileNotFoundError as exc:
            raise MissingImage(name, f"no such file in {self.path}") from exc

    def exists(self, name: str) -> bool:
        try:
            return os.path.isfile(self._file(name))
        except MissingImage:
            return False

    def size(self, name: str) -> int:
        try:
            return os.stat(self._file(name)).st_size
        except OSError as exc:
            if exc.errno == errno.ENOENT:
                raise MissingImage(name, f"no such file in {self.path}") from exc
            raise
