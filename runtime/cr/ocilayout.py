"""OCI image layouts (image-spec "Image Layout"), as a directory or as one tar of it.

The names are the containers-transports syntax skopeo and podman use:
``oci:DIR[:TAG]`` is a directory holding ``oci-layout``, ``index.json`` and
``blobs/sha256/<hex>``; ``oci-archive:FILE[:TAG]`` is that directory as one
uncompressed tar. ``TAG`` is the ``org.opencontainers.image.ref.name``
annotation of the manifest's entry in ``index.json``.

Generic, no checkpoint knowledge (that is :mod:`runtime.cr.ociimage`).
A writer streams a big blob through a hashing writer into a temporary name
and renames it to its digest (in a tar: its header is written last, over a
placeholder of the same size), so the blob is written once. Reading is
:mod:`runtime.cr.ocireader`.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import os
import re
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Any

from runtime.cr.compression import CHUNK
from runtime.errors import ArchiveError
from runtime.linux.fsmode import DIR_MODE, FILE_MODE

__all__ = ["TRANSPORTS", "MEDIA_INDEX", "MEDIA_MANIFEST", "MEDIA_CONFIG", "LAYER_MEDIA_TYPES", "REF_NAME",
           "ImageRef", "Descriptor", "parse_reference", "open_writer", "HashingWriter"]

TRANSPORTS = ("oci", "oci-archive")
MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER_MEDIA_TYPES = {"none": "application/vnd.oci.image.layer.v1.tar",
                     "gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
                     "zstd": "application/vnd.oci.image.layer.v1.tar+zstd"}
REF_NAME = "org.opencontainers.image.ref.name"
LAYOUT_FILE = "oci-layout"
INDEX_FILE = "index.json"
LAYOUT_VERSION = "1.0.0"
BLOBS = "blobs/sha256"
SMALL_LIMIT = 4 << 20  # index.json, manifests, configs: JSON documents, never this big
_TAG = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@/+-]*")  # the image-spec's ref.name characters


@dataclass(frozen=True, slots=True, kw_only=True)
class ImageRef:
    """``oci:DIR[:TAG]`` or ``oci-archive:FILE[:TAG]``; ``path`` absolute, ``tag`` "" when not given."""

    transport: str
    path: str
    tag: str = ""

    def __str__(self) -> str:
        return f"{self.transport}:{self.path}" + (f":{self.tag}" if self.tag else "")


def parse_reference(text: str) -> ImageRef | None:
    """The image named by ``text``, or None when it names no image (a plain archive path). Pure but for abspath.

    As in containers-transports, the path ends at its first ``:``; the rest
    is the tag (which may itself hold ``:``, e.g. ``localhost/app:v1``).
    Raises ValueError for an empty path or a tag the image-spec does not allow.
    """
    transport, sep, rest = text.partition(":")
    if not sep or transport not in TRANSPORTS:
        return None
    path, _, tag = rest.partition(":")
    if not path:
        raise ValueError(f"{text!r}: {transport}: needs a path ({transport}:PATH[:TAG])")
    if tag and not _TAG.fullmatch(tag):
        raise ValueError(f"{text!r}: {tag!r} is not a valid image tag (letters, digits and ._:@/+-)")
    return ImageRef(transport=transport, path=os.path.abspath(path), tag=tag)


@dataclass(frozen=True, slots=True, kw_only=True)
class Descriptor:
    """An image-spec content descriptor."""

    media_type: str
    digest: str
    size: int
    annotations: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.annotations:
            d["annotations"] = dict(self.annotations)
        return d

    @property
    def blob(self) -> str:
        """The blob's name in the layout (``blobs/sha256/<hex>``)."""
        return f"{BLOBS}/{self.digest.split(':', 1)[1]}"


class HashingWriter(io.RawIOBase):
    """Writes through to ``raw`` and keeps the sha256 and the size of what went through."""

    def __init__(self, raw: IO[bytes]) -> None:
        super().__init__()
        self._raw = raw
        self._sha = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        self._sha.update(b)
        self._raw.write(b)
        n = memoryview(b).nbytes
        self.size += n
        return n

    @property
    def digest(self) -> str:
        return f"sha256:{self._sha.hexdigest()}"


def _json(data: object) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":")).encode()


def _create_private(path: str) -> IO[bytes]:
    try:
        os.unlink(path)  # a stale one of a killed writer with our pid
    except FileNotFoundError:
        pass
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, FILE_MODE)
    os.fchmod(fd, FILE_MODE)  # whatever the umask: a checkpoint's pages hold secrets
    return os.fdopen(fd, "w+b", buffering=CHUNK)


# -- writing ----------------------------------------------------------------------------

