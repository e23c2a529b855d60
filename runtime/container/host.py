"""The host side of a container: its cgroups, its overlay root, and taking both down again.

Shared by the container facade (create, delete) and by checkpoint/restore
(a restore into a new container prepares the host the same way).
"""

from __future__ import annotations

import hashlib
import logging
import os
import signal
import time
from collections.abc import Callable
from typing import Any

from runtime.container.state import DEFAULT_ROOT, Action, ContainerState, StateStore, Status
from runtime.errors import CgroupError, ContainerBusyError, ContainerError, ContainerStateError
from runtime.linux import mounts
from runtime.linux.cgroups import DEFAULT_PARENT, Cgroups
from runtime.linux.fsmode import makedirs_private
from runtime.linux.procfs import process_alive
from runtime.oci.spec import Spec

__all__ = ["STOP_TIMEOUT", "cgroup_parent", "overlay_dirs", "process_record", "prepare_host", "destroy",
           "discard_container", "kill_cgroup", "release_network_lock"]

_log = logging.getLogger("criu_cr.container")

STOP_TIMEOUT = 10.0  # seconds for a SIGKILLed init to vanish


def overlay_dirs(container_dir: str) -> tuple[str, str]:
    """The upper (the container's filesystem changes) and work directories of its overlay root."""
    return os.path.join(container_dir, "overlay", "upper"), os.path.join(container_dir, "overlay", "work")


def cgroup_parent(state_root: str) -> str:
    """Where a state root's containers get their cgroups when the bundle names none.

    The default root keeps ``/criu-cr``; any other root gets ``/criu-cr-<8 hex
    of its path>``, so the same container id in two state roots (an import or a
    migration on one host, a test's private root) never shares a cgroup: deleting
    one would otherwise kill the other's processes.
    """
    root = os.path.realpath(state_root)
    if root == os.path.realpath(DEFAULT_ROOT):
        return DEFAULT_PARENT
    return f"{DEFAULT_PARENT}-{hashlib.sha256(root.encode()).hexdigest()[:8]}"


def process_record(spec: Spec) -> dict[str, Any]:
    """What exec needs of the spec's process, kept in the state."""
    p = spec.process
    return {"env": list(p.env), "cwd": p.cwd, "uid": p.uid, "gid": p.gid}


def prepare_host(store: StateStore, state: ContainerState, spec: Spec,
                 seed_upper: Callable[[str], None] | None = None) -> tuple[ContainerState, Cgroups]:
    """The host side of a container: its cgroups with the spec's resources, its overlay root.

    ``seed_upper`` fills the overlay's upper directory before the mount (a
    restored copy's filesystem changes). The cgroups are recorded in the
    state first, so a failure can clean them up. Raises CgroupError, OSError.
    """
    cg = Cgroups(spec.cgroups_path, state.id, parent=cgroup_parent(store.root))
    busy = cg.pids() if cg.exists() else []
    if busy:  # checked before the state records the cgroup: a cleanup must never kill these
        raise CgroupError(cg.path, f"already holds processes {busy[:8]} of another container (the same "
                                   f"cgroupsPath in another bundle or state root); give the bundle its own "
                                   f"linux.cgroupsPath, or remove that container first")
    state = state.replace(cgroups=cg.to_dict())
    store.write(state)
    cg.create()
    cg.apply(spec.resources)
    upper, work = overlay_dirs(store.dir(state.id))
    if seed_upper is not None:
        makedirs_private(upper, 0o755)  # the container's "/": as mount_overlay makes it
        seed_upper(upper)
    mounts.mount_overlay(spec.root.path, upper, work, state.rootfs)
    return state, cg


