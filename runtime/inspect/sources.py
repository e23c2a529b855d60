"""Where a checkpoint to inspect comes from: SOURCE resolved to the files of one image directory.

SOURCE is, in this order:

* ``oci:DIR[:TAG]`` or ``oci-archive:FILE[:TAG]``: the layer of a checkpoint image;
* a directory: CRIU's images (``inventory.img``), or an unpacked archive (``checkpoint/`` in it);
* a file: an export archive (podman's layout, zstd/gzip/none);
* a container id in the state root: its newest checkpoint.

Every form gives a :class:`Source`: ``criu_image``'s ``ImageSource`` protocol (``names``,
``open``, ``exists``, ``size``; names as in an image directory) plus the
members an archive keeps beside the images (``spec.dump``, ``config.dump``)
through :meth:`Source.beside`. Nothing is unpacked to disk. An uncompressed
tar is indexed once and its members read in place (``pread`` at the member's
offset); a compressed one is decompressed once to index it, keeping the small
members in memory and the last MiB of each larger one (a pages file ends with
the stack, where the command line is), and the rest of a large member (the
pages) is read through one shared decompressed stream: reads that go forward
continue it, one that goes back starts it over (:meth:`Source.position`
tells the order that reads it once).
"""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import IO, BinaryIO

from criu_image import MissingImage
from runtime.cr import archive
from runtime.cr.compression import CHUNK, STREAM_ERRORS, decompressor, detect_compression
from runtime.errors import ArchiveError, InspectError
from runtime.inspect.members import Cursor, Hashing, restream, window

__all__ = ["Source", "open_source", "SMALL_MEMBER"]

SMALL_MEMBER = 16 << 20  # members up to this size are kept in memory when a compressed archive is indexed
INVENTORY = "inventory.img"
TAIL = 1 << 20  # the end of each large member of a compressed archive, kept while it is indexed


@dataclass(kw_only=True)
class Source:
    """A checkpoint's files, by their names in an image directory. Close it (a context manager).

    ``kind``: "directory", "archive", "oci" or "container"; ``label``: what
    the user gave; ``where``: the image directory or archive file read;
    ``streamed``: large members are read from a compressed stream (reading
    pages costs a decompression up to them; see :meth:`position`).
    """

    kind: str
    label: str
    where: str
    streamed: bool = False
    _files: dict[str, Callable[[], BinaryIO]] = field(default_factory=dict, repr=False)
    _sizes: dict[str, int] = field(default_factory=dict, repr=False)
    _beside: dict[str, Callable[[], BinaryIO]] = field(default_factory=dict, repr=False)
    _closers: list[Callable[[], None]] = field(default_factory=list, repr=False)
    _positions: dict[str, int] = field(default_factory=dict, repr=False)

    def names(self) -> list[str]:
        return sorted(self._files)

    def exists(self, name: str) -> bool:
        return name in self._files

    def size(self, name: str) -> int:
        """Raises criu_image.MissingImage for a file the checkpoint does not hold."""
        if name not in self._sizes:
            raise MissingImage(name, f"no such file in {self.where}")
        return self._sizes[name]

    def open(self, name: str) -> BinaryIO:
        """A binary reader of file ``name`` (seekable). Raises criu_image.MissingImage."""
        if name not in self._files:
            raise MissingImage(name, f"no such file in {self.where}")
        return self._files[name]()

    def position(self, name: str) -> int:
        """Where file ``name`` lies in the archive (0 in a directory): reading files in this order
        decompresses a compressed archive once."""
        return self._positions.get(name, 0)

    def read(self, name: str, limit: int = SMALL_MEMBER) -> bytes | None:
        """A small file's bytes (None: not there). Raises InspectError beyond ``limit``."""
        if name not in self._files:
            return None
        if self._sizes[name] > limit:
            raise InspectError(self.label, f"{name} has {self._sizes[name]} bytes; more than {limit} is not plausible")
        with self.open(name) as f:
            return f.read()

    def beside(self, name: str, limit: int = SMALL_MEMBER) -> bytes | None:
        """A member beside the images (``spec.dump``, ``config.dump``...); None when there is none."""
        opener = self._beside.get(name)
        if opener is None:
            return None
        with opener() as f:
            data = f.read(limit + 1)
        if len(data) > limit:
            raise InspectError(self.label, f"{name} has more than {limit} bytes")
        return data

    def close(self) -> None:
        while self._closers:
            self._closers.pop()()

    def __enter__(self) -> "Source":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_source(text: str, *, root: str | None = None) -> Source:
    """The checkpoint ``text`` names (see the module's doc). Raises InspectError, ArchiveError."""
    from runtime.cr.ocilayout import parse_reference

    try:
        ref = parse_reference(text)
    except ValueError as exc:
        raise InspectError(text, str(exc)) from exc
    if ref is not None:
        return _oci_source(text, ref)
    if os.path.isdir(text):
        return _directory_source(text, text)
    if os.path.isfile(text):
        fd = _open_fd(text, text)
        return _tar_source(text, text, "archive", fd, 0, os.fstat(fd).st_size, owns_fd=True)
    return _container_source(text, root)


