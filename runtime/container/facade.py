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
from typing import TYPE_CHECKING, Any

from runtime.container.exec_in import ExecResult, exec_in
from runtime.container.host import STOP_TIMEOUT, destroy, prepare_host, process_record, release_network_lock
from runtime.container.init import EXEC_FIFO, InitConfig, spawn_init
from runtime.container.monitor import read_report, spawn_monitor
from runtime.container.state import LIVE_STATUSES, ContainerState, StateStore, live, mark_stopped, now_rfc3339, validate_id
from runtime.linux.procfs import proc_start_time, process_alive
from runtime.cr import pending
from runtime.cr.options import CheckpointOptions, CheckpointResult, RestoreOptions, RestoreResult
from runtime.errors import ContainerBusyError, ContainerError, ContainerNotFoundError, ContainerStateError
from runtime.linux.cgroups import Cgroups
from runtime.linux.syscalls import PROC_NS_NAMES
from runtime.oci.spec import Spec, load_spec
from runtime.oci.support import check_supported

if TYPE_CHECKING:
    from criu_rpc import CriuClient, NotifyHandler

__all__ = ["Container", "ContainerStartError", "CREATE_TIMEOUT", "STOP_TIMEOUT"]

CREATE_TIMEOUT = 30.0  # seconds for the init to report ready
LOG_FILE = "ctr.log"
OCI_VERSION = "1.0.2"
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
        check_supported(spec)
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
                destroy(store, store.read(container_id), adopted=False)
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
        from runtime.container.runc import read_runc_state

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
        container's lock is free (see :mod:`runtime.cr.pending`).
        """
        st = self._store.read(self.id)
        if st.extra.get(pending.PENDING_KEY):
            try:
                with self._store.lock(self.id):
                    st = pending.settle(self._store, self._store.read(self.id))
            except ContainerBusyError:
                pass  # in progress: show the record as it is
        self._state = live(st)
        if not self.monitor_alive():
            warnings.warn(f"container {self.id!r}: its monitor (pid {st.monitor_pid}) is gone: output is no "
                          "longer written to its log and writes to stdout may fail; checkpoint and restore it "
                          "to get a new monitor", RuntimeWarning, stacklevel=2)
        return self._state

    def monitor_alive(self) -> bool:
        """Whether the process that collects a live container's output still runs (True when it has none)."""
        st = self._state
        if st.status not in LIVE_STATUSES or st.adopted_from or not st.monitor_pid:
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
            "pid": st.init_pid if st.status in LIVE_STATUSES else 0, "bundle": st.bundle, "rootfs": st.rootfs,
            "created": st.created, "annotations": st.annotations, "monitorPid": st.monitor_pid,
            "exitStatus": st.exit_status, "namespaces": st.namespaces, "cgroups": st.cgroups,
            "stdio": st.stdio, "adoptedFrom": st.adopted_from, "monitorAlive": self.monitor_alive(),
        }

    def ps(self) -> list[int]:
        """Host pids of the container's processes (its cgroup, else just init)."""
        st = self.refresh()
        if st.cgroups:
            return Cgroups.from_dict(st.cgroups).pids()
        return [st.init_pid] if st.status in LIVE_STATUSES else []

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
            st = pending.current(self._store, self.id)
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
            st = self._need(LIVE_STATUSES, "kill")
            os.kill(st.init_pid, sig)

    def delete(self, force: bool = False) -> None:
        """Remove the container: processes (when ``force``), cgroups, mounts, overlay, state.

        A running or paused container needs ``force``; a created one is killed.
        Raises ContainerStateError, ContainerBusyError, CgroupError.
        """
        with self._store.lock(self.id):
            st = pending.current(self._store, self.id)
            if st.status in ("running", "paused") and not force:
                raise ContainerStateError(self.id, st.status, "delete", "stop it first, or force")
            destroy(self._store, st, adopted=st.adopted_from is not None, force=force)
            # A checkpointed container's netns is locked until its restore; a CRIU that
            # died mid-checkpoint leaves the lock too. Nothing of it may outlive the container.
            _unlock(st)
            self._store.remove(self.id)

    def exec(self, argv: list[str], *, env: list[str] | None = None, cwd: str | None = None,
             capture: bool = True, timeout: float | None = None) -> ExecResult:
        """Run ``argv`` inside the running container (its namespaces, root and cgroups).

        With ``capture`` the output is returned, else it goes to this process's
        stdout/stderr. Raises ContainerStateError, TimeoutError, OSError.
        """
        with self._store.lock(self.id):
            st = self._need(("running",), "exec in")
        proc = st.extra.get("process", {})
        return exec_in(
            init_pid=st.init_pid, cgroups=Cgroups.from_dict(st.cgroups) if st.cgroups else None,
            argv=list(argv), env=list(env if env is not None else proc.get("env") or [_DEFAULT_PATH]),
            cwd=cwd or proc.get("cwd", "/"), uid=proc.get("uid", 0), gid=proc.get("gid", 0),
            capture=capture, timeout=timeout)

    # -- checkpoint / restore (runtime.cr.checkpoint) -----------------------------

    def checkpoint(self, opts: CheckpointOptions | None = None, *, criu_path: str | None = None,
                   client: CriuClient | None = None, notify: NotifyHandler | None = None,
                   **fields: Any) -> CheckpointResult:
        """Checkpoint this running container; see :func:`runtime.cr.checkpoint.checkpoint`.

        ``opts`` is a CheckpointOptions, or give its fields as keywords
        (``leave_running=True``...). Raises ContainerStateError, CheckpointError.
        """
        from runtime.cr.checkpoint import checkpoint

        return checkpoint(self._store, self.id, opts or CheckpointOptions(**fields), criu_path=criu_path,
                          client=client, notify=notify)

    def restore(self, opts: RestoreOptions | None = None, *, criu_path: str | None = None,
                notify: NotifyHandler | None = None, **fields: Any) -> RestoreResult:
        """Restore this checkpointed container; see :func:`runtime.cr.restore.restore`.

        Raises ContainerStateError ("container X is running"), RestoreError.
        """
        from runtime.cr.restore import restore

        return restore(self._store, self.id, opts or RestoreOptions(**fields), criu_path=criu_path, notify=notify)

    @classmethod
    def restore_new(cls, container_id: str, image_path: str, *, bundle: str | None = None,
                    root: str | None = None, criu_path: str | None = None, notify: NotifyHandler | None = None,
                    **fields: Any) -> RestoreResult:
        """Make container ``container_id`` from a checkpoint at ``image_path`` and restore it.

        Returns the RestoreResult (``Container.load(container_id)`` gives the container).
        ``bundle`` defaults to the checkpointed container's. Nothing is left
        behind on failure. Raises RestoreError, ContainerExistsError, SpecError.
        """
        from runtime.cr.restore_new import restore_new

        opts = RestoreOptions(image_path=image_path, bundle=bundle, **fields)
        return restore_new(StateStore(root), container_id, opts, criu_path=criu_path, notify=notify)

    @classmethod
    def restore_import(cls, archive: str, *, name: str | None = None, netns: str | None = None,
                       rootfs: str | None = None, root: str | None = None, limit: int | None = None,
                       criu_path: str | None = None, notify: NotifyHandler | None = None,
                       **fields: Any) -> RestoreResult:
        """Make a container from a checkpoint archive (``checkpoint --export``) and restore it.

        See :func:`runtime.cr.portable.restore_import`: the id is ``name``, else
        the archive's; ``netns`` another pre-created netns; ``rootfs`` the root
        filesystem when the archive's is not here; ``limit`` the bytes it may
        unpack to. Raises ArchiveError, RestoreError, ContainerExistsError.
        """
        from runtime.cr import archive as _archive
        from runtime.cr.portable import restore_import

        opts = RestoreOptions(netns=netns, **fields)
        return restore_import(StateStore(root), archive, opts, name=name, rootfs=rootfs,
                              limit=limit or _archive.DEFAULT_IMPORT_LIMIT, criu_path=criu_path, notify=notify)

    def _need(self, statuses: tuple[str, ...], action: str) -> ContainerState:
        st = pending.current(self._store, self.id)
        if st.status not in statuses:
            raise ContainerStateError(self.id, st.status, action)
        self._state = st
        return st


# -- helpers ----------------------------------------------------------------------

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




def _unlock(st: ContainerState) -> None:
    """CRIU's network lock must not outlive the container (best effort: a warning if it stays)."""
    try:
        release_network_lock(st)
    except OSError as exc:
        warnings.warn(f"container {st.id!r}: could not remove CRIU's network lock: {exc}",
                      RuntimeWarning, stacklevel=3)
