"""Process capabilities from ``process.capabilities`` (bounding, effective, permitted, inheritable, ambient).

Applied by the container's init just before exec: the bounding set is cut
while init still has CAP_SETPCAP, capabilities survive a switch to a
non-root uid through PR_SET_KEEPCAPS, then capset(2) and the ambient set. An
ambient capability that is not also permitted and inheritable cannot be
raised (runc's default spec asks for such); it is skipped, as runc does.
"""

from __future__ import annotations

import errno
from typing import Any

from runtime.linux import syscalls as sc

__all__ = ["CAPABILITIES", "mask", "unknown_names", "drop_bounding", "apply"]

# capability(7) numbers, named once.
CAPABILITIES = {name: i for i, name in enumerate((
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT",
    "CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
    "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG",
    "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
))}
_SETS = ("bounding", "effective", "permitted", "inheritable", "ambient")


def _last_cap() -> int:
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            return int(f.read())
    except OSError:
        return max(CAPABILITIES.values())


def unknown_names(caps: dict[str, Any]) -> list[str]:
    """Names in ``caps`` that are not capabilities. Pure."""
    return sorted({n for s in _SETS for n in caps.get(s) or [] if n not in CAPABILITIES})


def mask(names: list[str] | None) -> int:
    """A bit mask of capability names (unknown names are ignored; check with unknown_names)."""
    out = 0
    for name in names or []:
        if name in CAPABILITIES:
            out |= 1 << CAPABILITIES[name]
    return out


def drop_bounding(caps: dict[str, Any]) -> None:
    """Drop every capability not in ``caps["bounding"]`` from the bounding set. Raises OSError."""
    keep = mask(caps.get("bounding"))
    for cap in range(_last_cap() + 1):
        if not keep & (1 << cap):
            try:
                sc.prctl(sc.PR_CAPBSET_DROP, cap)
            except OSError as exc:
                if exc.errno != errno.EINVAL:  # a capability this kernel does not know
                    raise


def apply(caps: dict[str, Any]) -> None:
    """Set effective/permitted/inheritable, then raise the ambient ones that can be. Raises OSError."""
    sc.capset(mask(caps.get("effective")), mask(caps.get("permitted")), mask(caps.get("inheritable")))
    sc.prctl(sc.PR_CAP_AMBIENT, sc.PR_CAP_AMBIENT_CLEAR_ALL)
    for name in caps.get("ambient") or []:
        if name not in CAPABILITIES:
            continue
        try:
            sc.prctl(sc.PR_CAP_AMBIENT, sc.PR_CAP_AMBIENT_RAISE, CAPABILITIES[name])
        except OSError as exc:
            if exc.errno != errno.EPERM:
                raise
