"""Restoring a checkpoint into a container that does not exist yet (a copy, or after delete).

The new container is made from a bundle (given, or the checkpointed one's)
the way ``create`` makes one -- cgroups, overlay root -- but without an init:
its status is ``checkpointed`` until the restore gives it one. When the
checkpoint carries the original container's filesystem changes
(``rootfs-diff.tar``, written by ``--leave-running`` checkpoints), they are
unpacked into the new overlay's upper layer first.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from . import mounts
from .container import Container, _check_supported, prepare_host, process_record
from .crmeta import read_meta
from .errors import RestoreError
from .imagecheck import require_checkpoint
from .spec import load_spec
from .state import ContainerState, StateStore, now_rfc3339, validate_id
from .syscalls import PROC_NS_NAMES

if TYPE_CHECKING:
    from .crtypes import RestoreOptions

__all__ = ["prepare_new_container", "ROOTFS_DIFF"]

ROOTFS_DIFF = "rootfs-diff.tar"


def prepare_new_container(container_id: str, opts: "RestoreOptions", root: str | None) -> Container:
    """Create container ``container_id`` ready to be restored from ``opts.image_path``.

    Raises RestoreError (no image path, no bundle), ContainerExistsError,
    SpecError, CgroupError, OSError. Nothing is left behind on failure.
    """
    validate_id(container_id)
    if not opts.image_path:
        raise RestoreError(container_id, "restoring into a new container needs the checkpoint's image path",
                           hint="give --image-path DIR")
    require_checkpoint(container_id, opts.image_path, verify=opts.verify)
    meta = read_meta(opts.image_path, container_id=container_id)
    bundle = opts.bundle or meta.bundle
    if not bundle or not os.path.isfile(os.path.join(bundle, "config.json")):
        raise RestoreError(container_id, f"no bundle to restore into (checkpointed bundle {meta.bundle!r} "
                           "is gone)", hint="give --bundle DIR")
    spec = load_spec(bundle)
    _check_supported(spec)
    store = StateStore(root)
    store.create_dir(container_id)
    try:
        with store.lock(container_id):
            st = ContainerState(id=container_id, status="checkpointed", bundle=spec.bundle,
                                rootfs=store.path(container_id, "rootfs"), created=now_rfc3339(),
                                annotations=dict(spec.annotations))
            store.write(st)
            diff = os.path.join(opts.image_path, ROOTFS_DIFF)
            seed = (lambda upper: mounts.extract_upper(diff, upper)) if os.path.exists(diff) else None
            st, _ = prepare_host(store, st, spec, seed_upper=seed)
            joined = {ns.type: ns.path for ns in spec.namespaces if ns.path}
            namespaces = {ns.type: ns.path or f"/proc/0/ns/{PROC_NS_NAMES[ns.type]}" for ns in spec.namespaces}
            st = st.replace(namespaces=namespaces, joined_namespaces=joined,
                            extra={"process": process_record(spec),
                                   "checkpoint": {"image_dir": opts.image_path}})
            store.write(st)
    except BaseException:
        ctr = Container(store, store.read(container_id)) if store.exists(container_id) else None
        if ctr is not None:
            try:
                ctr.delete(force=True)
            except Exception:  # noqa: BLE001 - the original error matters more
                pass
        raise
    return Container(store, st)
