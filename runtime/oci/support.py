"""What criu-cr supports of an OCI spec beyond what parsing checks (it runs no runc)."""

from __future__ import annotations

from runtime.errors import SpecError
from runtime.linux import caps, mounts
from runtime.oci.spec import Spec, load_spec

__all__ = ["check_supported", "bind_sources"]


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


def bind_sources(bundle: str) -> dict[str, str]:
    """Container destination -> host source of the bundle's bind mounts ({} when the bundle is gone).

    Checkpoint and restore name a bind mount's host side from the spec; an
    adopted container's bundle may be gone, and then what mountinfo recorded
    serves instead.
    """
    try:
        spec = load_spec(bundle)
    except (SpecError, OSError):
        return {}
    return {m.destination: m.source for m in spec.mounts if m.is_bind}
