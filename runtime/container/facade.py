"""The ``Container`` object: create, start, run, inspect, pause, kill, delete (no runc).

Every operation takes the container's lock (a second concurrent one gets
:class:`ContainerBusyError`) and re-reads ``state.json`` under it. The status
is recomputed from the init process: a recorded init that is gone, or whose
pid now belongs to another process (different start time), means ``stopped``.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from typing import TYPE_CHECKING, Any

from runtime.container.create import (CREATE_TIMEOUT, DEFAULT_PATH, LOG_FILE, ContainerStartError, create_container,
                                      release_exec)
from runtime.container.exec_in import ExecResult, exec_in
from runtime.container.host import STOP_TIMEOUT, destroy, release_network_lock
from runtime.container.init import EXEC_FIFO
from runtime.container.state import (LIVE_STATUSES, Action, ContainerState, StateStore, Status, live, now_rfc3339,
                                     validate_id)
from runtime.cr import pending
from runtime.cr.options import CheckpointOptions, CheckpointResult, RestoreOptions, RestoreResult
from runtime.errors import ContainerBusyError, ContainerNotFoundError
from runtime.linux.cgroups import Cgroups
from runtime.linux.procfs import proc_start_time
from runtime.linux.syscalls import PROC_NS_NAMES

if TYPE_CHECKING:
    from criu_rpc import CriuClient, NotifyHandler

__all__ = ["Container", "ContainerStartError", "CREATE_TIMEOUT", "STOP_TIMEOUT"]

_log = logging.getLogger("criu_cr.container")

OCI_VERSION = "1.0.2"


class Container:
    """One container under a state root. Get one with :meth:`create`, :meth:`run` or :meth:`load`."""

    def __init__(self, store: StateStore, state: ContainerState, warnings: tuple[str, ...] = ()) -> None:
        self._store = store
        self._state = state
        self.warnings = warnings  # what the bundle asked for but criu-cr does not honour (spec warnings)
        self._told_monitor_gone = False  # said once per object: wait() refreshes in a loop

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
        store = StateStore(root)
        state, spec = create_container(store, container_id, bundle)
        return cls(store, state, spec.warnings)

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
                       "process": {"env": list(process.get("env") or [DEFAULT_PATH]),
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
        if not self._told_monitor_gone and not self.monitor_alive():
            self._told_monitor_gone = True
            _log.warning("container %r: its monitor (pid %d) is gone: output is no longer written to its log "
                         "and writes to stdout may fail; checkpoint and restore it to get a new monitor",
                         self.id, st.monitor_pid)
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
            if st.status == Status.STOPPED and (st.exit_status is not None or st.monitor_pid == 0
                                            or proc_start_time(st.monitor_pid) is None):
                return -1 if st.exit_status is None else st.exit_status
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"container {self.id!r} still {st.status} after {timeout} s")
            time.sleep(0.05)

    # -- operations -----------------------------------------------------------

    def start(self) -> None:
        """Let the created process exec. Raises ContainerStateError, ContainerBusyError."""
        with self._store.lock(self.id):
            st = self._need(Action.START)
            fifo_dir = st.extra.get("runc_state_dir") or self._store.dir(self.id)
            release_exec(os.path.join(fifo_dir, EXEC_FIFO), st)
            self._state = st.advance(Action.START)
            self._store.write(self._state)

    def pause(self) -> None:
        """Freeze every process of the container. Raises ContainerStateError, CgroupError."""
        with self._store.lock(self.id):
            st = self._need(Action.PAUSE)
            Cgroups.from_dict(st.cgroups).freeze()
            self._state = st.advance(Action.PAUSE)
            self._store.write(self._state)

    def resume(self) -> None:
        """Thaw a paused container. Raises ContainerStateError, CgroupError."""
        with self._store.lock(self.id):
            st = self._need(Action.RESUME)
            Cgroups.from_dict(st.cgroups).thaw()
            self._state = st.advance(Action.RESUME)
            self._store.write(self._state)

    def kill(self, sig: int = signal.SIGTERM) -> None:
        """Send ``sig`` to the init process. Raises ContainerStateError.

        As for any pid 1, signals without a handler in the process (SIGTERM to
        a plain ``sh``) are ignored; SIGKILL always works.
        """
        with self._store.lock(self.id):
            st = self._need(Action.KILL)
            os.kill(st.init_pid, sig)

    def delete(self, force: bool = False) -> None:
        """Remove the container: processes (when ``force``), cgroups, mounts, overlay, state.

        A running or paused container needs ``force``; a created one is killed.
        Raises ContainerStateError, ContainerBusyError, CgroupError.
        """
        with self._store.lock(self.id):
            st = pending.current(self._store, self.id)
            st.check(Action.FORCE_DELETE if force else Action.DELETE, "stop it first, or force")
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
            st = self._need(Action.EXEC)
        proc = st.extra.get("process", {})
        return exec_in(
            init_pid=st.init_pid, cgroups=Cgroups.from_dict(st.cgroups) if st.cgroups else None,
            argv=list(argv), env=list(env if env is not None else proc.get("env") or [DEFAULT_PATH]),
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

    def migrate(self, address: tuple[str, int] | str, token: bytes, *, criu_path: str | None = None,
                compress: str = "none", tcp_established: bool = False, progress: Any = None,
                notify: NotifyHandler | None = None, timeout: float | None = None, pre_copy: int = 0,
                lazy: bool = False) -> Any:
        """Move this running container to a ``criu-cr receive`` / ``Receiver`` at ``address``
        (``(host, port)`` or ``"HOST:PORT"``), stop-and-copy (``lazy``: post-copy); see
        :func:`runtime.cr.migrate.migrate`.

        Returns a ``Migrated`` (pid there, downtime; ``lazy``: a ``LazyMigrated``, the last page's
        time too). On success this container is gone here.
        Raises ContainerStateError (not running), MigrationError (``.restored_locally``: it runs
        here again or never stopped; else ``.hint`` says how to get it back), CheckpointError.
        """
        from runtime.cr import migrate as _migrate

        if isinstance(address, str):
            address = _migrate.parse_address(address)
        extra = {"timeout": timeout} if timeout is not None else {}
        return _migrate.migrate(self.id, address, token, root=self._store.root, criu_path=criu_path,
                                compress=compress, tcp_established=tcp_established, progress=progress, lazy=lazy,
                                notify=notify, pre_copy=pre_copy, **extra)

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

    def _need(self, action: Action) -> ContainerState:
        """The current state, if ``action`` is allowed in it. Raises ContainerStateError."""
        st = pending.current(self._store, self.id)
        st.check(action)
        self._state = st
        return st


# -- helpers ----------------------------------------------------------------------

def _unlock(st: ContainerState) -> None:
    """CRIU's network lock must not outlive the container (best effort: a warning if it stays)."""
    try:
        release_network_lock(st)
    except OSError as exc:
        _log.warning("container %r: could not remove CRIU's network lock: %s", st.id, exc)
