"""OCI image layouts (image-spec "Image Layout"), as a directory or as one tar of it.

The names are the containers-transports syntax skopeo and podman use:
``oci:DIR[:TAG]`` is a directory holding ``oci-layout``, ``index.json`` and
``blobs/sha256/<hex>``; ``oci-archive:FILE[:TAG]`` is that directory as one
uncompressed tar. ``TAG`` is the ``org.opencontainers.image.ref.name``
annotation of the manifest's entry in ``index.json``.

Generic, no checkpoint knowledge (that is :mod:`runtime.cr.ociimage`).
A writer streams a big blob through a hashing writer into a temporary name
and renames it to its digest (in a tar: its header is written last, over a
placeholder of the same size), so the blob is written once. A reader
trusts nothing: every blob it hands out has had its size and digest
checked against the descriptor that named it (ArchiveError naming the blob).
"""

from __future__ import annotations

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
           "ImageRef", "Descriptor", "Image", "parse_reference", "open_writer", "open_reader", "HashingWriter"]

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
_DIGEST = re.compile(r"sha256:([0-9a-f]{64})")


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


@dataclass(frozen=True, kw_only=True)
class Image:
    """One image read from a layout: its manifest (digest-checked) and config (digest-checked)."""

    ref: ImageRef
    manifest: Descriptor
    annotations: dict[str, str]
    config: dict[str, Any]
    layers: tuple[Descriptor, ...]


def _descriptor(ref: ImageRef, where: str, data: Any) -> Descriptor:
    """A descriptor read from an untrusted document; ArchiveError naming ``where`` if malformed."""
    if not isinstance(data, dict):
        raise ArchiveError(str(ref), where, "holds a descriptor that is not a JSON object")
    digest, size, media = data.get("digest"), data.get("size"), data.get("mediaType")
    if not isinstance(digest, str) or not _DIGEST.fullmatch(digest):
        raise ArchiveError(str(ref), where, f"names a blob by an unsupported digest {digest!r} (sha256 only)")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise ArchiveError(str(ref), where, f"gives blob {digest} an invalid size {size!r}")
    annotations = data.get("annotations") or {}
    if not isinstance(media, str) or not isinstance(annotations, dict):
        raise ArchiveError(str(ref), where, f"gives blob {digest} no media type")
    return Descriptor(media_type=media, digest=digest, size=size,
                      annotations={str(k): str(v) for k, v in annotations.items()})


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
        kept: list[Any] = []
        if os.path.exists(index_path):
            with open(index_path, "rb") as f:
                old = json.loads(f.read(SMALL_LIMIT))
            # the tag moves to the new image (as skopeo does); untagged entries go when writing untagged
            kept = [m for m in old.get("manifests") or []
                    if (m.get("annotations") or {}).get(REF_NAME, "") not in (self.ref.tag, "")]
        _write_small(index_path, _index(kept, manifest))
        _fsync_dir(self._blobs)
        _fsync_dir(self.ref.path)


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
    """A writer of ``ref``: ``put``/``stream`` blobs, then ``finish(manifest)``; a _TarWriter
    must be ``abort()``ed on failure (a directory keeps only whole blobs, under their digests)."""
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


# -- reading ----------------------------------------------------------------------------

