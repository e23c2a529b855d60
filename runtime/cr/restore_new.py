"""Restoring a checkpoint into a container that does not exist yet (a copy, or after delete).

The new container is made from a bundle (given, or the checkpointed one's)
the way ``create`` makes one -- cgroups, overlay root -- but without an init:
its status is ``checkpointed`` until the restore gives it one. When the
checkpoint carries the original container's filesystem changes
(``rootfs-diff.tar``, written by ``--leave-running`` checkpoints), they are
unpacked into the new overlay's upper layer first.
"""

from __future__ import annotations

import functools
import os
import tarfile

from criu_rpc import NotifyHandler
from runtime.container.host import discard_container, prepare_host, process_record
from runtime.container.state import ContainerState, StateStore, Status, now_rfc3339, validate_id
from runtime.cr.imagecheck import require_checkpoint
from runtime.cr.layout import ROOTFS_DIFF
from runtime.cr.meta import read_meta
from runtime.cr.options import RestoreOptions, RestoreResult
from runtime.cr.restore import restore_locked
from runtime.errors import RestoreError
from runtime.linux import mounts
from runtime.linux.syscalls import PROC_NS_NAMES
from runtime.oci.spec import load_spec
from runtime.oci.support import check_supported

__all__ = ["restore_new", "prepare_new_container"]



def restore_new(store: StateStore, container_id: str, opts: RestoreOptions, *,
                criu_path: str | None = None, notify: NotifyHandler | None = None) -> RestoreResult:
    """Make container ``container_id`` from the checkpoint at ``opts.image_path`` and restore it.

    The bundle is ``opts.bundle``, else the checkpointed container's. Nothing
    is left behind on failure. Raises RestoreError (no image path, no bundle,
    CRIU failed), ImageIntegrityError, ContainerExistsError, SpecError,
    CgroupError, OSError.
    """
    prepare_new_container(store, container_id, opts)
    try:
        return restore_locked(store, container_id, opts, criu_path=criu_path, notify=notify, new=True)
    except BaseException:
        discard_container(store, container_id)
        raise


def prepare_new_container(store: StateStore, container_id: str, opts: RestoreOptions) -> ContainerState:
    """Create container ``container_id`` ready to be restored from ``opts.image_path``.

    Raises RestoreError (no image path, no bundle), ContainerExistsError,
    SpecError, CgroupError, OSError. Nothing is left behind on failure.
    """
    validate_id(container_id)
    if not opts.image_path:
        raise RestoreError(container_id, "restoring into a new container needs the checkpoint's image path",
                           hint="give --image-path DIR")
    # The pages images' hashes are checked while CRIU restores them (restore_locked).
    require_checkpoint(container_id, opts.image_path, verify=opts.verify, defer_pages=True)
    meta = read_meta(opts.image_path, container_id=container_id)
    bundle = opts.bundle or meta.bundle
    if not bundle or not os.path.isfile(os.path.join(bundle, "config.json")):
        raise RestoreError(container_id, f"no bundle to restore into (checkpointed bundle {meta.bundle!r} "
                           "is gone)", hint="give --bundle DIR")
    spec = load_spec(bundle)
    check_supported(spec)
    store.create_dir(container_id)
    try:
        with store.lock(container_id):
            st = ContainerState(id=container_id, status=Status.CHECKPOINTED, bundle=spec.bundle,
                                rootfs=store.path(container_id, "rootfs"), created=now_rfc3339(),
                                annotations=dict(spec.annotations))
            store.write(st)
            diff = os.path.join(opts.image_path, ROOTFS_DIFF)
            seed = functools.partial(_unpack_changes, container_id, diff) if os.path.exists(diff) else None
            st, _ = prepare_host(store, st, spec, seed_upper=seed)
            joined = {ns.type: ns.path for ns in spec.namespaces if ns.path}
            namespaces = {ns.type: ns.path or f"/proc/0/ns/{PROC_NS_NAMES[ns.type]}" for ns in spec.namespaces}
            if opts.netns:
                joined["network"] = namespaces["network"] = opts.netns
            st = st.replace(namespaces=namespaces, joined_namespaces=joined,
                            extra={"process": process_record(spec),
                                   "checkpoint": {"image_dir": opts.image_path}})
            store.write(st)
    except BaseException:
        discard_container(store, container_id)
        raise
    return st


def _unpack_changes(container_id: str, diff: str, upper: str) -> None:
    """The checkpointed container's filesystem changes into the new overlay's upper directory."""
    try:
        mounts.extract_upper(diff, upper)
    except tarfile.TarError as exc:
        raise RestoreError(container_id, f"{diff} cannot be unpacked: {exc}",
                           hint="the checkpoint's filesystem changes are damaged or hostile; take a new checkpoint") from exc
