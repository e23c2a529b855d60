"""The one thin syscall module of the runtime (ctypes with ``use_errno=True``).

Python 3.11 has no ``os.unshare``/``os.setns``; mount, pivot_root and prctl
are not in the stdlib at all. Every failure becomes
``OSError(errno, strerror, path)`` so the message names what it acted on.
"""

from __future__ import annotations

import ctypes
import errno as _errno
import fcntl
import os
import socket
import struct

__all__ = [
    "CLONE_NEWNS", "CLONE_NEWUTS", "CLONE_NEWIPC", "CLONE_NEWPID", "CLONE_NEWNET", "CLONE_NEWCGROUP",
    "CLONE_NEWUSER", "CLONE_NEWTIME", "NAMESPACE_FLAGS", "PROC_NS_NAMES",
    "MS_RDONLY", "MS_NOSUID", "MS_NODEV", "MS_NOEXEC", "MS_SYNCHRONOUS", "MS_REMOUNT", "MS_MANDLOCK",
    "MS_DIRSYNC", "MS_NOATIME", "MS_NODIRATIME", "MS_BIND", "MS_MOVE", "MS_REC", "MS_SILENT",
    "MS_UNBINDABLE", "MS_PRIVATE", "MS_SLAVE", "MS_SHARED", "MS_RELATIME", "MS_STRICTATIME",
    "MS_LAZYTIME", "MNT_DETACH", "MNT_FORCE",
    "PR_SET_PDEATHSIG", "PR_SET_CHILD_SUBREAPER", "PR_SET_NO_NEW_PRIVS", "PR_SET_KEEPCAPS",
    "PR_CAPBSET_DROP", "PR_CAP_AMBIENT", "PR_CAP_AMBIENT_RAISE", "PR_CAP_AMBIENT_CLEAR_ALL",
    "unshare", "setns", "mount", "umount2", "pivot_root", "sethostname", "prctl", "capset", "link_up",
]

CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
CLONE_NEWTIME = 0x00000080

# OCI namespace type -> clone flag, and -> name under /proc/PID/ns.
NAMESPACE_FLAGS = {
    "mount": CLONE_NEWNS, "uts": CLONE_NEWUTS, "ipc": CLONE_NEWIPC, "pid": CLONE_NEWPID,
    "network": CLONE_NEWNET, "cgroup": CLONE_NEWCGROUP, "user": CLONE_NEWUSER, "time": CLONE_NEWTIME,
}
PROC_NS_NAMES = {
    "mount": "mnt", "uts": "uts", "ipc": "ipc", "pid": "pid", "network": "net", "cgroup": "cgroup",
    "user": "user",
}

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_SYNCHRONOUS = 16
MS_REMOUNT = 32
MS_MANDLOCK = 64
MS_DIRSYNC = 128
MS_NOATIME = 1024
MS_NODIRATIME = 2048
MS_BIND = 4096
MS_MOVE = 8192
MS_REC = 16384
MS_SILENT = 32768
MS_UNBINDABLE = 1 << 17
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_SHARED = 1 << 20
MS_RELATIME = 1 << 21
MS_STRICTATIME = 1 << 24
MS_LAZYTIME = 1 << 25

MNT_FORCE = 1
MNT_DETACH = 2

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38
PR_SET_KEEPCAPS = 8
PR_CAPBSET_DROP = 24
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_RAISE = 2
PR_CAP_AMBIENT_CLEAR_ALL = 4

_LINUX_CAPABILITY_VERSION_3 = 0x20080522

# glibc has no pivot_root wrapper; the number differs per architecture.
_SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "ppc64le": 203, "s390x": 217}

_SIOCGIFFLAGS = 0x8913
_SIOCSIFFLAGS = 0x8914
_IFF_UP = 0x1


def _load_libc() -> ctypes.CDLL:
    # dlopen(NULL): the symbols of the running interpreter, libc included. Not
    # ctypes.util.find_library, which forks ldconfig on every call.
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    return libc


