"""Operations in flight: the intent record, and settling what an interrupted one left.

A checkpoint or restore writes what it is about to do into the container's
state (``extra["pending"]``: the operation, its work directory, the
criu-cr process) before it freezes or forks anything, and removes it when
it has recorded the outcome. Every later command on the container first
calls :func:`settle` under the container's lock: a record still there means
its owner died (a SIGKILL, a crash, the machine's OOM killer) -- a live
owner would hold the lock. Settling looks at what really happened and
brings the state, the cgroup freezer, CRIU's network lock, the image
directory and the mounts in line with it:

checkpoint
    CRIU goes on after its socket closes; settling first waits for any
    process still holding the work directory open. Then: the tree lives ->
    thawed, unlocked, it runs on (a ``--leave-running`` copy that CRIU
    finished is kept). The tree is gone and CRIU finished (it writes
    ``stats-dump`` only after a successful dump) -> the images are put in
    place and the container is ``checkpointed``. The tree is gone and the
    images are incomplete -> ``stopped``; the partial images are removed.
restore
    The restore runs in the container's new monitor, which outlives a killed
    criu-cr and journals its outcome in ``restore.json``. A restored init
    that lives is recorded as ``running``; a restore still in progress makes
    the command busy; anything else means nothing runs: leftovers in the
    cgroup are killed, CRIU's mounts in the image directory unmounted, and
    the container stays ``checkpointed``.

Each settled record is logged (a warning on the ``criu_cr.cr`` logger) saying what happened.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import time
from typing import Any

from runtime.container.host import kill_cgroup, release_network_lock
from runtime.container.state import Action, ContainerState, StateStore, Status, live
from runtime.cr.layout import DUMP_STATS
from runtime.errors import ContainerBusyError
from runtime.linux import mounts
from runtime.linux.cgroups import Cgroups
from runtime.linux.procfs import proc_start_time, process_alive
from runtime.linux.syscalls import PROC_NS_NAMES

__all__ = ["current", "record_restored", "with_checkpoint", "PENDING_KEY", "RESTORE_JOURNAL", "begin", "update", "finish", "settle",
           "write_journal", "read_journal", "hold_restore_lock", "restore_in_progress", "remove_journal", "holders_of", "DUMP_COMPLETE_MARK", "CRIU_WAIT"]

PENDING_KEY = "pending"
RESTORE_JOURNAL = "restore.json"  # in the container directory, written by the restoring monitor
DUMP_COMPLETE_MARK = DUMP_STATS  # CRIU writes it after a successful dump, and only then
CRIU_WAIT = 60.0  # seconds to let an orphaned CRIU finish before the command gives up as busy
_POLL = 0.05


_log = logging.getLogger("criu_cr.cr")


def current(store: StateStore, container_id: str) -> ContainerState:
    """The container's state with its live status, after settling an interrupted operation.

    Call with the container's lock held. Raises ContainerNotFoundError,
    ContainerBusyError (an orphaned CRIU or restore still at work), OSError.
    """
    return live(settle(store, store.read(container_id)))


def begin(store: StateStore, st: ContainerState, op: str, **fields: Any) -> ContainerState:
    """Record that ``op`` ("checkpoint"/"restore") starts on ``st``; returns the written state."""
    me = os.getpid()
    rec = {"op": op, "status": st.status, "pid": me, "pid_start": proc_start_time(me) or 0, "since": time.time(),
           **fields}
    st = st.replace(extra={**st.extra, PENDING_KEY: rec})
    store.write(st)
    return st


def update(store: StateStore, st: ContainerState, **fields: Any) -> ContainerState:
    """Add ``fields`` to the pending record (e.g. a monitor's pid once it exists)."""
    rec = {**(st.extra.get(PENDING_KEY) or {}), **fields}
    st = st.replace(extra={**st.extra, PENDING_KEY: rec})
    store.write(st)
    return st


def with_checkpoint(st: ContainerState, image_dir: str, leave_running: bool) -> dict[str, Any]:
    """``st.extra`` recording the container's newest checkpoint (the one a restore takes)."""
    return {**st.extra, "checkpoint": {"image_dir": image_dir, "time": time.time(), "leave_running": leave_running}}


def finish(st: ContainerState) -> ContainerState:
    """``st`` without the pending record (the caller writes it with the outcome)."""
    extra = dict(st.extra)
    extra.pop(PENDING_KEY, None)
    return st.replace(extra=extra)


def settle(store: StateStore, st: ContainerState) -> ContainerState:
    """Resolve an interrupted operation recorded in ``st`` (call with the lock held).

    Returns the state as it now is (written). Raises ContainerBusyError when
    the operation is in fact still going on (an orphaned CRIU or a restoring
    monitor), OSError when something could not be cleaned up.
    """
    rec = st.extra.get(PENDING_KEY)
    if not rec:
        return st
    if rec.get("op") == "checkpoint":
        st, note = _settle_checkpoint(store, st, rec)
    elif rec.get("op") == "restore":
        st, note = _settle_restore(store, st, rec)
    else:
        st, note = finish(st), f"dropped an unknown pending operation {rec.get('op')!r}"
    store.write(st)
    owner = f"criu-cr pid {rec.get('pid')}"
    _log.warning("container %r: the %s started by %s was interrupted; %s", st.id, rec.get("op"), owner, note)
    return st


# -- checkpoint -------------------------------------------------------------------

def _settle_checkpoint(store: StateStore, st: ContainerState, rec: dict[str, Any]) -> tuple[ContainerState, str]:
    work, final = rec.get("work_dir", ""), rec.get("final_dir", "")
    _wait_for_holders(st.id, work, "dumping")
    cg = Cgroups.from_dict(st.cgroups) if st.cgroups else None
    alive = process_alive(st.init_pid, st.init_start_time)
    complete = bool(work) and os.path.exists(os.path.join(work, DUMP_COMPLETE_MARK))
    if cg is not None and cg.exists():
        cg.thaw()  # frozen by the checkpoint: thawed whatever happened (an empty cgroup too)
    if alive:
        release_network_lock(st)
        if complete and rec.get("leave_running"):
            _install(work, final, st.id)
            return finish(_after(st, rec, Action.COPY, extra=with_checkpoint(st, final, True))), \
                f"CRIU finished the copy: it is at {final}; the container runs on"
        mounts.remove_tree(work)
        return finish(_after(st, rec, Action.COPY)), "the container runs on; the partial images were removed"
    if complete:
        _install(work, final, st.id)
        extra = with_checkpoint(st, final, bool(rec.get("leave_running")))
        return finish(_after(st, rec, Action.CHECKPOINT, extra=extra)), \
            f"CRIU finished it: the container is checkpointed at {final}"
    release_network_lock(st)
    if work:
        mounts.remove_tree(work)
    return finish(_after(st, rec, Action.EXIT)), \
        "the container's processes are gone and the dump did not complete: it is stopped"


def _after(st: ContainerState, rec: dict[str, Any], action: Action, **changes: Any) -> ContainerState:
    """``st`` after ``action`` from the status its operation began in (a checkpoint: ``running``).

    The record may have moved on since (the monitor marks an init that CRIU
    killed ``stopped``); what the interrupted operation did decides.
    """
    began = Status(rec.get("status") or Status.RUNNING)
    return st.replace(status=began).advance(action, **changes)


def _install(work: str, final: str, container_id: str) -> None:
    from runtime.cr.manifest import MANIFEST_FILE, seal
    from runtime.cr.meta import install_image_dir

    if not os.path.exists(os.path.join(work, MANIFEST_FILE)):  # criu-cr died before writing it
        seal(work, container_id=container_id, strict=False)
    install_image_dir(work, final)


# -- restore ----------------------------------------------------------------------

def record_restored(store: StateStore, st: ContainerState, init_pid: int, monitor_pid: int,
                    joined: list[str] | tuple[str, ...], stdio: dict[str, str]) -> ContainerState:
    """Record a restored init as the container's (written); returns the new state."""
    namespaces = {t: (p if t in joined else f"/proc/{init_pid}/ns/{PROC_NS_NAMES[t]}")
                  for t, p in st.namespaces.items()}
    st = finish(st).advance(Action.RESTORE, init_pid=init_pid, init_start_time=proc_start_time(init_pid) or 0,
                            monitor_pid=monitor_pid, namespaces=namespaces, stdio=stdio, exit_status=None)
    store.write(st)
    return st


def hold_restore_lock(journal_path: str) -> int:
    """An fd holding the restore's lock (``<journal>.lock``), for the restoring monitor to inherit.

    flock belongs to the open file, so the lock stays held while any copy
    of this fd lives: taken before the monitor is forked, it is held by the
    monitor from its first instant until it has journalled the outcome (or
    dies). Raises OSError.
    """
    fd = os.open(journal_path + ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def restore_in_progress(journal_path: str) -> bool:
    """Whether a restoring monitor still holds the restore's lock."""
    try:
        fd = os.open(journal_path + ".lock", os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


def write_journal(path: str, **fields: Any) -> None:
    """Atomically (re)write the restoring monitor's journal, merging ``fields`` in."""
    data = read_journal(path)
    data.update(fields)
    tmp = f"{path}.tmp.{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(data, f)
    os.rename(tmp, path)


def read_journal(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _settle_restore(store: StateStore, st: ContainerState, rec: dict[str, Any]) -> tuple[ContainerState, str]:
    journal_path = store.path(st.id, RESTORE_JOURNAL)
    deadline = time.monotonic() + CRIU_WAIT
    # The monitor holds the restore's lock from its birth until it has journalled the outcome.
    while restore_in_progress(journal_path):
        if time.monotonic() > deadline:
            raise ContainerBusyError(st.id, f"a restore is still in progress (monitor pid {rec.get('monitor')})")
        time.sleep(_POLL)
    journal = read_journal(journal_path)
    init = int(journal.get("init") or 0)
    monitor = int(journal.get("monitor") or rec.get("monitor") or 0)
    image_dir = rec.get("image_dir", "")
    if init and process_alive(init, int(journal.get("init_start") or 0)):
        st = record_restored(store, st, init, monitor, rec.get("joined") or [], journal.get("stdio") or {})
        remove_journal(journal_path)
        return st, f"it completed: the container runs (init pid {init})"
    _clean_failed_restore(st, image_dir)
    remove_journal(journal_path)
    return finish(st.advance(Action.RESTORE_FAILED)), \
        f"nothing runs; the checkpoint at {image_dir} is kept for another restore"


def _clean_failed_restore(st: ContainerState, image_dir: str) -> None:
    """Kill a half-restored tree left in the container's cgroup; unmount CRIU's debris."""
    kill_cgroup(st)
    if image_dir:
        mounts.unmount_under(image_dir)


def remove_journal(path: str) -> None:
    """Remove a restore journal and its lock file (gone already is fine)."""
    for name in (path, path + ".lock"):
        try:
            os.unlink(name)
        except FileNotFoundError:
            pass


# -- orphaned CRIU ----------------------------------------------------------------

def holders_of(directory: str) -> list[int]:
    """Pids of processes that have ``directory`` (or a file in it) open, or as cwd."""
    if not directory:
        return []
    directory = os.path.realpath(directory)
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        base = f"/proc/{name}"
        try:
            links = [os.readlink(f"{base}/cwd")]
            links += [os.readlink(f"{base}/fd/{fd}") for fd in os.listdir(f"{base}/fd")]
        except OSError:
            continue
        if any(link == directory or link.startswith(directory + "/") for link in links):
            found.append(int(name))
    return found


def _wait_for_holders(cid: str, directory: str, doing: str) -> None:
    deadline = time.monotonic() + CRIU_WAIT
    while holders := holders_of(directory):
        if time.monotonic() > deadline:
            raise ContainerBusyError(cid, f"CRIU (pid {holders[0]}) is still {doing} into {directory}")
        time.sleep(_POLL)