def destroy(store: StateStore, st: ContainerState, *, adopted: bool, force: bool = False) -> None:
    """Kill what is left and release everything the container holds on the host.

    An adopted container's cgroup is runc's: its processes are killed only
    with ``force`` or while its init lives.
    """
    cg = Cgroups.from_dict(st.cgroups) if st.cgroups else None
    others = cg.pids() if cg is not None and st.status == Status.CHECKPOINTED and not adopted and cg.exists() else []
    if others:
        # CRIU ended this container's tree when it dumped it: whatever runs in the cgroup now is
        # another container's (a restore of this checkpoint in another state root, a shared
        # cgroupsPath). Never kill it; leave the cgroup to it.
        _log.warning("container %r: its cgroup %s holds processes %s that are not its own; left alone",
                     st.id, cg.path, others[:8])
        cg = None
    alive = process_alive(st.init_pid, st.init_start_time)
    if alive:
        os.kill(st.init_pid, signal.SIGKILL)
    if cg is not None and cg.exists():
        if not adopted or alive or force:
            _sigkill(cg.pids())
        if st.status == Status.PAUSED or _frozen(cg):
            cg.thaw()
    deadline = time.monotonic() + STOP_TIMEOUT
    while process_alive(st.init_pid, st.init_start_time):
        if time.monotonic() > deadline:
            raise ContainerStateError(st.id, Status.RUNNING, Action.DELETE.verb, f"init {st.init_pid} did not die")
        time.sleep(0.02)
    # Mounts under our own directory are always ours (for an adopted container: a
    # restore's temporary bind of runc's rootfs), and must go before the directory is
    # removed -- removing it through a bind mount would delete what the mount shows.
    for mp in sorted(mounts.mounts_under(store.dir(st.id)), key=len, reverse=True):
        mounts.unmount(mp)
    if adopted:
        return  # the cgroups and other mounts belong to runc
    if cg is not None:
        cg.remove()
        _remove_stray_cgroups(st.id, cg)
        if os.path.dirname(cg.path) == cgroup_parent(store.root) != DEFAULT_PARENT:
            cg.remove_parent_if_empty()  # this state root's own /criu-cr-<hash>, never a bundle's parent


def _remove_stray_cgroups(cid: str, cg: Cgroups) -> None:
    """The container's cgroup path in hierarchies criu-cr does not manage (best effort, warns).

    Restores of images written before criu-cr kept CRIU to its own
    hierarchies made such directories (see :mod:`runtime.linux.cghier`).
    """
    from runtime.linux.cghier import host_hierarchies, remove_strays

    try:
        _, failed = remove_strays(cg.path, host_hierarchies(cg.paths))
    except OSError as exc:
        failed = [f"{exc.filename or ''}: {exc.strerror}"]
    if failed:
        _log.warning("container %r: could not remove cgroups %s", cid, ", ".join(failed))


def discard_container(store: StateStore, container_id: str) -> None:
    """Take a container that never ran for the user down completely (best effort; nothing raised).

    Used when making a container for a restore failed half-way.
    """
    if not store.exists(container_id):
        return
    deadline = time.monotonic() + STOP_TIMEOUT
    while True:  # a monitor recording its init's exit may hold the lock for a moment
        try:
            lock = store.lock(container_id)
            break
        except ContainerBusyError:
            if time.monotonic() > deadline:
                return
            time.sleep(0.02)
        except (ContainerError, OSError):
            return
    try:
        with lock:
            try:
                st = store.read(container_id)
            except ContainerError:
                st = None
            if st is not None:
                destroy(store, st, adopted=False, force=True)
                try:
                    release_network_lock(st)
                except OSError:
                    pass
            store.remove(container_id)
    except (ContainerError, OSError):
        pass  # the original error matters more


def kill_cgroup(st: ContainerState, timeout: float = 5.0) -> None:
    """SIGKILL every process in the container's cgroup and wait for them to go."""
    if not st.cgroups or st.adopted_from:
        return
    cg = Cgroups.from_dict(st.cgroups)
    if not cg.exists():
        return
    deadline = time.monotonic() + timeout
    while True:
        try:
            pids = cg.pids()
        except ContainerError:
            return
        if not pids:
            break
        _sigkill(pids)
        if cg.is_frozen():
            cg.thaw()  # a frozen task does not die
        if time.monotonic() > deadline:
            raise OSError(f"processes {pids} in the cgroup of container {st.id!r} did not die")
        time.sleep(0.02)


def _sigkill(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def release_network_lock(st: ContainerState) -> None:
    """Remove CRIU's network lock from the container's joined netns (none there is fine).

    A checkpointed container's netns stays locked until its restore, and a
    CRIU that died mid-operation leaves the lock too. Raises OSError.
    """
    path = st.joined_namespaces.get("network")
    if not path or not os.path.exists(path):
        return
    from runtime.net.netlock import release

    release(path)


def _frozen(cg: Cgroups) -> bool:
    try:
        return cg.is_frozen()
    except ContainerError:
        return False
