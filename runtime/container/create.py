"""Creating a container: the host side, the init behind its exec fifo, the monitor; and the start signal.

:func:`create_container` is what ``Container.create`` does; :func:`release_exec`
is the exec-fifo half of ``start``. Both live here, apart from the facade,
so that the facade reads as the list of operations it offers.
"""

from __future__ import annotations

import functools
import os
import select
import time

from runtime.container.host import destroy, prepare_host, process_record
from runtime.container.init import EXEC_FIFO, InitConfig, spawn_init
from runtime.container.monitor import read_report, spawn_monitor
from runtime.container.state import Action, ContainerState, StateStore, Status, mark_stopped, now_rfc3339, validate_id
from runtime.errors import ContainerError, ContainerStateError
from runtime.linux.procfs import proc_start_time, process_alive
from runtime.linux.syscalls import PROC_NS_NAMES
from runtime.oci.spec import Spec, load_spec
from runtime.oci.support import check_supported

__all__ = ["ContainerStartError", "create_container", "release_exec", "CREATE_TIMEOUT", "LOG_FILE", "DEFAULT_PATH"]

CREATE_TIMEOUT = 30.0  # seconds for the init to report ready
LOG_FILE = "ctr.log"
DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class ContainerStartError(ContainerError):
    """The container's init failed while being set up; ``reason`` is what it reported."""

    def __init__(self, container_id: str, reason: str) -> None:
        self.container_id = container_id
        self.reason = reason
        super().__init__(f"container {container_id!r}: {reason}")


def create_container(store: StateStore, container_id: str, bundle: str) -> tuple[ContainerState, Spec]:
    """Set up container ``container_id`` from an OCI bundle; its init waits for the start signal.

    Raises SpecError (bundle), ContainerExistsError, CgroupError,
    ContainerStartError (setup inside the container failed), OSError.
    Nothing is left behind on failure.
    """
    validate_id(container_id)
    spec = load_spec(bundle)
    check_supported(spec)
    store.create_dir(container_id)
    lock = store.lock(container_id)
    try:
        state = ContainerState(id=container_id, status=Status.CREATING, bundle=spec.bundle,
                               rootfs=store.path(container_id, "rootfs"), created=now_rfc3339(),
                               annotations=dict(spec.annotations))
        store.write(state)
        try:
            state = _set_up(store, state, spec)
        except BaseException:
            destroy(store, store.read(container_id), adopted=False)
            store.remove(container_id)
            raise
        return state, spec
    finally:
        lock.release()


def _set_up(store: StateStore, state: ContainerState, spec: Spec) -> ContainerState:
    """Host side, init and monitor for ``state`` (``creating``); returns it ``created`` (written)."""
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
    state = state.advance(
        Action.CREATE, namespaces=namespaces,
        joined_namespaces={ns.type: ns.path for ns in spec.namespaces if ns.path}, stdio=stdio,
        extra={"process": process_record(spec)})
    store.write(state)
    return state


def release_exec(fifo: str, st: ContainerState) -> None:
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
                raise ContainerStateError(st.id, Status.STOPPED, Action.START.verb, "its init exited before exec")
            if not process_alive(st.init_pid, st.init_start_time):
                raise ContainerStateError(st.id, Status.STOPPED, Action.START.verb, "its init exited before exec")
            if time.monotonic() > deadline:
                raise TimeoutError(f"container {st.id!r}: init did not take the start signal")
    finally:
        os.close(fd)
    os.unlink(fifo)
