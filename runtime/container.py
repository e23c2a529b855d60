"""The ``Container`` object: create, start, run, inspect, pause, kill, delete (no runc).

Every operation takes the container's lock (a second concurrent one gets
:class:`ContainerBusyError`) and re-reads ``state.json`` under it. The status
is recomputed from the init process: a recorded init that is gone, or whose
pid now belongs to another process (different start time), means ``stopped``.
"""

from __future__ import annotations

import functools
import os
import select
import signal
import time
import warnings
from collections.abc import Callable
from typing import Any

from . import caps, mounts, pending
from . import exec_in as _exec
from .cgroups import Cgroups
from .errors import ContainerBusyError, ContainerError, ContainerNotFoundError, ContainerStateError, SpecError
from .fsmode import makedirs_private
from .init import EXEC_FIFO, InitConfig, spawn_init
from .monitor import read_report, spawn_monitor
from .spec import Spec, load_spec
from .state import (ContainerState, StateStore, mark_stopped, now_rfc3339, proc_start_time, process_alive,
                    validate_id)
from .syscalls import PROC_NS_NAMES

__all__ = ["Container", "ContainerStartError", "CREATE_TIMEOUT", "STOP_TIMEOUT"]

CREATE_TIMEOUT = 30.0  # seconds for the init to report ready
STOP_TIMEOUT = 10.0  # seconds for a SIGKILLed init to vanish
LOG_FILE = "ctr.log"
OCI_VERSION = "1.0.2"
_LIVE = ("created", "running", "paused")
_DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class ContainerStartError(ContainerError):
    """The container's init failed while being set up; ``reason`` is what it reported."""

    def __init__(self, container_id: str, reason: str) -> None:
        self.container_id = container_id
        self.reason = reason
        super().__init__(f"container {container_id!r}: {reason}")


