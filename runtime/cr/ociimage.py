"""Checkpoints as OCI images, the form Kubernetes (CRI-O) restores from (issue 9).

``checkpoint --create-image oci:DIR[:TAG]`` (or ``oci-archive:FILE[:TAG]``)
writes an image of one layer whose tar holds, at its root, exactly the
members of the export archive (:mod:`runtime.cr.archive` writes them:
``checkpoint/``, ``spec.dump``, ``config.dump``, ...). The layer is written
once: the tar goes through a hash of itself (the config's ``diff_id``), the
compressor and a hash of the compressed bytes (the layer's digest) into a
temporary name renamed to that digest.

The manifest carries the annotations the engines look for:
``io.kubernetes.cri-o.annotations.checkpoint.*`` (CRI-O's
``pkg/annotations``: CRI-O restores a container from an image whose status
has ``...checkpoint.name``) and ``org.criu.checkpoint.*`` (checkpointctl's
``lib/metadata`` names, which its ``build`` command and newer engines
write). ``criu.version`` is CRIU's version as one number
(major*10000 + minor*100 + sublevel), as podman and CRI-O write it.

``restore --import oci:DIR[:TAG]`` checks the layout (index.json ->
manifest -> config and layer, every size and sha256 digest) and unpacks the
layer through :func:`runtime.cr.archive.read_archive`, with all of its
refusals of a hostile archive.
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import IO, Any

from runtime._version import __version__
from runtime.container.state import ContainerState, StateStore
from runtime.cr import archive
from runtime.cr.compression import compressor
from runtime.cr.ocilayout import (LAYER_MEDIA_TYPES, MEDIA_CONFIG, MEDIA_MANIFEST, REF_NAME, Descriptor, HashingWriter,
                                  ImageRef, open_writer)
from runtime.cr.ocireader import Image, OciReader, open_reader
from runtime.cr.options import CheckpointOptions
from runtime.errors import ArchiveError
from runtime.linux import mounts
from runtime.linux.fsmode import FILE_MODE

__all__ = ["CRIO", "CRIU", "HostFacts", "host_facts", "checkpoint_annotations", "write_image", "read_image", "checkpoint_layer",
           "create_checkpoint_image", "ENGINE_VERSION"]

ENGINE_VERSION = __version__
CRIO = "io.kubernetes.cri-o.annotations.checkpoint."  # + name, rawImageName, rootfsImageID, ...
CRIU = "org.criu.checkpoint."  # + container.name, engine.name, rootfsImageName, host.arch, ...
# What marks an image as a checkpoint: CRI-O tests the first, checkpointctl-built images carry the second.
CHECKPOINT_MARKS = (CRIO + "name", CRIU + "container.name")
_GOARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le", "s390x": "s390x",
           "riscv64": "riscv64"}


@dataclass(frozen=True, slots=True, kw_only=True)
class HostFacts:
    """What the annotations tell about the machine the checkpoint was taken on."""

    arch: str
    kernel: str
    cgroup_version: str
    distribution_name: str
    distribution_version: str


def host_facts() -> HostFacts:
    os_release: dict[str, str] = {}
    try:
        with open("/etc/os-release", encoding="utf-8") as f:
            for line in f:
                key, sep, value = line.strip().partition("=")
                if sep:
                    os_release[key] = value.strip('"')
    except OSError:
        pass
    v2 = os.path.exists("/sys/fs/cgroup/cgroup.controllers")
    return HostFacts(arch=_GOARCH.get(platform.machine(), platform.machine()), kernel=os.uname().release,
                     cgroup_version="v2" if v2 else "v1", distribution_name=os_release.get("ID", ""),
                     distribution_version=os_release.get("VERSION_ID", ""))


def checkpoint_annotations(config: Mapping[str, Any], *, criu_version: tuple[int, ...] | None,
                           host: HostFacts, engine: str) -> dict[str, str]:
    """The manifest's annotations for a checkpoint whose ``config.dump`` is ``config``. Pure.

    Empty values are left out (an engine tests for presence)."""
    name = str(config.get("name") or config.get("id") or "")
    image = str(config.get("rootfsImageName") or "")
    image_id = str(config.get("rootfsImageRef") or "")
    criu = ""
    if criu_version:
        major, minor, sub = (list(criu_version) + [0, 0, 0])[:3]
        criu = str(major * 10000 + minor * 100 + sub)
    runtime_name = str(config.get("runtime") or engine)
    pairs = {
        CRIO + "name": name, CRIO + "rawImageName": image, CRIO + "rootfsImageName": image,
        CRIO + "rootfsImageID": image_id, CRIO + "criu.version": criu,
        CRIU + "container.name": name, CRIU + "engine.name": engine, CRIU + "engine.version": ENGINE_VERSION,
        CRIU + "rootfsImageName": image, CRIU + "rootfsImageUserRequested": image, CRIU + "rawImageName": image,
        CRIU + "rootfsImageID": image_id, CRIU + "runtime.name": runtime_name,
        CRIU + "runtime.version": ENGINE_VERSION, CRIU + "criu.version": criu, CRIU + "host.arch": host.arch,
        CRIU + "host.kernel": host.kernel, CRIU + "cgroup.version": host.cgroup_version,
        CRIU + "distribution.name": host.distribution_name,
        CRIU + "distribution.version": host.distribution_version,
    }
    return {k: v for k, v in pairs.items() if v}


def _rfc3339(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def write_image(ref: ImageRef, image_dir: str, *, annotations: Mapping[str, str],
                extra: Mapping[str, bytes] | None = None, extra_files: Mapping[str, str] | None = None,
                compression: str = archive.DEFAULT_COMPRESSION, threads: int = -1,
                created: float | None = None) -> Descriptor:
    """Write the checkpoint at ``image_dir`` as the image ``ref``; returns its manifest's descriptor.

    ``extra``/``extra_files``: the archive's top-level members (as
    :func:`runtime.cr.archive.write_archive` takes them). Into an existing
    ``oci:DIR`` the image is added (a tag it already had moves to it); an
    ``oci-archive:FILE`` is replaced whole, and only on success. Raises
    ArchiveError, OSError.
    """
    if compression not in LAYER_MEDIA_TYPES:
        raise ArchiveError(str(ref), "", f"unknown compression {compression!r}",
                           hint=f"one of {', '.join(LAYER_MEDIA_TYPES)}")
    created_at = _rfc3339(time.time() if created is None else created)
    writer = open_writer(ref)
    diff: list[str] = []

    def fill(raw: IO[bytes]) -> None:
        with compressor(raw, compression, threads) as packed:
            # the config's diff_id is the digest of the uncompressed tar (uncompressed: the layer's own)
            plain = HashingWriter(packed) if compression != "none" else packed
            archive.write_stream(plain, str(ref), image_dir, extra=extra, extra_files=extra_files)
        if isinstance(plain, HashingWriter):
            diff.append(plain.digest)

    try:
        layer = writer.stream(LAYER_MEDIA_TYPES[compression], fill)
        diff = diff or [layer.digest]
        config = {"created": created_at, "architecture": _GOARCH.get(platform.machine(), platform.machine()),
                  "os": "linux", "rootfs": {"type": "layers", "diff_ids": diff},
                  # also as labels: `skopeo inspect` and `podman image inspect` show these, not the manifest's
                  "config": {"Labels": dict(annotations)},
                  "history": [{"created": created_at, "created_by": "criu-cr checkpoint --create-image"}]}
        config_desc = writer.put(MEDIA_CONFIG, _json(config))
        manifest = {"schemaVersion": 2, "mediaType": MEDIA_MANIFEST, "config": config_desc.to_dict(),
                    "layers": [layer.to_dict()], "annotations": dict(annotations)}
        desc = writer.put(MEDIA_MANIFEST, _json(manifest))
        entry = Descriptor(media_type=desc.media_type, digest=desc.digest, size=desc.size,
                           annotations={REF_NAME: ref.tag} if ref.tag else {})
        writer.finish(entry)
    except BaseException:
        writer.abort()
        raise
    return entry


def _json(data: object) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":")).encode()


def checkpoint_layer(image: Image) -> Descriptor:
    """The one tar layer of checkpoint image ``image``. Raises ArchiveError: not a checkpoint image
    (no checkpoint annotation, not exactly one layer of a known type)."""
    ref = image.ref
    if not any(image.annotations.get(mark) for mark in CHECKPOINT_MARKS):
        raise ArchiveError(str(ref), image.manifest.blob, "is not a checkpoint image "
                           f"(no {' or '.join(CHECKPOINT_MARKS)} annotation)")
    if len(image.layers) != 1 or image.layers[0].media_type not in LAYER_MEDIA_TYPES.values():
        kinds = ", ".join(x.media_type for x in image.layers) or "none"
        raise ArchiveError(str(ref), image.manifest.blob,
                           f"has layers ({kinds}); a checkpoint image has one tar layer")
    return image.layers[0]


def read_image(ref: ImageRef, directory: str, *, limit: int = archive.DEFAULT_IMPORT_LIMIT
               ) -> archive.ImportedArchive:
    """Unpack the checkpoint image ``ref`` into ``directory`` (which must not exist), as
    :func:`runtime.cr.archive.read_archive` unpacks an archive.

    Refuses (ArchiveError naming the file or blob) a layout that is not
    one, a tag it does not hold, a blob whose size or digest differs from
    its descriptor, an image that is not a checkpoint (no checkpoint
    annotation, not exactly one layer of a known type), and whatever
    read_archive refuses in the layer. In a directory, the layer blob is
    unpacked while its digest is checked (a mismatch removes what was
    unpacked); an ``oci-archive`` layer is first copied (and checked)
    beside ``directory``, then removed.
    """
    with open_reader(ref) as reader:
        layer = checkpoint_layer(reader.image())
        if reader.is_directory:
            return _unpack_checked(reader, layer, directory, limit)
        copy = f"{directory}.layer"  # checked as it is copied out of the tar
        fd = os.open(copy, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, FILE_MODE)
        try:
            with os.fdopen(fd, "wb") as out:
                reader.blob_file(layer, out)
            return archive.read_archive(copy, directory, limit=limit)
        finally:
            os.unlink(copy)


def create_checkpoint_image(store: StateStore, st: ContainerState, image_dir: str, opts: CheckpointOptions) -> str:
    """Write the checkpoint at ``image_dir`` of container ``st`` as the image ``opts.create_image``;
    returns the image's reference. Raises ArchiveError (the checkpoint itself stays at ``image_dir``)."""
    from runtime.cr import export_members, ocilayout
    from runtime.cr.meta import criu_facts

    assert opts.create_image
    ref = ocilayout.parse_reference(opts.create_image)
    assert ref is not None  # CheckpointOptions checked it
    try:
        extra, extra_files = export_members.archive_members(store, st, image_dir)
        config = json.loads(extra[archive.CONFIG_DUMP])
        annotations = checkpoint_annotations(config, criu_version=criu_facts(None, store.root).get("version"),
                                             host=host_facts(), engine=export_members.ENGINE)
        write_image(ref, image_dir, annotations=annotations, extra=extra, extra_files=extra_files,
                    compression=opts.compress)
    except ArchiveError as exc:
        raise ArchiveError(exc.archive, exc.member, exc.problem,
                           hint=f"the checkpoint itself is at {image_dir}") from exc
    except (OSError, ValueError) as exc:
        raise ArchiveError(str(ref), "", f"cannot be written: {exc}",
                           hint=f"the checkpoint itself is at {image_dir}") from exc
    return str(ref)


def _unpack_checked(reader: OciReader, layer: Descriptor, directory: str, limit: int) -> archive.ImportedArchive:
    """Unpack the layer blob while a second reader checks its size and digest: the wall time of the
    slower of the two, not their sum. A mismatch is what is reported (it explains whatever the
    unpacking ran into), and nothing unpacked survives it."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="criu-cr-digest") as pool:
        check = pool.submit(reader.blob_file, layer)  # hashlib lets go of the GIL: truly parallel
        try:
            imported = archive.read_archive(reader.blob_path(layer), directory, limit=limit)
        except BaseException:
            bad = check.exception()
            if isinstance(bad, ArchiveError):
                raise bad  # read_archive removed what it had unpacked
            raise
        try:
            check.result()
        except BaseException:
            mounts.remove_tree(directory)
            raise
    return imported
