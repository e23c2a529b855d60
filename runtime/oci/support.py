"""What criu-cr supports of an OCI spec beyond what parsing checks (it runs no runc)."""

from __future__ import annotations

from runtime.errors import SpecError
from runtime.linux import caps, mounts
from runtime.oci.spec import Spec

__all__ = ["check_supported"]


def check_supported(spec: Spec) -> None:
    """Refuse what criu-cr cannot run: unknown capabilities, a rootfs propagation, a joined mount namespace.

    Raises SpecError naming the field.
    """
    if spec.process.capabilities:
        unknown = caps.unknown_names(spec.process.capabilities)
        if unknown:
            raise SpecError("process.capabilities", "unknown capabilities: " + ", ".join(unknown))
    if spec.rootfs_propagation not in mounts.ROOT_PROPAGATION:
        raise SpecError("linux.rootfsPropagation", f"{spec.rootfs_propagation!r} is not supported",
                        "use private, rprivate, slave or rslave (or leave it out)")
    mnt = spec.namespace("mount")
    if mnt is None or mnt.path:
        raise SpecError("linux.namespaces", "criu-cr needs a new mount namespace",
                        "add {\"type\": \"mount\"} without a path")