class _Reader:
    """Reads a layout's files; every blob through :meth:`blob_file`, which checks size and digest."""

    def __init__(self, ref: ImageRef) -> None:
        self.ref = ref
        self._tar: tarfile.TarFile | None = None
        self._members: dict[str, tarfile.TarInfo] = {}
        if ref.transport == "oci-archive":
            try:
                self._tar = tarfile.open(ref.path, "r:")
                for m in self._tar:  # names only; contents are read on demand and checked
                    name = m.name.removeprefix("./")
                    if m.isfile():
                        if name in self._members:
                            raise ArchiveError(str(ref), name, "appears twice (a duplicate member)")
                        self._members[name] = m
            except tarfile.TarError as exc:
                raise ArchiveError(str(ref), "", f"is not a readable tar ({exc})") from exc
        elif not os.path.isdir(ref.path):
            raise ArchiveError(str(ref), "", "is not a directory (an OCI image layout)")

    def close(self) -> None:
        if self._tar is not None:
            self._tar.close()

    def __enter__(self) -> "_Reader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _open(self, name: str) -> IO[bytes]:
        if self._tar is not None:
            member = self._members.get(name)
            f = self._tar.extractfile(member) if member else None
            if f is None:
                raise ArchiveError(str(self.ref), name, "is missing")
            return f
        try:
            fd = os.open(os.path.join(self.ref.path, name), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            raise ArchiveError(str(self.ref), name, "is missing") from None
        except OSError as exc:
            raise ArchiveError(str(self.ref), name, f"cannot be read ({exc.strerror})") from exc
        return os.fdopen(fd, "rb", buffering=CHUNK)

    def _small_json(self, name: str) -> dict[str, Any]:
        with self._open(name) as f:
            raw = f.read(SMALL_LIMIT + 1)
        return _parse(self.ref, name, raw)

    def _small_blob(self, desc: Descriptor) -> dict[str, Any]:
        if desc.size > SMALL_LIMIT:
            raise ArchiveError(str(self.ref), desc.blob, f"claims {desc.size} bytes: too big for a {desc.media_type}")
        sink = io.BytesIO()
        self.blob_file(desc, sink)
        return _parse(self.ref, desc.blob, sink.getvalue())

    def blob_file(self, desc: Descriptor, out: IO[bytes] | None = None) -> str:
        """Check the blob of ``desc`` (size, digest), copying it into ``out`` if given; its path
        when it is a file of its own (a directory layout), else "". Raises ArchiveError."""
        sha, size = hashlib.sha256(), 0
        with self._open(desc.blob) as f:
            while data := f.read(CHUNK):
                sha.update(data)
                size += len(data)
                if size > desc.size:
                    break
                if out is not None:
                    out.write(data)
        if size != desc.size:
            raise ArchiveError(str(self.ref), desc.blob, f"has {'more than ' if size > desc.size else ''}{size} "
                               f"bytes, its descriptor says {desc.size}",
                               hint="the image was damaged or changed after it was written")
        if f"sha256:{sha.hexdigest()}" != desc.digest:
            raise ArchiveError(str(self.ref), desc.blob, f"does not match its digest (its content hashes to "
                               f"sha256:{sha.hexdigest()})", hint="the image was damaged or changed after it was written")
        return "" if self._tar is not None else os.path.join(self.ref.path, desc.blob)

    def image(self) -> Image:
        """The manifest the reference's tag names (without a tag: the only one), and its config."""
        layout = self._small_json(LAYOUT_FILE)
        if layout.get("imageLayoutVersion") != LAYOUT_VERSION:
            raise ArchiveError(str(self.ref), LAYOUT_FILE, f"has layout version {layout.get('imageLayoutVersion')!r}")
        entries = self._small_json(INDEX_FILE).get("manifests")
        if not isinstance(entries, list):
            raise ArchiveError(str(self.ref), INDEX_FILE, "has no manifests list")
        found = [_descriptor(self.ref, INDEX_FILE, e) for e in entries]
        tags = sorted(d.annotations.get(REF_NAME, "") for d in found)
        chosen = [d for d in found if d.annotations.get(REF_NAME, "") == self.ref.tag] if self.ref.tag else found
        if len(chosen) != 1:
            what = f"no image tagged {self.ref.tag!r}" if self.ref.tag else f"{len(found)} images, and no tag was given"
            raise ArchiveError(str(self.ref), INDEX_FILE, f"holds {what}",
                               hint=f"its tags: {', '.join(t or '(untagged)' for t in tags) or 'none'}")
        desc = chosen[0]
        if desc.media_type != MEDIA_MANIFEST:
            raise ArchiveError(str(self.ref), INDEX_FILE, f"names a {desc.media_type}, not an image manifest")
        manifest = self._small_blob(desc)
        config_desc = _descriptor(self.ref, desc.blob, manifest.get("config"))
        if config_desc.media_type != MEDIA_CONFIG:
            raise ArchiveError(str(self.ref), desc.blob, f"has a config of type {config_desc.media_type}")
        layers = manifest.get("layers")
        if not isinstance(layers, list):
            raise ArchiveError(str(self.ref), desc.blob, "has no layers list")
        annotations = manifest.get("annotations") or {}
        return Image(ref=self.ref, manifest=desc, config=self._small_blob(config_desc),
                     layers=tuple(_descriptor(self.ref, desc.blob, x) for x in layers),
                     annotations={str(k): str(v) for k, v in dict(annotations).items()})


def open_reader(ref: ImageRef) -> _Reader:
    """A reader of the layout ``ref`` names (a context manager). Raises ArchiveError."""
    return _Reader(ref)


def _parse(ref: ImageRef, name: str, raw: bytes) -> dict[str, Any]:
    if len(raw) > SMALL_LIMIT:
        raise ArchiveError(str(ref), name, f"has more than {SMALL_LIMIT} bytes: not a layout document")
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise ArchiveError(str(ref), name, f"is not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise ArchiveError(str(ref), name, "is not a JSON object")
    return data
