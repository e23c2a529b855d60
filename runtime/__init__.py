"""runtime: OCI bundles, containers and their checkpoint/restore, without runc.

The public names are imported on first use (PEP 562), so ``criu-cr`` commands
load only the modules they need.
"""

from __future__ import annotations

import importlib
from typing import Any

# public name -> module that defines it
_EXPORTS = {
    "Container": "container",
    "ContainerStartError": "container",
    "Status": "container.state",
    "CheckpointOptions": "cr.options",
    "RestoreOptions": "cr.options",
    "CheckpointResult": "cr.options",
    "RestoreResult": "cr.options",
    "load_spec": "oci.spec",
    "Spec": "oci.spec",
    "Cgroups": "linux.cgroups",
    "ContainerError": "errors",
    "SpecError": "errors",
    "CgroupError": "errors",
    "NetnsError": "errors",
    "ContainerNotFoundError": "errors",
    "ContainerExistsError": "errors",
    "ContainerBusyError": "errors",
    "ContainerStateError": "errors",
    "CheckpointError": "errors",
    "RestoreError": "errors",
    "ImageDirError": "cr.meta",
    "ImageIntegrityError": "errors",
    "ImageOwnerError": "cr.meta",
    "verify_manifest": "cr.manifest",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    try:
        module = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module 'runtime' has no attribute {name!r}") from None
    return getattr(importlib.import_module(f".{module}", __name__), name)


def __dir__() -> list[str]:
    return __all__
