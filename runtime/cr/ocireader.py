"""Reading an OCI image layout (``oci:DIR[:TAG]``, ``oci-archive:FILE[:TAG]``; see :mod:`runtime.cr.ocilayout`).

Nothing in a layout is trusted: every document is size-capped and parsed
with checks; every blob handed out has had its size and sha256 digest
checked against the descriptor that named it first (ArchiveError naming
``blobs/sha256/<hex>``). Nested indexes and other digests than sha256 are
refused.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tarfile
from dataclasses import dataclass
from typing import IO, Any

from runtime.cr.compression import CHUNK
from runtime.cr.ocilayout import (INDEX_FILE, LAYOUT_FILE, LAYOUT_VERSION, MEDIA_CONFIG, MEDIA_MANIFEST, REF_NAME,
                                  SMALL_LIMIT, Descriptor, ImageRef)
from runtime.errors import ArchiveError

__all__ = ["Image", "OciReader", "open_reader"]

_DIGEST = re.compile(r"sha256:([0-9a-f]{64})")


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


class OciReader:
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
            except OSError as exc:
                raise ArchiveError(str(ref), "", f"cannot be read ({exc.strerror or exc})") from exc
        elif not os.path.isdir(ref.path):
            raise ArchiveError(str(ref), "", "is not a directory (an OCI image layout)")

    def close(self) -> None:
        if self._tar is not None:
            self._tar.close()

    def __enter__(self) -> "OciReader":
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

    @property
    def is_directory(self) -> bool:
        """An ``oci:DIR`` layout: its blobs are files of their own (:meth:`blob_path`)."""
        return self._tar is None

    def blob_path(self, desc: Descriptor) -> str:
        """The file of ``desc``'s blob in a directory layout (unchecked: see :meth:`blob_file`)."""
        assert self._tar is None
        return os.path.join(self.ref.path, desc.blob)

    def blob_file(self, desc: Descriptor, out: IO[bytes] | None = None) -> None:
        """Check the blob of ``desc`` (size, digest), copying it into ``out`` if given. Raises ArchiveError."""
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
        if not isinstance(annotations, dict):
            raise ArchiveError(str(self.ref), desc.blob, "has annotations that are not a JSON object")
        return Image(ref=self.ref, manifest=desc, config=self._small_blob(config_desc),
                     layers=tuple(_descriptor(self.ref, desc.blob, x) for x in layers),
                     annotations={str(k): str(v) for k, v in annotations.items()})


def open_reader(ref: ImageRef) -> OciReader:
    """A reader of the layout ``ref`` names (a context manager). Raises ArchiveError."""
    return OciReader(ref)


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
