"""The errors of criu_image: all are ``criu_rpc.errors.ImageError`` (a ``CriuError``).

Each names the image file and, where one applies, the byte offset at which
the problem was found, so a damaged checkpoint can be looked at with a hex
dump.
"""

from __future__ import annotations

from criu_rpc.errors import ImageError as _RpcImageError

__all__ = ["ImageError", "UnknownMagic", "TruncatedImage", "UnknownImage", "MissingImage", "BadPagemap",
           "UnmappedAddress", "NotDumped"]


class ImageError(_RpcImageError):
    """An image file cannot be decoded.

    ``path`` is the image's name in its source, ``offset`` the byte offset
    of the problem (``None`` when it concerns the whole file), ``problem``
    what is wrong.
    """

    def __init__(self, path: str, problem: str, offset: int | None = None) -> None:
        self.offset = offset
        where = f" at offset {offset}" if offset is not None else ""
        super().__init__(path, f"{problem}{where}")
        self.problem = problem


class UnknownMagic(ImageError):
    """The file starts with a magic number CRIU 4.2 does not define.

    ``magic`` is the number found.
    """

    def __init__(self, path: str, magic: int, offset: int) -> None:
        self.magic = magic
        super().__init__(path, f"unknown magic {magic:#010x} (a raw image such as pages-*.img?)", offset)


class TruncatedImage(ImageError):
    """The file ends inside a magic, an entry's size word, an entry or its payload."""


class UnknownImage(ImageError):
    """The file is not a protobuf image this package decodes (a raw image, a kdat cache)."""


class MissingImage(UnknownImage):
    """The source holds no file of that name."""


class BadPagemap(ImageError):
    """A pagemap's entries do not fit its pages file or its process's VMAs."""


class UnmappedAddress(ImageError):
    """A memory read touches an address no VMA of the process covers.

    ``address`` is the first such address.
    """

    def __init__(self, path: str, address: int) -> None:
        self.address = address
        super().__init__(path, f"address {address:#x} is not mapped in the process")


class NotDumped(ImageError):
    """A memory read touches mapped memory whose content is not in these images.

    ``address`` is its first byte; ``reason`` says where the content is
    (the mapped file, a parent checkpoint, a lazy-pages server, shared memory).
    """

    def __init__(self, path: str, address: int, reason: str) -> None:
        self.address = address
        self.reason = reason
        super().__init__(path, f"memory at {address:#x} is not in the images: {reason}")
