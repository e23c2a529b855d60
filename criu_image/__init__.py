"""criu_image: read CRIU 4.2 checkpoint images, with no knowledge of containers.

* ``read_image(src, name)`` -> ``Image``: one image's magic and its entries,
  decoded lazily (``Image.entries()`` yields ``Entry`` objects: ``.msg``,
  the protobuf message, and ``.payload``, the extra bytes some kinds have).
* ``to_dict(msg_or_entry, kind, pretty=...)`` / ``image_to_dict(image)``:
  the JSON shape ``crit decode`` prints.
* ``Checkpoint(src)``: the checkpoint as typed objects (processes, cores,
  fds with their files, memory, mounts, network namespaces, stats);
  ``Checkpoint.memory(pid)`` reads a process's memory by virtual address.
* ``DirSource(path)`` serves an images directory; anything with the
  ``ImageSource`` methods (names, open, exists, size) serves as well.

Every error is an ``ImageError`` (a ``criu_rpc.errors.CriuError``) naming
the file and the offset.
"""

from .checkpoint import Checkpoint, Fd, NetNs, Process, Stats
from .convert import image_to_dict, to_dict
from .errors import (BadPagemap, ImageError, MissingImage, NotDumped, TruncatedImage, UnknownImage, UnknownMagic,
                     UnmappedAddress)
from .image import Entry, Image, iter_entries, read_image
from .memory import PAGE_SIZE, PagemapRun, ProcessMemory
from .source import DirSource, ImageSource

__all__ = [
    "read_image", "iter_entries", "Image", "Entry", "to_dict", "image_to_dict",
    "Checkpoint", "Process", "Fd", "NetNs", "Stats", "ProcessMemory", "PagemapRun", "PAGE_SIZE",
    "ImageSource", "DirSource",
    "ImageError", "UnknownMagic", "TruncatedImage", "UnknownImage", "MissingImage", "BadPagemap",
    "UnmappedAddress", "NotDumped",
]
