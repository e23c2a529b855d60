"""Busybox OCI bundles for tests: a static busybox, applet links, and ``runc spec``'s default config."""

from __future__ import annotations

import copy
import json
import os
import shutil
from typing import Any

__all__ = ["BUSYBOX", "DEFAULT_APPLETS", "default_spec", "build_busybox_bundle"]

BUSYBOX = "/bin/busybox"
DEFAULT_APPLETS = ("sh", "sleep", "httpd", "nc", "cat", "echo", "seq", "wget", "ls", "ps", "hostname",
                   "mount", "id", "true", "false", "env", "mkdir", "touch", "date", "kill", "ip", "ifconfig",
                   "head", "tail", "grep", "wc", "test", "[", "readlink", "stat", "uname")

_CAPS = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]

# What `runc spec` (runc 1.1) writes, field for field.
_DEFAULT_SPEC: dict[str, Any] = {
    "ociVersion": "1.0.2-dev",
    "process": {
        "terminal": True,
        "user": {"uid": 0, "gid": 0},
        "args": ["sh"],
        "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"],
        "cwd": "/",
        "capabilities": {"bounding": _CAPS, "effective": _CAPS, "permitted": _CAPS, "ambient": _CAPS},
        "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
        "noNewPrivileges": True,
    },
    "root": {"path": "rootfs", "readonly": True},
    "hostname": "runc",
    "mounts": [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
         "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
         "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
    ],
    "linux": {
        "resources": {"devices": [{"allow": False, "access": "rwm"}]},
        "namespaces": [{"type": "pid"}, {"type": "network"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}],
        "maskedPaths": ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                        "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware",
                        "/proc/scsi"],
        "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"],
    },
}


def default_spec() -> dict[str, Any]:
    """A fresh copy of ``runc spec``'s default ``config.json`` (no runc needed)."""
    return copy.deepcopy(_DEFAULT_SPEC)


def build_busybox_bundle(directory: str | os.PathLike[str], args: list[str] | tuple[str, ...] = ("sh",), *,
                         applets: tuple[str, ...] | list[str] = DEFAULT_APPLETS, netns_path: str | None = None,
                         cgroups_path: str | None = None, hostname: str | None = "criu-cr",
                         terminal: bool = False, readonly: bool = False, env: list[str] | None = None,
                         memory_limit: int | None = None, pids_limit: int | None = None,
                         files: dict[str, str | bytes] | None = None, busybox: str = BUSYBOX,
                         spec: dict[str, Any] | None = None) -> str:
    """Write an OCI bundle (``config.json`` + ``rootfs/``) into ``directory``; return its path.

    The rootfs holds a static busybox with ``applets`` linked in /bin, /etc/passwd
    and /etc/group, and ``files`` (container path -> content). The config is
    :func:`default_spec` (or ``spec``) with ``args``, terminal off by default,
    a writable root, ``netns_path`` joined instead of a new netns, and the
    given cgroups path and limits. Raises FileNotFoundError without busybox.
    """
    bundle = os.path.abspath(os.fspath(directory))
    rootfs = os.path.join(bundle, "rootfs")
    for d in ("bin", "etc", "proc", "sys", "dev", "tmp", "www", "root", "var", "run"):
        os.makedirs(os.path.join(rootfs, d), exist_ok=True)
    os.chmod(os.path.join(rootfs, "tmp"), 0o1777)
    if not os.path.exists(busybox):
        raise FileNotFoundError(f"static busybox not found at {busybox} (apt-get install busybox-static)")
    shutil.copy2(busybox, os.path.join(rootfs, "bin", "busybox"))
    for applet in applets:
        link = os.path.join(rootfs, "bin", applet)
        if not os.path.lexists(link):
            os.symlink("busybox", link)
    _write(rootfs, "/etc/passwd", "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n")
    _write(rootfs, "/etc/group", "root:x:0:\nnogroup:x:65534:\n")
    _write(rootfs, "/etc/hosts", "127.0.0.1 localhost\n")
    for path, content in (files or {}).items():
        _write(rootfs, path, content)
    config = copy.deepcopy(spec) if spec is not None else default_spec()
    config["process"]["args"] = list(args)
    config["process"]["terminal"] = terminal
    if env is not None:
        config["process"]["env"] = list(env)
    config["root"]["readonly"] = readonly
    if hostname is None:
        config.pop("hostname", None)
    else:
        config["hostname"] = hostname
    linux = config.setdefault("linux", {})
    if netns_path is not None:
        for ns in linux.setdefault("namespaces", []):
            if ns["type"] == "network":
                ns["path"] = netns_path
    if cgroups_path is not None:
        linux["cgroupsPath"] = cgroups_path
    resources = linux.setdefault("resources", {})
    if memory_limit is not None:
        resources["memory"] = {"limit": memory_limit}
    if pids_limit is not None:
        resources["pids"] = {"limit": pids_limit}
    with open(os.path.join(bundle, "config.json"), "w", encoding="utf-8") as f:
        json.dump(config, f, indent=2)
    return bundle


def _write(rootfs: str, path: str, content: str | bytes) -> None:
    target = os.path.join(rootfs, path.lstrip("/"))
    os.makedirs(os.path.dirname(target), exist_ok=True)
    with open(target, "wb") as f:
        f.write(content.encode() if isinstance(content, str) else content)
