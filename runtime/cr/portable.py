"""Checkpoints that leave the machine: export to an archive, restore from one (issue 9).

``checkpoint --export FILE`` writes the finished checkpoint as one archive
in podman's layout (:mod:`runtime.cr.archive`), with the podman files made
here: ``spec.dump`` (the bundle's config, its root made absolute and
annotated with the engine), ``config.dump``, ``deleted.files`` and the
container's log. ``restore --import FILE`` unpacks an archive into a fresh
0700 directory under the state root, writes a bundle from its
``spec.dump`` (with ``--rootfs`` / ``--netns`` applied) and restores a new
container from it through :mod:`runtime.cr.restore_new` -- the same path
as a local restore into a new container. The unpacked directory then
moves into the container's own directory (``import/``), so ``delete``
removes it; on failure nothing is left.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import os
import tarfile
import time
from typing import Any

from criu_rpc import NotifyHandler
from runtime.container.state import ContainerState, StateStore, validate_id
from runtime.cr import archive
from runtime.cr.meta import NETWORK_FILE
from runtime.cr.export_members import ENGINE, MANAGER_ANNOTATION, archive_members, config_dump, spec_dump
from runtime.cr.options import CheckpointOptions, RestoreOptions, RestoreResult
from runtime.errors import ArchiveError, ContainerExistsError, RestoreError
from runtime.linux import mounts
from runtime.linux.fsmode import makedirs_private, open_private
from runtime.net.netns import delete_netns

__all__ = ["export_checkpoint", "restore_import", "spec_dump", "config_dump", "bundle_spec", "archive_members",
           "ENGINE", "IMPORT_DIR", "Imported", "import_archive", "restore_imported"]

_log = logging.getLogger("criu_cr.cr")

IMPORT_DIR = "import"  # in the container's directory: the unpacked archive it was restored from


# -- export -----------------------------------------------------------------------------

def export_checkpoint(store: StateStore, st: ContainerState, image_dir: str, opts: CheckpointOptions) -> str:
    """Write the checkpoint at ``image_dir`` of container ``st`` to ``opts.export``; returns its path.

    Raises ArchiveError (the archive could not be written; the checkpoint
    itself stays at ``image_dir``).
    """
    assert opts.export
    try:
        extra, extra_files = archive_members(store, st, image_dir)
        info = archive.write_archive(opts.export, image_dir, extra=extra, extra_files=extra_files,
                                     compression=opts.compress, progress=opts.progress)
    except ArchiveError as exc:
        raise ArchiveError(exc.archive, exc.member, exc.problem,
                           hint=f"the checkpoint itself is at {image_dir}") from exc
    except (OSError, tarfile.TarError, ValueError) as exc:
        raise ArchiveError(opts.export, "", f"cannot be written: {exc}",
                           hint=f"the checkpoint itself is at {image_dir}") from exc
    return info.path


# -- import -----------------------------------------------------------------------------

def bundle_spec(spec: dict[str, Any], *, rootfs: str | None, netns: str | None,
                container_id: str) -> dict[str, Any]:
    """The config.json to restore with: ``spec.dump`` with ``rootfs`` and ``netns`` applied.

    Raises RestoreError when the archive's root filesystem is not here and
    no ``rootfs`` replaces it, or when ``netns`` is given for a container
    without its own network namespace.
    """
    out = copy.deepcopy(spec)
    root = out.setdefault("root", {})
    if rootfs:
        root["path"] = os.path.abspath(rootfs)
    if not os.path.isabs(root.get("path") or "") or not os.path.isdir(root["path"]):
        raise RestoreError(container_id, f"the archive's root filesystem {root.get('path')!r} is not here",
                           hint="give the image's root filesystem with --rootfs DIR")
    if netns:
        entries = (out.get("linux") or {}).get("namespaces") or []
        net = [ns for ns in entries if ns.get("type") == "network"]
        if not net:
            raise RestoreError(container_id, "--netns was given, but the checkpointed container shares "
                               "the host's network namespace")
        net[0]["path"] = os.path.abspath(netns)
    return out


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Imported:
    """An archive unpacked under the state root and its bundle written, nothing restored yet:
    ``image_dir`` holds the checkpoint (a caller may add to it, e.g. a migration's pages).
    :func:`restore_imported` restores it, :meth:`discard` removes it."""

    container_id: str
    work: str
    image_dir: str
    bundle: str
    made_netns: str = ""  # a netns recreated from network.status for it, removed with it

    def discard(self) -> None:
        try:
            mounts.remove_tree(self.work)
        finally:
            if self.made_netns:
                delete_netns(self.made_netns)


def restore_import(store: StateStore, archive_path: str, opts: RestoreOptions, *, name: str | None = None,
                   rootfs: str | None = None, limit: int = archive.DEFAULT_IMPORT_LIMIT,
                   criu_path: str | None = None, notify: NotifyHandler | None = None) -> RestoreResult:
    """Restore a new container from the archive at ``archive_path``.

    The container's id is ``name``, else the archive's. ``opts.netns``
    restores into another pre-created network namespace; ``rootfs``
    replaces the archive's root filesystem; ``limit`` caps what the archive
    may unpack to. Nothing is left behind on failure. Raises ArchiveError
    (a refused or damaged archive: ``.member``), ContainerExistsError,
    RestoreError, SpecError, OSError.
    """
    imported = import_archive(store, archive_path, opts, name=name, rootfs=rootfs, limit=limit)
    return restore_imported(store, imported, opts, criu_path=criu_path, notify=notify)


def import_archive(store: StateStore, archive_path: str, opts: RestoreOptions, *, name: str | None = None,
                   rootfs: str | None = None, limit: int = archive.DEFAULT_IMPORT_LIMIT) -> Imported:
    """The first half of :func:`restore_import`: unpack and check the archive, write the bundle.
    Nothing is left behind on failure; raises as restore_import does (not RestoreError from CRIU)."""
    if name is not None:
        validate_id(name)
        if store.exists(name):
            raise ContainerExistsError(name, store.root)
    makedirs_private(store.root, 0o711)
    work = os.path.join(store.root, f".import-{os.getpid()}-{time.monotonic_ns()}")
    imported = _unpack(archive_path, work, limit, opts.progress)
    made_netns = ""
    try:
        cid = name or str(imported.config.get("id") or "")
        try:
            validate_id(cid)
        except ValueError as exc:
            raise ArchiveError(archive_path, archive.CONFIG_DUMP, f"names no usable container id ({exc})",
                               hint="give one with --name") from exc
        if store.exists(cid):
            raise ContainerExistsError(cid, store.root)
        bundle = os.path.join(work, "bundle")
        spec = bundle_spec(imported.spec, rootfs=rootfs, netns=opts.netns, container_id=cid)
        if imported.foreign:
            from runtime.cr.podman import prepare_podman_import

            _log.warning("the archive %s has no criu-cr.json (written by %s): restoring it as podman's",
                         archive_path, (spec.get("annotations") or {}).get(MANAGER_ANNOTATION, "another engine"))
            spec = prepare_podman_import(archive_path, work, imported.image_dir, spec, cid,
                                         os.path.join(store.path(cid, IMPORT_DIR), "bundle"))
        made_netns = _recreate_network(cid, spec, imported.image_dir)
        os.mkdir(bundle, 0o700)
        with open_private(os.path.join(bundle, "config.json"), "w", encoding="utf-8") as f:
            json.dump(spec, f, indent=2)
    except BaseException:
        mounts.remove_tree(work)
        if made_netns:
            delete_netns(made_netns)
        raise
    return Imported(container_id=cid, work=work, image_dir=imported.image_dir, bundle=bundle, made_netns=made_netns)


def restore_imported(store: StateStore, imported: Imported, opts: RestoreOptions, *,
                     criu_path: str | None = None, notify: NotifyHandler | None = None) -> RestoreResult:
    """The second half of :func:`restore_import`: restore what :func:`import_archive` prepared
    (removed again on failure). Raises RestoreError, ContainerExistsError, OSError."""
    try:
        # The archive's manifest was checked as it was unpacked: CRIU reads these files next.
        ropts = dataclasses.replace(opts, image_path=imported.image_dir, bundle=imported.bundle, verify=False)
        from runtime.cr.restore_new import restore_new

        result = restore_new(store, imported.container_id, ropts, criu_path=criu_path, notify=notify)
    except BaseException:
        imported.discard()
        raise
    return _adopt_import(store, imported.container_id, imported.work, result)


def _recreate_network(cid: str, spec: dict[str, Any], image_dir: str) -> str:
    """On a host that never had it (a migration's destination): the netns the container joins, made
    from network.status; its name when it was made here (removed again if the restore fails)."""
    from runtime.cr.restore import recreate_network

    path = next((ns.get("path") for ns in (spec.get("linux") or {}).get("namespaces") or ()
                 if ns.get("type") == "network" and ns.get("path")), None)
    if path and os.path.exists(os.path.join(image_dir, NETWORK_FILE)) and recreate_network(cid, path, image_dir):
        return os.path.basename(path)
    return ""


def _unpack(source: str, work: str, limit: int, progress: Any = None) -> archive.ImportedArchive:
    """An archive file, or an OCI checkpoint image (``oci:DIR[:TAG]``, ``oci-archive:FILE[:TAG]``)."""
    from runtime.cr import ociimage, ocilayout

    try:
        ref = ocilayout.parse_reference(source)
    except ValueError as exc:
        raise ArchiveError(source, "", str(exc)) from exc
    if ref is None:
        return archive.read_archive(source, work, limit=limit, progress=progress)
    return ociimage.read_image(ref, work, limit=limit)


def _adopt_import(store: StateStore, cid: str, work: str, result: RestoreResult) -> RestoreResult:
    """Move the unpacked archive into the container's directory, so that ``delete`` removes it."""
    final = store.path(cid, IMPORT_DIR)
    with store.lock(cid, blocking=True):
        os.rename(work, final)
        _repoint_bundle(os.path.join(final, "bundle", "config.json"), work, final)
        st = store.read(cid)
        extra = dict(st.extra)
        extra["checkpoint"] = dict(extra.get("checkpoint") or {},
                                   image_dir=os.path.join(final, archive.CHECKPOINT_DIR))
        store.write(st.replace(bundle=os.path.join(final, "bundle"), extra=extra))
    return dataclasses.replace(result, image_dir=os.path.join(final, archive.CHECKPOINT_DIR),
                               log_path=result.log_path and result.log_path.replace(work, final))


def _repoint_bundle(config: str, work: str, final: str) -> None:
    """The bundle's paths into the unpacked archive (podman's recreated bind sources) follow its move."""
    with open(config, encoding="utf-8") as f:
        spec = json.load(f)
    changed = False
    for m in spec.get("mounts") or ():
        src = m.get("source", "")
        if src.startswith(work + "/"):
            m["source"] = final + src[len(work):]
            changed = True
    if changed:
        with open_private(config + ".new", "w", encoding="utf-8") as f:
            json.dump(spec, f, indent=2)
        os.replace(config + ".new", config)
