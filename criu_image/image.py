"""One image file: its magic and its entries, decoded lazily.

``read_image(src, name)`` reads the magic only; ``Image.entries()`` opens the
file and yields one ``Entry`` at a time, so an image of any size is walked
in constant memory.  An entry's extra bytes (pipe data, socket queues, a
ghost file's content, ...) come with it as ``payload`` unless
``entries(payloads=False)`` is asked, in which case they are skipped and
``Image.read_payload(entry)`` fetches them later (that needs a seekable
stream).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from google.protobuf.message import Message

from . import kinds
from .errors import ImageError, TruncatedImage, UnknownImage
from .framing import FrameReader
from .magic import is_raw_name
from .source import ImageSource

__all__ = ["Entry", "Image", "read_image", "iter_entries"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Entry:
    """One decoded entry.

    ``msg`` is the protobuf message, ``offset`` the file offset of its size
    word; ``payload_offset``/``payload_size`` locate the extra bytes after it
    (size 0 when the kind has none) and ``payload`` holds them when read.
    """

    msg: Message
    offset: int
    payload_offset: int = 0
    payload_size: int = 0
    payload: bytes | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Image:
    """A protobuf image of ``src`` named ``name`` whose magic is ``magic_name``."""

    src: ImageSource
    name: str
    magic_name: str
    magic: int

    @property
    def message_class(self) -> type[Message]:
        return kinds.MESSAGES[self.magic_name]

    def entries(self, *, payloads: bool = True) -> Iterator[Entry]:
        """Every entry in file order.

        Raises ``TruncatedImage`` or ``ImageError`` at the first damaged
        byte (entries before it have been yielded; nothing after it is).
        """
        with self.src.open(self.name) as stream:
            reader = FrameReader(self.name, stream)
            reader.read_magic()
            yield from self._entries(reader, payloads)

    def _entries(self, reader: FrameReader, payloads: bool) -> Iterator[Entry]:
        if self.magic_name == "GHOST_FILE":
            yield from _ghost_entries(self, reader, payloads)
            return
        head = kinds.HEAD_MESSAGES.get(self.magic_name)
        cls = self.message_class
        size_of = kinds.PAYLOAD_SIZE.get(self.magic_name)
        while True:
            got = reader.read_message(head or cls)
            head = None
            if got is None:
                return
            offset, msg = got
            if self.magic_name == "IPCNS_MSG":
                yield _ipc_msg_entry(reader, offset, msg, payloads)
                continue
            size = size_of(msg) if size_of else 0
            yield _with_payload(reader, offset, msg, size, payloads)

    def read_payload(self, entry: Entry) -> bytes:
        """The extra bytes of ``entry`` (re-read from the file when not kept)."""
        if entry.payload is not None:
            return entry.payload
        with self.src.open(self.name) as stream:
            stream.seek(entry.payload_offset)
            reader = FrameReader(self.name, stream, entry.payload_offset)
            return reader.read_exact(entry.payload_size, "the entry's payload")


def _with_payload(reader: FrameReader, offset: int, msg: Message, size: int, keep: bool) -> Entry:
    start = reader.offset
    what = f"the payload of the entry at {offset}"
    if keep:
        data = reader.read_exact(size, what)
        return Entry(msg=msg, offset=offset, payload_offset=start, payload_size=size, payload=data)
    reader.skip(size, what)
    return Entry(msg=msg, offset=offset, payload_offset=start, payload_size=size)


def _ghost_entries(image: Image, reader: FrameReader, keep: bool) -> Iterator[Entry]:
    from ._pb import ghost_file_pb2

    got = reader.read_message(ghost_file_pb2.ghost_file_entry)
    if got is None:
        raise ImageError(image.name, "ghost file image has no ghost_file_entry", reader.offset)
    offset, head = got
    if not head.chunks:
        # The content runs to the end of the file.
        size = image.src.size(image.name) - reader.offset
        yield _with_payload(reader, offset, head, size, keep)
        return
    yield Entry(msg=head, offset=offset, payload_offset=reader.offset)
    while (got := reader.read_message(ghost_file_pb2.ghost_chunk_entry, "a ghost chunk")) is not None:
        offset, chunk = got
        yield _with_payload(reader, offset, chunk, chunk.len, keep)


def _ipc_msg_entry(reader: FrameReader, offset: int, msg: Message, keep: bool) -> Entry:
    """An ``ipc_msg_entry`` and its ``qnum`` messages, kept as one payload."""
    from ._pb import ipc_msg_pb2

    start = reader.offset
    parts: list[bytes] = []
    for i in range(msg.qnum):
        what = f"message {i} of the queue at {offset}"
        got = reader.read_sized(what)
        if got is None:
            raise TruncatedImage(reader.name, f"queue at {offset} holds {i} of {msg.qnum} messages", reader.offset)
        at, data = got
        m = reader.parse(ipc_msg_pb2.ipc_msg, data, at, what)
        body = reader.read_exact(kinds.round_up(m.msize, 8), f"the text of {what}")
        if keep:
            parts.append(len(data).to_bytes(4, "little") + data + body)
    size = reader.offset - start
    return Entry(msg=msg, offset=offset, payload_offset=start, payload_size=size,
                 payload=b"".join(parts) if keep else None)


def iter_entries(src: ImageSource, name: str, *, payloads: bool = True) -> Iterator[Entry]:
    """``read_image(src, name).entries(payloads=...)`` with the file opened once.

    Raises as both do, from the first ``next()``.
    """
    _refuse_raw(name)
    with src.open(name) as stream:
        reader = FrameReader(name, stream)
        magic_name, value = reader.read_magic()
        yield from _known(src, name, magic_name, value)._entries(reader, payloads)


def _refuse_raw(name: str) -> None:
    if is_raw_name(name):
        raise UnknownImage(name, "a raw image (no magic, no entries); read it as bytes")


def _known(src: ImageSource, name: str, magic_name: str, value: int) -> Image:
    if magic_name not in kinds.MESSAGES:
        raise UnknownImage(name, f"magic {magic_name} has no entry schema here")
    return Image(src=src, name=name, magic_name=magic_name, magic=value)


def read_image(src: ImageSource, name: str) -> Image:
    """The image ``name`` of ``src``, its magic checked.

    Raises ``MissingImage`` (no such file), ``UnknownImage`` (a raw image,
    or a magic with no entry schema), ``UnknownMagic``, ``TruncatedImage``.
    """
    _refuse_raw(name)
    with src.open(name) as stream:
        magic_name, value = FrameReader(name, stream).read_magic()
    return _known(src, name, magic_name, value)
