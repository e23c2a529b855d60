"""CRIU's kernel-facts cache (``/run/criu.kdat``) on hosts where ``/run`` is not a tmpfs.

Every CRIU run probes the kernel (measured here: ~20-25 ms of each
``criu check``) unless ``/run/criu.kdat`` holds the answers. CRIU writes
that file only when ``/run`` is a tmpfs -- a cache that a reboot clears --
but it reads it from any filesystem, checking only its size and two magic
numbers (the second is CRIU's build time) and deleting a stale one.

Where ``/run`` is a plain directory, :func:`ensure` makes the file the way
CRIU would: a short-lived child in a mount namespace of its own mounts a
tmpfs on ``/run`` and runs ``criu check``, which saves the cache there; the
child hands the bytes back and the file is installed on the real ``/run``.
Beside it, ``/run/criu-cr.kdat.json`` records the boot id and the CRIU
binary it was made for: a reboot or another CRIU binary drops the cache and
makes it again (the tmpfs guarantee, kept by hand). ``CRIU_CR_KDAT=0``
opts out (and removes a cache criu-cr made).
"""

from __future__ import annotations

import json
import os
import subprocess
from typing import Any

__all__ = ["KDAT_FILE", "STAMP_FILE", "OPT_OUT_ENV", "ensure", "stamp_for", "remove"]

KDAT_FILE = "/run/criu.kdat"  # CRIU's own name and place (KDAT_RUNDIR)
STAMP_FILE = "/run/criu-cr.kdat.json"
OPT_OUT_ENV = "CRIU_CR_KDAT"
_BOOT_ID = "/proc/sys/kernel/random/boot_id"
_MAX_KDAT = 1 << 20  # far above CRIU 4.2's ~1 KiB


def stamp_for(criu_path: str, boot_id: str) -> dict[str, Any]:
    """What a cache is valid for: this boot, this CRIU binary (path, size, mtime). Pure."""
    real = os.path.realpath(criu_path)
    st = os.stat(real)
    return {"boot_id": boot_id.strip(), "criu": real, "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def ensure(criu_path: str) -> str:
    """Make sure CRIU finds a valid kernel-facts cache; returns what was done.

    ``"disabled"`` (opted out), ``"tmpfs"`` (CRIU keeps its own),
    ``"present"``, ``"made"``, or ``"failed: <why>"``. Never raises: without
    a cache CRIU only takes longer.
    """
    if os.environ.get(OPT_OUT_ENV, "1") == "0":
        remove()
        return "disabled"
    try:
        if _is_tmpfs("/run"):
            return "tmpfs"
        wanted = stamp_for(criu_path, _read(_BOOT_ID))
        if _read_stamp() == wanted and os.path.isfile(KDAT_FILE):
            return "present"
        remove()
        data = _make(criu_path)
        _install(KDAT_FILE, data)
        _install(STAMP_FILE, json.dumps(wanted).encode())
        return "made"
    except (OSError, ValueError, subprocess.SubprocessError) as exc:
        return f"failed: {exc}"


def remove() -> None:
    """Remove the cache criu-cr made (and its stamp); a cache CRIU made on a tmpfs is left alone."""
    if not os.path.exists(STAMP_FILE):
        return
    for path in (KDAT_FILE, STAMP_FILE):
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


def _make(criu_path: str) -> bytes:
    """Run ``criu check`` with a tmpfs on /run in a private mount namespace; the cache it saved."""
    from runtime.linux import syscalls as sc

    r, w = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:  # the child: never returns
        code = 1
        try:
            os.close(r)
            sc.unshare(sc.CLONE_NEWNS)
            sc.mount(None, "/", None, sc.MS_REC | sc.MS_PRIVATE)  # nothing of this reaches the host
            sc.mount("tmpfs", "/run", "tmpfs", 0, "mode=0755,size=4m")
            subprocess.run([criu_path, "check"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, timeout=60, check=False)
            with open(KDAT_FILE, "rb") as f:
                os.write(w, f.read(_MAX_KDAT))
            code = 0
        finally:
            os._exit(code)
    os.close(w)
    try:
        chunks = []
        while chunk := os.read(r, 65536):
            chunks.append(chunk)
    finally:
        os.close(r)
        _, status = os.waitpid(pid, 0)
    data = b"".join(chunks)
    if os.waitstatus_to_exitcode(status) != 0 or not data:
        raise OSError(f"criu check saved no kernel-facts cache ({criu_path})")
    return data


def _install(path: str, data: bytes) -> None:
    tmp = f"{path}.tmp.{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    os.rename(tmp, path)


def _read(path: str) -> str:
    with open(path, encoding="ascii") as f:
        return f.read()


def _read_stamp() -> dict[str, Any] | None:
    try:
        with open(STAMP_FILE, encoding="utf-8") as f:
            data = json.load(f)
        return data if isinstance(data, dict) else None
    except (OSError, ValueError):
        return None


def _is_tmpfs(path: str) -> bool:
    """Whether the filesystem mounted at or above ``path`` is a tmpfs (the deepest mount wins)."""
    from runtime.linux.procfs import read_mountinfo

    best = None
    for entry in read_mountinfo():
        mp = entry.mountpoint
        if path == mp or path.startswith(mp.rstrip("/") + "/"):
            if best is None or len(mp) >= len(best.mountpoint):
                best = entry
    return best is not None and best.fstype == "tmpfs"
