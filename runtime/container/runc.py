"""Adopt a container that runc created, by reading runc's ``state.json``.

runc is never executed: its state directory (``<runc_root>/<id>/state.json``,
root ``/run/runc`` by default) tells us the init pid and its start time, the
bundle, the namespaces and the cgroup directories. The init pid is checked
against ``/proc`` so a reused pid is not mistaken for the container.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from runtime.container.state import Status
from runtime.errors import CgroupError, ContainerError, ContainerNotFoundError, ContainerStateError
from runtime.linux.cgroups import Cgroups
from runtime.linux.procfs import proc_start_time, process_alive

__all__ = ["AdoptedContainer", "read_runc_state", "RUNC_ROOT"]

RUNC_ROOT = "/run/runc"

# runc's clone-flag names -> runtime-spec namespace types.
_NS_TYPES = MappingProxyType({
    "NEWPID": "pid", "NEWNET": "network", "NEWNS": "mount", "NEWIPC": "ipc", "NEWUTS": "uts",
    "NEWCGROUP": "cgroup", "NEWUSER": "user", "NEWTIME": "time",
})

_VALID_ID = re.compile(r"^[\w+\-.]+$")


@dataclass(frozen=True, slots=True, kw_only=True)
class AdoptedContainer:
    """What runc recorded about one container, checked against the live system.

    ``namespace_paths`` holds every namespace of the init process (runc lists
    the ones shared with the host too); ``namespaces`` holds only those the
    container's config asked for, with the joined path or ``None`` if runc
    created it. ``status`` is ``created``, ``running``, ``paused`` or ``stopped``.
    """

    id: str
    init_pid: int
    init_start_time: int
    bundle: str
    rootfs: str
    namespace_paths: dict[str, str]
    namespaces: dict[str, str | None]
    cgroup_paths: dict[str, str]
    status: Status
    created: str
    state_dir: str
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def cgroups(self) -> Cgroups:
        """The container's cgroups, for freeze/thaw/pids and CRIU's cgroup options."""
        return Cgroups.from_paths(self.cgroup_paths)


def read_runc_state(container_id: str, runc_root: str = RUNC_ROOT, *,
                    allow_stopped: bool = False) -> AdoptedContainer:
    """Read runc's state for ``container_id`` and verify its init process.

    Raises :class:`ContainerNotFoundError` when runc has no such container,
    :class:`ContainerStateError` when its init process is gone or its pid was
    reused (unless ``allow_stopped``: then ``status`` is ``"stopped"``), and
    :class:`ContainerError` when the state file cannot be understood.
    """
    if not _VALID_ID.match(container_id) or container_id in (".", ".."):
        raise ContainerNotFoundError(container_id, runc_root)
    state_dir = os.path.join(runc_root, container_id)
    path = os.path.join(state_dir, "state.json")
    try:
        with open(path, encoding="utf-8") as f:
            raw = json.load(f)
    except FileNotFoundError:
        raise ContainerNotFoundError(container_id, runc_root) from None
    except (OSError, ValueError) as exc:
        raise ContainerError(f"cannot read runc state {path}: {exc}") from exc

    try:
        pid = int(raw["init_process_pid"])
        start = int(raw["init_process_start"])
        config = raw.get("config") or {}
        labels = dict(l.split("=", 1) for l in config.get("labels") or [] if "=" in l)
        ns_paths = {_NS_TYPES.get(k, k.lower()): v for k, v in (raw.get("namespace_paths") or {}).items()}
        namespaces = {_NS_TYPES.get(n["type"], n["type"].lower()): (n.get("path") or None)
                      for n in config.get("namespaces") or []}
        cgroup_paths = dict(raw.get("cgroup_paths") or {})
        rootfs = config.get("rootfs", "")
        created = raw.get("created", "")
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ContainerError(f"runc state {path} is not in the expected format: {exc!r}") from exc

    status = _status(pid, start, state_dir, cgroup_paths)
    if status == Status.STOPPED and not allow_stopped:
        detail = (f"pid {pid} now belongs to another process (start time differs from runc's record)"
                  if proc_start_time(pid) is not None else f"its init process {pid} has exited")
        raise ContainerStateError(container_id, Status.STOPPED, "adopt", detail)
    return AdoptedContainer(
        id=raw.get("id", container_id), init_pid=pid, init_start_time=start,
        bundle=labels.get("bundle", ""), rootfs=rootfs, namespace_paths=ns_paths, namespaces=namespaces,
        cgroup_paths=cgroup_paths, status=status, created=created, state_dir=state_dir, raw=raw,
    )


def _status(pid: int, start: int, state_dir: str, cgroup_paths: dict[str, str]) -> Status:
    """runc's rules: dead or reused pid -> stopped; exec fifo still there -> created; frozen -> paused."""
    if not process_alive(pid, start):
        return Status.STOPPED
    if os.path.exists(os.path.join(state_dir, "exec.fifo")):
        return Status.CREATED
    try:
        if cgroup_paths and Cgroups.from_paths(cgroup_paths).is_frozen():
            return Status.PAUSED
    except CgroupError:
        pass  # no readable freezer: runc would call it running as well
    return Status.RUNNING