class Container:
    """One container under a state root. Get one with :meth:`create`, :meth:`run` or :meth:`load`."""

    def __init__(self, store: StateStore, state: ContainerState, warnings: tuple[str, ...] = ()) -> None:
        self._store = store
        self._state = state
        self.warnings = warnings  # what the bundle asked for but criu-cr does not honour (spec warnings)

    # -- construction ---------------------------------------------------------

    @property
    def id(self) -> str:
        return self._state.id

    @property
    def root(self) -> str:
        return self._store.root

    @property
    def store(self) -> StateStore:
        """The state store this container lives in (for modules that extend the lifecycle)."""
        return self._store

    @property
    def directory(self) -> str:
        return self._store.dir(self.id)

    @classmethod
    def load(cls, container_id: str, root: str | None = None) -> "Container":
        """The recorded container. Raises ContainerNotFoundError."""
        store = StateStore(root)
        return cls(store, store.read(validate_id(container_id)))

    @classmethod
    def list(cls, root: str | None = None) -> list["Container"]:
        """Every container under ``root``, sorted by id."""
        store = StateStore(root)
        return [cls(store, st) for st in store.iter_states()]

    @classmethod
    def create(cls, container_id: str, bundle: str, root: str | None = None) -> "Container":
        """Set up a container from an OCI bundle; its process waits for :meth:`start`.

        Raises SpecError (bundle), ContainerExistsError, CgroupError,
        ContainerStartError (setup inside the container failed), OSError.
        Nothing is left behind on failure.
        """
        validate_id(container_id)
        spec = load_spec(bundle)
        _check_supported(spec)
        store = StateStore(root)
        store.create_dir(container_id)
        lock = store.lock(container_id)
        try:
            state = ContainerState(id=container_id, status="creating", bundle=spec.bundle,
                                   rootfs=store.path(container_id, "rootfs"), created=now_rfc3339(),
                                   annotations=dict(spec.annotations))
            store.write(state)
            try:
                state = _create(store, state, spec)
            except BaseException:
                _destroy(store, store.read(container_id), adopted=False)
                store.remove(container_id)
                raise
            return cls(store, state, spec.warnings)
        finally:
            lock.release()

    @classmethod
    def run(cls, container_id: str, bundle: str, root: str | None = None) -> "Container":
        """:meth:`create` then :meth:`start`; returns once the process runs (detached)."""
        ctr = cls.create(container_id, bundle, root)
        try:
            ctr.start()
        except BaseException:
            ctr.delete(force=True)
            raise
        return ctr

    @classmethod
    def adopt_runc(cls, container_id: str, runc_root: str = "/run/runc", root: str | None = None) -> "Container":
        """Register a container that runc created (read from runc's state; runc is not run).

        There is no monitor and its output is wherever runc sent it; its
        cgroups and mounts stay runc's (``delete`` only forgets it, or kills
        it with ``force``). Raises ContainerNotFoundError, ContainerStateError
        (its init is gone), ContainerExistsError.
        """
        from .runc import read_runc_state

        validate_id(container_id)
        adopted = read_runc_state(container_id, runc_root)
        store = StateStore(root)
        store.create_dir(container_id)
        with store.lock(container_id):
            namespaces = {t: (p or adopted.namespace_paths.get(t, f"/proc/{adopted.init_pid}/ns/{PROC_NS_NAMES[t]}"))
                          for t, p in adopted.namespaces.items()}
            process = (adopted.raw.get("config") or {}).get("process") or {}
            state = ContainerState(
                id=container_id, status=adopted.status, bundle=adopted.bundle, rootfs=adopted.rootfs,
                created=adopted.created or now_rfc3339(), init_pid=adopted.init_pid,
                init_start_time=adopted.init_start_time, namespaces=namespaces,
                joined_namespaces={t: p for t, p in adopted.namespaces.items() if p},
                cgroups=adopted.cgroups().to_dict() if adopted.cgroup_paths else {},
                adopted_from="runc",
                extra={"runc_root": runc_root, "runc_state_dir": adopted.state_dir,
                       "process": {"env": list(process.get("env") or [_DEFAULT_PATH]),
                                   "cwd": process.get("cwd") or "/"}})
            store.write(state)
        return cls(store, state)

    # -- inspection -----------------------------------------------------------

    def refresh(self) -> ContainerState:
        """Re-read state.json; returns the record with its live status.

        A record of an interrupted operation is settled first when the
        container's lock is free (see :mod:`runtime.pending`).
        """
        st = self._store.read(self.id)
        if st.extra.get(pending.PENDING_KEY):
            try:
                with self._store.lock(self.id):
                    st = pending.settle(self._store, self._store.read(self.id))
            except ContainerBusyError:
                pass  # in progress: show the record as it is
        self._state = _live(st)
        if not self.monitor_alive():
            warnings.warn(f"container {self.id!r}: its monitor (pid {st.monitor_pid}) is gone: output is no "
                          "longer written to its log and writes to stdout may fail; checkpoint and restore it "
                          "to get a new monitor", RuntimeWarning, stacklevel=2)
        return self._state

    def monitor_alive(self) -> bool:
        """Whether the process that collects a live container's output still runs (True when it has none)."""
        st = self._state
        if st.status not in _LIVE or st.adopted_from or not st.monitor_pid:
            return True
        return proc_start_time(st.monitor_pid) is not None

    @property
    def status(self) -> str:
        return self.refresh().status

    @property
    def init_pid(self) -> int:
        return self._state.init_pid

    def state(self) -> dict[str, Any]:
        """OCI-style state (``ociVersion``, ``id``, ``status``, ``pid``, ``bundle``...) plus criu-cr's fields."""
        st = self.refresh()
        return {
            "ociVersion": OCI_VERSION, "id": st.id, "status": st.status,
            "pid": st.init_pid if st.status in _LIVE else 0, "bundle": st.bundle, "rootfs": st.rootfs,
            "created": st.created, "annotations": st.annotations, "monitorPid": st.monitor_pid,
            "exitStatus": st.exit_status, "namespaces": st.namespaces, "cgroups": st.cgroups,
            "stdio": st.stdio, "adoptedFrom": st.adopted_from, "monitorAlive": self.monitor_alive(),
        }

    def ps(self) -> list[int]:
        """Host pids of the container's processes (its cgroup, else just init)."""
        st = self.refresh()
        if st.cgroups:
            return Cgroups.from_dict(st.cgroups).pids()
        return [st.init_pid] if st.status in _LIVE else []

    def logs(self) -> bytes:
        """Everything the container wrote to stdout/stderr so far."""
        try:
            with open(self._store.path(self.id, LOG_FILE), "rb") as f:
                return f.read()
        except FileNotFoundError:
            return b""

    def wait(self, timeout: float | None = None) -> int:
        """Block until the container stops; return its exit status (None-safe: -1 if unknown).

        Raises TimeoutError.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                st = self.refresh()
            except ContainerNotFoundError:
                return -1
            if st.status == "stopped" and (st.exit_status is not None or st.monitor_pid == 0
                                            or proc_start_time(st.monitor_pid) is None):
                return -1 if st.exit_status is None else st.exit_status
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"container {self.id!r} still {st.status} after {timeout} s")
            time.sleep(0.05)

    # -- operations -----------------------------------------------------------

    def start(self) -> None:
        """Let the created process exec. Raises ContainerStateError, ContainerBusyError."""
        with self._store.lock(self.id):
            st = current(self._store, self.id)
            if st.status != "created":
                raise ContainerStateError(self.id, st.status, "start")
            fifo_dir = st.extra.get("runc_state_dir") or self._store.dir(self.id)
            _release_exec(os.path.join(fifo_dir, EXEC_FIFO), st)
            self._state = st.replace(status="running")
            self._store.write(self._state)

    def pause(self) -> None:
        """Freeze every process of the container. Raises ContainerStateError, CgroupError."""
        with self._store.lock(self.id):
            st = self._need(("running",), "pause")
            Cgroups.from_dict(st.cgroups).freeze()
            self._state = st.replace(status="paused")
            self._store.write(self._state)

    def resume(self) -> None:
        """Thaw a paused container. Raises ContainerStateError, CgroupError."""
        with self._store.lock(self.id):
            st = self._need(("paused",), "resume")
            Cgroups.from_dict(st.cgroups).thaw()
            self._state = st.replace(status="running")
            self._store.write(self._state)

    def kill(self, sig: int = signal.SIGTERM) -> None:
        """Send ``sig`` to the init process. Raises ContainerStateError.

        As for any pid 1, signals without a handler in the process (SIGTERM to
        a plain ``sh``) are ignored; SIGKILL always works.
        """
        with self._store.lock(self.id):
            st = self._need(_LIVE, "kill")
            os.kill(st.init_pid, sig)

    def delete(self, force: bool = False) -> None:
        """Remove the container: processes (when ``force``), cgroups, mounts, overlay, state.

        A running or paused container needs ``force``; a created one is killed.
        Raises ContainerStateError, ContainerBusyError, CgroupError.
        """
        with self._store.lock(self.id):
            st = current(self._store, self.id)
            if st.status in ("running", "paused") and not force:
                raise ContainerStateError(self.id, st.status, "delete", "stop it first, or force")
            _destroy(self._store, st, adopted=st.adopted_from is not None, force=force)
            # A checkpointed container's netns is locked until its restore; a CRIU that
            # died mid-checkpoint leaves the lock too. Nothing of it may outlive the container.
            _release_network_lock(st)
            self._store.remove(self.id)

    def exec(self, argv: list[str], *, env: list[str] | None = None, cwd: str | None = None,
             capture: bool = True, timeout: float | None = None) -> _exec.ExecResult:
        """Run ``argv`` inside the running container (its namespaces, root and cgroups).

        With ``capture`` the output is returned, else it goes to this process's
        stdout/stderr. Raises ContainerStateError, TimeoutError, OSError.
        """
        with self._store.lock(self.id):
            st = self._need(("running",), "exec in")
        proc = st.extra.get("process", {})
        return _exec.exec_in(
            init_pid=st.init_pid, cgroups=Cgroups.from_dict(st.cgroups) if st.cgroups else None,
            argv=list(argv), env=list(env if env is not None else proc.get("env") or [_DEFAULT_PATH]),
            cwd=cwd or proc.get("cwd", "/"), uid=proc.get("uid", 0), gid=proc.get("gid", 0),
            capture=capture, timeout=timeout)

    # -- checkpoint / restore (runtime.checkpoint) -----------------------------

    def checkpoint(self, opts: Any = None, *, criu_path: str | None = None, **kwargs: Any) -> Any:
        """Checkpoint this running container; see :func:`runtime.checkpoint.checkpoint`.

        ``opts`` is a CheckpointOptions, or give its fields as keywords
        (``leave_running=True``...); ``client=`` and ``notify=`` (a
        criu_rpc.NotifyHandler) pass through. Raises ContainerStateError, CheckpointError.
        """
        from . import checkpoint as cr

        client = kwargs.pop("client", None)
        notify = kwargs.pop("notify", None)
        return cr.checkpoint(self, opts or cr.CheckpointOptions(**kwargs), criu_path=criu_path, client=client,
                             notify=notify)

    def restore(self, opts: Any = None, *, criu_path: str | None = None, **kwargs: Any) -> Any:
        """Restore this checkpointed container; see :func:`runtime.checkpoint.restore`.

        Raises ContainerStateError ("container X is running"), RestoreError.
        """
        from . import checkpoint as cr

        notify = kwargs.pop("notify", None)
        return cr.restore(self, opts or cr.RestoreOptions(**kwargs), criu_path=criu_path, notify=notify)

    @classmethod
    def restore_new(cls, container_id: str, image_path: str, *, bundle: str | None = None,
                    root: str | None = None, criu_path: str | None = None, **kwargs: Any) -> Any:
        """Make container ``container_id`` from a checkpoint at ``image_path`` and restore it.

        Returns the RestoreResult (``Container.load(container_id)`` gives the container).

        ``bundle`` defaults to the checkpointed container's. Nothing is left
        behind on failure. Raises RestoreError, ContainerExistsError, SpecError.
        """
        from . import checkpoint as cr

        opts = cr.RestoreOptions(image_path=image_path, bundle=bundle, **kwargs)
        return cr.restore(None, opts, container_id=container_id, root=root, criu_path=criu_path)

    def _need(self, statuses: tuple[str, ...], action: str) -> ContainerState:
        st = current(self._store, self.id)
        if st.status not in statuses:
            raise ContainerStateError(self.id, st.status, action)
        self._state = st
        return st


# -- helpers ----------------------------------------------------------------------

def _check_supported(spec: Spec) -> None:
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


def _live(st: ContainerState) -> ContainerState:
    if st.status in _LIVE or st.status == "creating":
        if not process_alive(st.init_pid, st.init_start_time):
            return st.replace(status="stopped")
    return st


def current(store: StateStore, container_id: str) -> ContainerState:
    """The container's state with its live status, after settling an interrupted operation.

    Call with the container's lock held. Raises ContainerNotFoundError,
    ContainerBusyError (an orphaned CRIU or restore still at work), OSError.
    """
    return _live(pending.settle(store, store.read(container_id)))


def overlay_dirs(container_dir: str) -> tuple[str, str]:
    """The upper (the container's filesystem changes) and work directories of its overlay root."""
    return os.path.join(container_dir, "overlay", "upper"), os.path.join(container_dir, "overlay", "work")


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
    cg = Cgroups(spec.cgroups_path, state.id)
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


def _create(store: StateStore, state: ContainerState, spec: Spec) -> ContainerState:
    cid = state.id
    state, cg = prepare_host(store, state, spec)
    d = store.dir(cid)
    fifo = os.path.join(d, EXEC_FIFO)
    os.mkfifo(fifo, 0o600)
    os.chown(fifo, spec.process.uid, spec.process.gid)  # init opens it after its uid switch
    out_r, out_w = os.pipe2(os.O_CLOEXEC)
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    rep_r, rep_w = os.pipe2(os.O_CLOEXEC)
    stdio = {"stdin": "/dev/null", "stdout": f"pipe:[{os.fstat(out_w).st_ino}]",
             "stderr": f"pipe:[{os.fstat(err_w).st_ino}]"}
    cfg = InitConfig(spec=spec, rootfs=state.rootfs, state_dir=d, cgroups=cg,
                     stdout_w=out_w, stderr_w=err_w, report_w=rep_w)

    def produce_init() -> int:
        try:
            return spawn_init(cfg)
        finally:
            os.close(out_w)
            os.close(err_w)

    try:
        spawn_monitor(
            log_path=os.path.join(d, LOG_FILE), output_fds=(out_r, err_r), report_w=rep_w,
            keep_fds=(out_w, err_w), produce_init=produce_init,
            on_exit=functools.partial(mark_stopped, store.root, cid))
    except BaseException:
        os.close(rep_r)
        raise
    finally:
        # The monitor holds its copies now; ours would keep the pipes from reaching EOF.
        for fd in (out_r, out_w, err_r, err_w, rep_w):
            os.close(fd)
    messages = read_report(rep_r, CREATE_TIMEOUT)
    init_pid = int(messages.get("init", 0))
    state = state.replace(monitor_pid=int(messages.get("monitor", 0)), init_pid=init_pid,
                          init_start_time=(proc_start_time(init_pid) or 0) if init_pid else 0)
    if "error" in messages or not messages.get("ready") or not init_pid:
        store.write(state)
        raise ContainerStartError(cid, messages.get("error", "the container's init exited during setup"))
    namespaces = {}
    for ns in spec.namespaces:
        namespaces[ns.type] = ns.path or f"/proc/{init_pid}/ns/{PROC_NS_NAMES[ns.type]}"
    state = state.replace(
        status="created", namespaces=namespaces,
        joined_namespaces={ns.type: ns.path for ns in spec.namespaces if ns.path}, stdio=stdio,
        extra={"process": process_record(spec)})
    store.write(state)
    return state


def _release_exec(fifo: str, st: ContainerState) -> None:
    """Open exec.fifo for reading and wait for init's byte; then remove the fifo."""
    fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        deadline = time.monotonic() + CREATE_TIMEOUT
        while True:
            if poller.poll(100):
                if os.read(fd, 1):
                    break
                raise ContainerStateError(st.id, "stopped", "start", "its init exited before exec")
            if not process_alive(st.init_pid, st.init_start_time):
                raise ContainerStateError(st.id, "stopped", "start", "its init exited before exec")
            if time.monotonic() > deadline:
                raise TimeoutError(f"container {st.id!r}: init did not take the start signal")
    finally:
        os.close(fd)
    os.unlink(fifo)


def _destroy(store: StateStore, st: ContainerState, *, adopted: bool, force: bool = False) -> None:
    """Kill what is left and release everything the container holds on the host.

    An adopted container's cgroup is runc's: its processes are killed only
    with ``force`` or while its init lives.
    """
    cg = Cgroups.from_dict(st.cgroups) if st.cgroups else None
    alive = process_alive(st.init_pid, st.init_start_time)
    if alive:
        os.kill(st.init_pid, signal.SIGKILL)
    if cg is not None and cg.exists():
        if not adopted or alive or force:
            for pid in cg.pids():
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        if st.status == "paused" or _frozen(cg):
            cg.thaw()
    deadline = time.monotonic() + STOP_TIMEOUT
    while process_alive(st.init_pid, st.init_start_time):
        if time.monotonic() > deadline:
            raise ContainerStateError(st.id, "running", "delete", f"init {st.init_pid} did not die")
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


def _remove_stray_cgroups(cid: str, cg: Cgroups) -> None:
    """The container's cgroup path in hierarchies criu-cr does not manage (best effort, warns).

    Restores of images written before criu-cr kept CRIU to its own
    hierarchies made such directories (see :mod:`runtime.cghier`).
    """
    from .cghier import host_hierarchies, remove_strays

    try:
        _, failed = remove_strays(cg.path, host_hierarchies(cg.paths))
    except OSError as exc:
        failed = [f"{exc.filename or ''}: {exc.strerror}"]
    if failed:
        import warnings

        warnings.warn(f"container {cid!r}: could not remove cgroups {', '.join(failed)}", RuntimeWarning,
                      stacklevel=3)


def _release_network_lock(st: ContainerState) -> None:
    """No restore will unlock the joined netns CRIU may have locked: unlock it (best effort)."""
    path = st.joined_namespaces.get("network")
    if not path or not os.path.exists(path):
        return
    from .netlock import release

    try:
        release(path)
    except OSError as exc:
        import warnings

        warnings.warn(f"container {st.id!r}: could not remove CRIU's network lock from {path}: {exc}",
                      RuntimeWarning, stacklevel=3)


def _frozen(cg: Cgroups) -> bool:
    try:
        return cg.is_frozen()
    except ContainerError:
        return False