def _open_fd(label: str, path: str) -> int:
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise InspectError(label, f"cannot open {path}: {exc.strerror or exc}") from exc


# -- directories -------------------------------------------------------------------------

def _directory_source(label: str, path: str, kind: str = "directory") -> Source:
    images, beside_dir = path, None
    if not os.path.exists(os.path.join(path, INVENTORY)) and os.path.isdir(os.path.join(path, archive.CHECKPOINT_DIR)):
        images, beside_dir = os.path.join(path, archive.CHECKPOINT_DIR), path  # an unpacked archive
    if not os.path.exists(os.path.join(images, INVENTORY)):
        raise InspectError(label, f"{path} is not a checkpoint (no {INVENTORY})",
                           hint="give an image directory, an export archive, oci:DIR:TAG or a container id")
    src = Source(kind=kind, label=label, where=images)
    with os.scandir(images) as it:
        for e in it:
            if e.is_file(follow_symlinks=False) and not e.name.startswith("."):
                src._files[e.name] = _file_opener(e.path)
                src._sizes[e.name] = e.stat(follow_symlinks=False).st_size
    if beside_dir:
        with os.scandir(beside_dir) as it:
            for e in it:
                if not e.is_file(follow_symlinks=False):
                    continue
                if archive.image_file(e.name):
                    src._files.setdefault(e.name, _file_opener(e.path))
                    src._sizes.setdefault(e.name, e.stat(follow_symlinks=False).st_size)
                else:
                    src._beside[e.name] = _file_opener(e.path)
    return src


def _file_opener(path: str) -> Callable[[], BinaryIO]:
    return lambda: open(path, "rb", buffering=CHUNK)  # type: ignore[return-value]


def _container_source(text: str, root: str | None) -> Source:
    from runtime.container.state import StateStore, validate_id
    from runtime.cr.layout import DEFAULT_IMAGE_DIR

    store = StateStore(root)
    try:
        cid = validate_id(text)
    except ValueError:
        cid = ""
    if not cid or not store.exists(cid):
        raise InspectError(text, "is no image directory, archive, OCI image (oci:DIR:TAG) or container "
                           f"(state root {store.root})")
    st = store.read(cid)
    image_dir = (st.extra.get("checkpoint") or {}).get("image_dir") or store.path(cid, DEFAULT_IMAGE_DIR)
    if not os.path.isdir(image_dir):
        raise InspectError(text, f"container {cid!r} has no checkpoint ({image_dir} does not exist)")
    return _directory_source(text, image_dir, kind="container")


# -- tars --------------------------------------------------------------------------------

def _tar_source(label: str, where: str, kind: str, fd: int, start: int, size: int, *, owns_fd: bool,
                digest: str = "") -> Source:
    """Index the tar (maybe compressed) at bytes ``start..start+size`` of ``fd``."""
    src = Source(kind=kind, label=label, where=where)
    if owns_fd:
        src._closers.append(lambda: os.close(fd))
    try:
        head = os.pread(fd, 4, start)
        compression = detect_compression(head)
        if compression == "none":
            _index_plain(src, fd, start, size)
        else:
            src.streamed = True
            _index_stream(src, fd, start, size, compression, digest)
    except ArchiveError:
        src.close()
        raise
    except (tarfile.TarError, *STREAM_ERRORS, OSError) as exc:
        src.close()
        if isinstance(exc, OSError) and exc.errno is not None:
            raise InspectError(label, f"cannot read {where}: {exc.strerror}") from exc
        raise ArchiveError(where, "", f"is corrupt or truncated ({exc})") from exc
    if INVENTORY not in src._files:
        src.close()
        raise ArchiveError(where, f"{archive.CHECKPOINT_DIR}/{INVENTORY}", "is missing: this is not a checkpoint archive")
    return src