_LIBC = _load_libc()  # loaded once; a constant handle


def _libc() -> ctypes.CDLL:
    return _LIBC


def _check(ret: int, what: str, path: str | None = None) -> int:
    if ret < 0:
        err = ctypes.get_errno()
        detail = f"{what}: {os.strerror(err)}"
        raise OSError(err, detail, path) if path is not None else OSError(err, detail)
    return ret


def _b(value: str | os.PathLike[str] | None) -> bytes | None:
    return None if value is None else os.fsencode(value)


def unshare(flags: int) -> None:
    """unshare(2). Raises OSError."""
    _check(_libc().unshare(ctypes.c_int(flags)), "unshare")


def setns(fd: int, nstype: int = 0, path: str | None = None) -> None:
    """setns(2) into the namespace open at ``fd``; ``path`` only names it in errors."""
    _check(_libc().setns(ctypes.c_int(fd), ctypes.c_int(nstype)), "setns", path)


def mount(source: str | None, target: str, fstype: str | None, flags: int = 0, data: str | None = None) -> None:
    """mount(2). Raises OSError naming ``target``."""
    ret = _libc().mount(_b(source), _b(target), _b(fstype), ctypes.c_ulong(flags), _b(data))
    _check(ret, f"mount {source or ''} ({fstype or 'none'})", target)


def umount2(target: str, flags: int = 0) -> None:
    """umount2(2). Raises OSError naming ``target``."""
    _check(_libc().umount2(_b(target), ctypes.c_int(flags)), "umount", target)


def pivot_root(new_root: str, put_old: str) -> None:
    """pivot_root(2). Raises OSError naming ``new_root``."""
    nr = _SYS_PIVOT_ROOT.get(os.uname().machine)
    if nr is None:
        raise OSError(_errno.ENOSYS, f"pivot_root: unsupported architecture {os.uname().machine}")
    _check(_libc().syscall(ctypes.c_long(nr), _b(new_root), _b(put_old)), "pivot_root", new_root)


def sethostname(name: str) -> None:
    """sethostname(2). Raises OSError."""
    raw = name.encode()
    _check(_libc().sethostname(raw, ctypes.c_size_t(len(raw))), f"sethostname {name!r}")


def prctl(option: int, arg2: int = 0, arg3: int = 0) -> None:
    """prctl(2) with up to two arguments (the others zero). Raises OSError."""
    z = ctypes.c_ulong(0)
    _check(_libc().prctl(ctypes.c_int(option), ctypes.c_ulong(arg2), ctypes.c_ulong(arg3), z, z),
           f"prctl({option}, {arg2})")


def capset(effective: int, permitted: int, inheritable: int) -> None:
    """capset(2) for the calling thread; the sets are 64-bit masks. Raises OSError."""
    header = (ctypes.c_uint32 * 2)(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (ctypes.c_uint32 * 6)()
    for i, word in enumerate((0, 1)):
        shift = 32 * word
        data[3 * i] = (effective >> shift) & 0xFFFFFFFF
        data[3 * i + 1] = (permitted >> shift) & 0xFFFFFFFF
        data[3 * i + 2] = (inheritable >> shift) & 0xFFFFFFFF
    _check(_libc().capset(header, data), "capset")


def link_up(name: str = "lo") -> None:
    """Set a network interface of the current netns up (SIOCSIFFLAGS). Raises OSError."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        req = struct.pack("16sh", name.encode(), 0)
        try:
            flags = struct.unpack("16sh", fcntl.ioctl(s.fileno(), _SIOCGIFFLAGS, req))[1]
            fcntl.ioctl(s.fileno(), _SIOCSIFFLAGS, struct.pack("16sh", name.encode(), flags | _IFF_UP))
        except OSError as exc:
            raise OSError(exc.errno, f"set link up: {exc.strerror}", name) from exc
