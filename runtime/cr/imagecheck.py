"""Is there a restorable checkpoint at this path? Answered before CRIU runs.

CRIU's own reports on bad images mislead: a missing core image ends in an
EOF line, a truncated pages image can make it loop. So a restore first
checks the image directory here and refuses with the name of what is
wrong: a path that does not exist, no checkpoint, a file that differs from
the checkpoint's manifest (:mod:`runtime.cr.manifest`), a corrupt inventory.
"""

from __future__ import annotations

import logging
import os

from criu_rpc import ImageError, has_inventory
from runtime.cr.manifest import MANIFEST_FILE, Unhashed, verify_but_pages, verify_manifest
from runtime.cr.meta import METADATA_FILE
from runtime.errors import CheckpointNotFoundError, RestoreError

__all__ = ["require_checkpoint", "INVENTORY_FILE"]

_log = logging.getLogger("criu_cr.cr")

INVENTORY_FILE = "inventory.img"


def require_checkpoint(container_id: str, image_dir: str, *, verify: bool = True,
                       defer_pages: bool = False) -> Unhashed | None:
    """Refuse ``image_dir`` unless it holds a complete checkpoint that matches its manifest.

    With ``verify`` false, the manifest is not checked (the inventory still
    is). A checkpoint without a manifest (from an older criu-cr) passes with
    a RuntimeWarning. With ``defer_pages``, the pages images' hashes are not
    checked but returned (their presence and sizes are): the caller checks
    them before anything restored from them runs. Returns None when there is
    nothing left to check. Raises CheckpointNotFoundError (no checkpoint
    there), RestoreError (naming the path, or the bad file), ImageIntegrityError (a RestoreError), OSError.
    """
    if not os.path.exists(image_dir):
        raise CheckpointNotFoundError(container_id, image_dir, f"image path {image_dir} does not exist",
                                      hint="give the directory the checkpoint was written to (its --image-path)")
    if not os.path.isdir(image_dir):
        raise RestoreError(container_id, f"image path {image_dir} is not a directory",
                           hint="give the directory the checkpoint was written to (its --image-path)")
    inventory = os.path.join(image_dir, INVENTORY_FILE)
    if not os.path.lexists(inventory) and not os.path.lexists(os.path.join(image_dir, METADATA_FILE)):
        raise CheckpointNotFoundError(container_id, image_dir, f"no checkpoint at {image_dir}",
                                      hint="checkpoint the container first, or give --image-path")
    unhashed = None
    if verify:
        if defer_pages:
            unhashed = verify_but_pages(image_dir, container_id=container_id)
            checked = unhashed is not None
        else:
            checked = verify_manifest(image_dir, container_id=container_id) is not None
    if verify and not checked:
        _log.warning("the checkpoint at %s has no %s (it was written by an older criu-cr): its files cannot "
                     "be checked before CRIU reads them", image_dir, MANIFEST_FILE)
    if not os.path.lexists(inventory):
        raise RestoreError(container_id, f"the checkpoint at {image_dir} is incomplete: {INVENTORY_FILE} "
                           "is missing", hint="take a new checkpoint")
    try:
        valid = has_inventory(image_dir)
    except ImageError as exc:
        raise RestoreError(container_id, f"the checkpoint at {image_dir} is corrupt: {exc}",
                           hint="take a new checkpoint") from exc
    if not valid:
        raise RestoreError(container_id, f"the checkpoint at {image_dir} is corrupt: {inventory} is not "
                           "a CRIU inventory image", hint="take a new checkpoint")
    return unhashed