def _members(where: str, tar: Iterable[tarfile.TarInfo]) -> Iterable[tuple[tarfile.TarInfo, str]]:
    """The archive's regular files, refused as an import refuses them."""
    seen: list[str] = []
    for m in tar:
        name = archive.check_member(where, m, seen)
        seen.append(name)
        if m.isreg():
            yield m, name


def _place(src: Source, name: str, size: int, opener: Callable[[], BinaryIO]) -> None:
    image = archive.image_file(name)
    if image is not None:
        src._files[image], src._sizes[image] = opener, size
    else:
        src._beside[name] = opener


def _mark(src: Source, name: str, offset: int) -> None:
    image = archive.image_file(name)
    if image is not None:
        src._positions[image] = offset


def _index_plain(src: Source, fd: int, start: int, size: int) -> None:
    with tarfile.open(fileobj=window(fd, start, size), mode="r:") as tar:
        for m, name in _members(src.where, tar):
            if m.offset_data + m.size > size:
                raise ArchiveError(src.where, name, "is truncated (the archive ends inside it)")
            _place(src, name, m.size, lambda o=start + m.offset_data, n=m.size: window(fd, o, n))
            _mark(src, name, m.offset_data)


def _tail(f: IO[bytes] | None, size: int) -> bytes:
    """Read a member through, keeping its last :data:`TAIL` bytes: a pages file ends with its
    process's stack, where the command line and environment are (the tree needs no other page)."""
    keep = b""
    left = size
    while f is not None and left:
        data = f.read(min(CHUNK, left))
        if not data:
            break
        left -= len(data)
        keep = (keep + data)[-TAIL:] if len(data) < TAIL else data[-TAIL:]
    return keep


def _index_stream(src: Source, fd: int, start: int, size: int, compression: str, digest: str) -> None:
    def plain() -> IO[bytes]:
        return decompressor(window(fd, start, size), compression)  # type: ignore[no-any-return]

    cursor = Cursor(plain)
    src._closers.append(cursor.close)

    sha = hashlib.sha256()
    raw = window(fd, start, size)
    stream = decompressor(io.BufferedReader(Hashing(raw, sha), CHUNK), compression)
    with tarfile.open(fileobj=stream, mode="r|", bufsize=CHUNK) as tar:
        for m, name in _members(src.where, tar):
            if m.size <= SMALL_MEMBER:
                f = tar.extractfile(m)
                data = f.read() if f else b""
                if len(data) != m.size:
                    raise ArchiveError(src.where, name, "is truncated (the archive ends inside it)")
                _place(src, name, m.size, lambda d=data: io.BytesIO(d))  # type: ignore[misc]
            else:
                tail = _tail(tar.extractfile(m), m.size)
                _place(src, name, m.size, lambda o=m.offset_data, n=m.size, t=tail: restream(cursor, o, n, t))
            _mark(src, name, m.offset_data)
    if digest:
        while raw.read(CHUNK):  # what follows the tar's end still counts in the blob's digest
            pass
        got = f"sha256:{sha.hexdigest()}"
        if got != digest:
            raise ArchiveError(src.where, "", f"does not match its digest (its content hashes to {got})",
                               hint="the image was damaged or changed after it was written")


# -- OCI images --------------------------------------------------------------------------

def _oci_source(text: str, ref: object) -> Source:
    from runtime.cr.ociimage import checkpoint_layer
    from runtime.cr.ocireader import open_reader

    with open_reader(ref) as reader:  # type: ignore[arg-type]
        layer = checkpoint_layer(reader.image())
        if reader.is_directory:
            path = reader.blob_path(layer)
            fd = _open_fd(text, path)
            start = 0
        else:  # oci-archive: the blob is a member of the (plain) outer tar
            member = reader._members.get(layer.blob)  # noqa: SLF001 - the reader's own index
            if member is None:
                raise ArchiveError(str(ref), layer.blob, "is missing")
            fd, start = _open_fd(text, reader.ref.path), member.offset_data
    if os.fstat(fd).st_size - start < layer.size:
        os.close(fd)
        raise ArchiveError(str(ref), layer.blob, f"is shorter than its descriptor's {layer.size} bytes")
    # The digest is checked when the layer is decompressed anyway (a compressed layer); a plain
    # layer is read in place, and only its size is checked (hashing it would read every page).
    return _tar_source(text, f"{ref}", "oci", fd, start, layer.size, owns_fd=True, digest=layer.digest)
