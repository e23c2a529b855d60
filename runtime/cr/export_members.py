"""What an export adds beside CRIU's images: ``spec.dump``, ``config.dump``, ``deleted.files``, the log.

One builder for the archive (:mod:`runtime.cr.portable`) and the OCI
checkpoint image (:mod:`runtime.cr.ociimage`), which carry the same members.
"""

from __future__ import annotations

import copy
import json
import os
import tarfile
import time
from typing import Any

from runtime.container.state import ContainerState, StateStore
from runtime.cr import archive
from runtime.cr.layout import ROOTFS_DIFF
from runtime.cr.options import CTR_LOG

__all__ = ["ENGINE", "MANAGER_ANNOTATION", "spec_dump", "config_dump", "archive_members"]

ENGINE = "criu-cr"
# checkpointctl names the engine from this annotation (podman writes "libpod", CRI-O "cri-o").
MANAGER_ANNOTATION = "io.container.manager"


def spec_dump(raw_spec: dict[str, Any], bundle: str) -> dict[str, Any]:
    """The ``spec.dump`` of a container of ``bundle``: its config, root made absolute, annotated. Pure."""
    spec = copy.deepcopy(raw_spec)
    root = spec.setdefault("root", {})
    root["path"] = os.path.normpath(os.path.join(bundle, root.get("path") or "rootfs"))
    spec.setdefault("annotations", {})[MANAGER_ANNOTATION] = ENGINE
    return spec


def config_dump(st: ContainerState, spec: dict[str, Any], checkpointed: float) -> dict[str, Any]:
    """The ``config.dump`` (podman's ContainerConfig fields that checkpointctl reads). Pure."""
    annotations = spec.get("annotations") or {}
    image = annotations.get("org.opencontainers.image.ref.name") or spec["root"]["path"]
    return {"id": st.id, "name": st.id, "rootfsImageName": image, "runtime": ENGINE,
            "createdTime": st.created,
            "checkpointedTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(checkpointed))}


def _deleted_files(image_dir: str) -> list[str]:
    """The whiteouts (0/0 character devices) of the checkpoint's rootfs-diff.tar, as podman lists them."""
    path = os.path.join(image_dir, ROOTFS_DIFF)
    if not os.path.exists(path):
        return []
    with tarfile.open(path, "r:") as tar:
        return sorted("/" + m.name.lstrip("./") for m in tar
                      if m.ischr() and m.devmajor == 0 and m.devminor == 0)


def _json(data: object) -> bytes:
    return json.dumps(data, indent=2, sort_keys=True).encode() + b"\n"


def archive_members(store: StateStore, st: ContainerState, image_dir: str) -> tuple[dict[str, bytes],
                                                                                      dict[str, str]]:
    """The top-level members an archive or image of this checkpoint adds to the image directory:
    by content (spec.dump, config.dump, deleted.files) and by host file (ctr.log)."""
    from runtime.oci.spec import load_spec

    spec = spec_dump(load_spec(st.bundle).raw, st.bundle)
    extra = {archive.SPEC_DUMP: _json(spec),
             archive.CONFIG_DUMP: _json(config_dump(st, spec, time.time())),
             archive.DELETED_FILES: _json(_deleted_files(image_dir))}
    return extra, {archive.CTR_LOG: store.path(st.id, CTR_LOG)}