class _DirWriter:
    """``oci:DIR``: blobs as files, index.json rewritten atomically (other tags kept)."""

    def __init__(self, ref: ImageRef) -> None:
        self.ref = ref
        self._blobs = os.path.join(ref.path, BLOBS)
        if os.path.isdir(ref.path) and os.listdir(ref.path):
            layout = os.path.join(ref.path, LAYOUT_FILE)
            try:
                with open(layout, "rb") as f:
                    version = json.loads(f.read(SMALL_LIMIT)).get("imageLayoutVersion")
            except (OSError, ValueError, AttributeError):
                raise ArchiveError(str(ref), "", "is a directory that is not an OCI image layout "
                                   "(no readable oci-layout): refusing to write into it") from None
            if version != LAYOUT_VERSION:
                raise ArchiveError(str(ref), LAYOUT_FILE, f"has layout version {version!r}, not {LAYOUT_VERSION}")
        os.makedirs(self._blobs, DIR_MODE, exist_ok=True)

    def put(self, media_type: str, data: bytes) -> Descriptor:
        return self.stream(media_type, lambda out: out.write(data))

    def stream(self, media_type: str, fill: Callable[[IO[bytes]], object]) -> Descriptor:
        tmp = os.path.join(self._blobs, f".tmp-{os.getpid()}")
        try:
            with _create_private(tmp) as raw:
                out = HashingWriter(raw)
                fill(out)
                raw.flush()
                os.fsync(raw.fileno())
            desc = Descriptor(media_type=media_type, digest=out.digest, size=out.size)
            os.replace(tmp, os.path.join(self.ref.path, desc.blob))  # same digest: same bytes
        except BaseException:
            _unlink(tmp)
            raise
        return desc

    def finish(self, manifest: Descriptor) -> None:
        _write_small(os.path.join(self.ref.path, LAYOUT_FILE), _json({"imageLayoutVersion": LAYOUT_VERSION}))
        index_path = os.path.join(self.ref.path, INDEX_FILE)
        # Two checkpoints written into one layout at once: each keeps the other's tag.
        lock = os.open(self.ref.path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            self._write_index(index_path, manifest)
        finally:
            os.close(lock)
        _fsync_dir(self._blobs)
        _fsync_dir(self.ref.path)

    def _write_index(self, index_path: str, manifest: Descriptor) -> None:
        kept: list[Any] = []
        if os.path.exists(index_path):
            with open(index_path, "rb") as f:
                old = json.loads(f.read(SMALL_LIMIT))
            entries = old.get("manifests") if isinstance(old, dict) else None
            if not isinstance(entries, list) or not all(isinstance(m, dict) for m in entries):
                raise ArchiveError(str(self.ref), INDEX_FILE, "is not an image index: refusing to rewrite it")
            # the tag moves to the new image (as skopeo does); untagged entries go when writing untagged
            kept = [m for m in entries if (m.get("annotations") or {}).get(REF_NAME, "") not in (self.ref.tag, "")]
        _write_small(index_path, _index(kept, manifest))

    def abort(self) -> None:
        """Nothing to undo: only whole blobs, under their digests, were written (an unreferenced
        one is garbage a later image may share, as in any layout)."""


class _TarWriter:
    """``oci-archive:FILE``: the layout as one tar, written to a temporary name and renamed."""

    def __init__(self, ref: ImageRef) -> None:
        self.ref = ref
        self._tmp = f"{ref.path}.tmp-{os.getpid()}"
        self._f = _create_private(self._tmp)
        for d in ("blobs", BLOBS):
            ti = tarfile.TarInfo(d)
            ti.type, ti.mode = tarfile.DIRTYPE, DIR_MODE
            self._f.write(ti.tobuf(tarfile.GNU_FORMAT))

    def put(self, media_type: str, data: bytes) -> Descriptor:
        return self.stream(media_type, lambda out: out.write(data))

    def stream(self, media_type: str, fill: Callable[[IO[bytes]], object]) -> Descriptor:
        # The member's name and size are known only at its end: a placeholder header of the same
        # length (a 77-character name fits one GNU block; big sizes use its base-256 field) is
        # overwritten then, so the blob is written once.
        header_at = self._f.tell()
        self._f.write(self._header(f"{BLOBS}/{'0' * 64}", 0))
        out = HashingWriter(self._f)
        fill(out)
        self._pad(out.size)
        end = self._f.tell()
        desc = Descriptor(media_type=media_type, digest=out.digest, size=out.size)
        self._f.seek(header_at)
        self._f.write(self._header(desc.blob, desc.size))
        self._f.seek(end)
        return desc

    def _header(self, name: str, size: int) -> bytes:
        ti = tarfile.TarInfo(name)
        ti.size, ti.mode = size, FILE_MODE
        buf = ti.tobuf(tarfile.GNU_FORMAT)
        assert len(buf) == tarfile.BLOCKSIZE
        return buf

    def _pad(self, size: int) -> None:
        self._f.write(b"\0" * (-size % tarfile.BLOCKSIZE))

    def _member(self, name: str, data: bytes) -> None:
        self._f.write(self._header(name, len(data)))
        self._f.write(data)
        self._pad(len(data))

    def finish(self, manifest: Descriptor) -> None:
        self._member(LAYOUT_FILE, _json({"imageLayoutVersion": LAYOUT_VERSION}))
        self._member(INDEX_FILE, _index([], manifest))
        self._f.write(b"\0" * (2 * tarfile.BLOCKSIZE))
        self._pad(self._f.tell())
        self._f.flush()
        os.fsync(self._f.fileno())
        self._f.close()
        os.replace(self._tmp, self.ref.path)
        _fsync_dir(os.path.dirname(self.ref.path))

    def abort(self) -> None:
        self._f.close()
        _unlink(self._tmp)


def _index(kept: list[Any], manifest: Descriptor) -> bytes:
    return _json({"schemaVersion": 2, "mediaType": MEDIA_INDEX, "manifests": [*kept, manifest.to_dict()]})


def open_writer(ref: ImageRef) -> _DirWriter | _TarWriter:
    """A writer of ``ref``: ``put``/``stream`` blobs, then ``finish(manifest)``, or ``abort()``."""
    return _DirWriter(ref) if ref.transport == "oci" else _TarWriter(ref)


def _write_small(path: str, data: bytes) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with _create_private(tmp) as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        _unlink(tmp)
        raise


def _fsync_dir(path: str) -> None:
    fd = os.open(path or ".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
