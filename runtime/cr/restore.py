"""Restore of whole containers over CRIU's RPC (no runc).

The restore runs inside a fresh monitor process (see :mod:`runtime.container.monitor`):
it is the subreaper and the parent of the restored init, holds the new
stdout/stderr pipes and hands them to CRIU with ``inherit_fd`` under the old
pipes' names. A failed restore leaves the images untouched and the container
checkpointed. See docs/checkpoint.md.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import signal
import time
from typing import Any

from criu_rpc import CriuClient, CriuError, CriuOptions, CriuRpcError, InheritFd, NotifyHandler, deadline_for
from criu_rpc import trace
from criu_rpc.notify import NOTIFY_SCRIPTS
from criu_rpc.trace import timed
from runtime.container.host import kill_cgroup, overlay_dirs
from runtime.container.init import report
from runtime.container.monitor import read_report, spawn_monitor
from runtime.container.state import LIVE_STATUSES, Action, ContainerState, StateStore, Status, mark_stopped
from runtime.cr import criu_options, pending
from runtime.cr.criu_options import Direction
from runtime.cr.imagecheck import require_checkpoint
from runtime.cr.lazy import LazyPagesDaemon
from runtime.cr.manifest import HashCheck, Unhashed, unhashed_pages
from runtime.cr.meta import (NETWORK_FILE, CheckpointMeta, choose_network_lock, read_meta, remove_logs,
                             require_usable_criu, stats_dict)
from runtime.cr.options import (CTR_LOG, DEFAULT_IMAGE_DIR, REPORT_MARGIN, RESTORE_LOG, RestoreOptions, RestoreResult,
                                criu_us)
from runtime.errors import ImageIntegrityError, RestoreError, criu_message
from runtime.linux import mounts
from runtime.linux.cgroups import Cgroups
from runtime.linux.procfs import proc_start_time, process_alive
from runtime.linux.syscalls import link_up
from runtime.linux.signals import deferred
from runtime.net import netns, snapshot
from runtime.net.in_netns import in_netns
from runtime.oci.spec import load_spec
from runtime.oci.support import bind_sources

__all__ = ["restore", "restore_locked"]

_log = logging.getLogger("criu_cr.cr")


# -- restore --------------------------------------------------------------------------

def restore(store: StateStore, container_id: str, opts: RestoreOptions = RestoreOptions(), *,
            criu_path: str | None = None, notify: NotifyHandler | None = None) -> RestoreResult:
    """Restore checkpointed container ``container_id`` from its last checkpoint (or ``opts.image_path``).

    ``notify`` receives CRIU's restore callbacks; they run in the container's
    new monitor process, not in the caller. SIGINT/SIGTERM/SIGHUP are held
    while CRIU restores (:mod:`runtime.linux.signals`); a killed criu-cr is
    settled by the next command (:mod:`runtime.cr.pending`).

    Raises ContainerStateError ("container X is running"), RestoreError (no
    complete checkpoint; CRIU failed: ``.log_path``, ``.log_errors`` -- the
    images stay for another try), ImageIntegrityError, OSError.
    """
    return restore_locked(store, container_id, opts, criu_path=criu_path, notify=notify, new=False)


def restore_locked(store: StateStore, container_id: str, opts: RestoreOptions, *, criu_path: str | None,
                   notify: NotifyHandler | None, new: bool) -> RestoreResult:
    """The restore itself, under the container's lock. ``new``: a container made for this restore
    (:mod:`runtime.cr.restore_new`), whose images were verified before it was made."""
    started = time.monotonic()
    cid = container_id
    with store.lock(cid):
        st = pending.current(store, cid)
        st.check(Action.RESTORE, f"container {cid} is {st.status}; checkpoint or delete it first"
                 if st.status in LIVE_STATUSES else "")
        image_dir = opts.image_path or (st.extra.get("checkpoint") or {}).get("image_dir") \
            or store.path(cid, DEFAULT_IMAGE_DIR)
        with timed(_log, "container %r: restore: finding a usable CRIU", cid):
            facts = require_usable_criu(criu_path, store.root)
        # Before CRIU reads a byte: the files as the checkpoint wrote them, all but the pages'
        # hashes, which are checked while CRIU restores (see _MonitorRestore). A new container's
        # files were checked before it was made (restore_new).
        with timed(_log, "container %r: restore: checking the checkpoint at %s", cid, image_dir):
            unhashed = require_checkpoint(cid, image_dir, verify=opts.verify and not new, defer_pages=True)
        if new and opts.verify:
            unhashed = unhashed_pages(image_dir, container_id=cid)
        meta = read_meta(image_dir, container_id=cid)
        if opts.netns:  # another pre-created netns (a second copy's own): CRIU joins that one
            meta = dataclasses.replace(meta, namespaces={**meta.namespaces, "network": opts.netns})
        if new:
            _warn_shared_netns(store, cid, meta)
        with timed(_log, "container %r: restore: its network namespace", cid):
            _ensure_network(meta, image_dir)
        criu_root, temporary = _restore_root(store, st)
        try:
            # Unlock with the method the dump locked with: the other one would leave the lock.
            lock = opts.network_lock or meta.network_lock or choose_network_lock(facts=facts)
            st = pending.begin(store, st, "restore", image_dir=image_dir, joined=sorted(meta.namespaces))
            with deferred("the restore"):
                daemon = None
                try:
                    if opts.lazy is not None:  # it must listen before CRIU's restore looks for it
                        daemon = LazyPagesDaemon(cid, image_dir, opts.lazy, criu_path=criu_path,
                                                 log_level=opts.log_level)
                    result = _restore_in_monitor(store, st, meta, image_dir, opts, criu_path, criu_root,
                                                 lock, notify, unhashed)
                except BaseException:
                    if daemon is not None:
                        daemon.close()
                    _undo(store, st, image_dir)
                    raise
                result = dataclasses.replace(result, lazy=daemon)
        finally:
            if temporary:
                # The restored tree has its own copy of the mount; ours was only for CRIU.
                mounts.unmount(criu_root)
                os.rmdir(criu_root)
    _log.debug("container %r: restore done in %.3f s (pid %d)", cid, time.monotonic() - started, result.pid)
    return dataclasses.replace(result, duration_us=int((time.monotonic() - started) * 1e6))


def _warn_shared_netns(store: StateStore, cid: str, meta: CheckpointMeta) -> None:
    """A copy restored beside a running original takes the same IP and ports in the same netns."""
    path = meta.namespaces.get("network")
    if not path:
        return
    for other in store.iter_states():
        if other.id != cid and other.joined_namespaces.get("network") == path \
                and other.status in (Status.RUNNING, Status.PAUSED) and process_alive(other.init_pid, other.init_start_time):
            _log.warning("container %r runs in the same network namespace %s: the copy %r takes the same IP "
                         "and ports (the restore fails on a port in use)", other.id, path, cid)


def _undo(store: StateStore, st: ContainerState, image_dir: str) -> None:
    """After a failed or interrupted restore: nothing of it may run, no mount of CRIU's stay."""
    try:
        kill_cgroup(st)
        mounts.unmount_under(image_dir)
    finally:
        store.write(pending.finish(st))
    pending.remove_journal(store.path(st.id, pending.RESTORE_JOURNAL))


def _ensure_network(meta: CheckpointMeta, image_dir: str) -> None:
    """Restore into the pre-created netns; recreate it (same name, IPs, MACs) when it is gone."""
    path = meta.namespaces.get("network")
    if path:
        recreate_network(meta.container_id, path, image_dir)


def recreate_network(container_id: str, path: str, image_dir: str) -> bool:
    """Recreate the netns at ``path`` from the checkpoint's network.status when it is gone (True: made).

    Raises RestoreError (it is gone and cannot be recreated), NetnsError.
    """
    if netns.netns_exists(path):
        return False
    try:
        status = snapshot.read_network_status(image_dir)
    except FileNotFoundError:
        raise RestoreError(container_id, f"network namespace {path} is gone and the checkpoint "
                           f"has no {NETWORK_FILE} to recreate it", hint=f"create {path} again") from None
    if not path.startswith(netns.NETNS_DIR + "/"):
        raise RestoreError(container_id, f"network namespace {path} is gone; only namespaces under "
                           f"{netns.NETNS_DIR} can be recreated", hint=f"create {path} again")
    snapshot.recreate_from_snapshot(os.path.basename(path), status.interfaces)
    return True


def _tcp_mode(opts: RestoreOptions, meta: CheckpointMeta) -> dict[str, bool]:
    """What to do with TCP connections in the images, when the caller did not say.

    A checkpoint taken with --tcp-established restores its connections. One
    taken without can still hold connections CRIU caught half-closed (a
    client that just hung up); CRIU refuses to restore those unless told, and
    the only sensible choice for them is to restore them closed.
    """
    if opts.tcp_established or opts.tcp_close:
        return {"tcp_established": opts.tcp_established, "tcp_close": opts.tcp_close}
    if meta.tcp_established:
        return {"tcp_established": True, "tcp_close": False}
    return {"tcp_established": False, "tcp_close": True}


class _RestoreHooks(NotifyHandler):
    """CRIU's restore callbacks: the restored init's pid arrives with post-restore, where the
    verdict of the pages' hashes (``check``) is awaited.

    Post-restore, not pre-resume: CRIU 4.2.1 aborts the restore and kills
    the tree it built when post-restore fails -- by then every page is in
    place, the tree has not run and the netns is still locked -- but only
    logs a failed pre-resume and resumes the tree anyway (cr-restore.c).
    At setup-namespaces a joined netns needs nothing (it is handed in as an
    fd, and the cgroups exist before CRIU starts); a private netns that the
    checkpoint left out (``lo_up``: CRIU made it empty) gets its ``lo`` up
    there, before CRIU binds the restored sockets. A caller's handler sees
    every callback, after ours (so not a post-restore whose hashes failed).
    """

    def __init__(self, user: NotifyHandler | None = None, check: HashCheck | None = None, *,
                 lo_up: bool = False) -> None:
        self.pid: int | None = None
        self._user = user
        self._check = check
        self._lo_up = lo_up
        if user is not None:  # every other callback is the caller's
            for name in set(NOTIFY_SCRIPTS.values()) - {"post_restore", "setup_namespaces"}:
                setattr(self, name, getattr(user, name))

    def setup_namespaces(self, ctx: Any) -> None:
        if self._lo_up:
            in_netns(f"/proc/{ctx.pid}/ns/net", lambda: link_up("lo"))
        if self._user is not None:
            self._user.setup_namespaces(ctx)

    def post_restore(self, ctx: Any) -> None:
        self.pid = ctx.pid
        if self._check is not None:
            self._check.wait()  # ImageIntegrityError: CRIU aborts and kills the tree before it ran
        if self._user is not None:
            self._user.post_restore(ctx)


def _restore_root(store: StateStore, st: ContainerState) -> tuple[str, bool]:
    """The restore root as a host mount point: (path, whether it is a temporary bind mount).

    Our containers' overlay is mounted again if it was unmounted. An adopted
    runc container's rootfs is a plain directory: it is bind-mounted for
    CRIU under our container directory for the time of the restore.
    """
    if st.adopted_from:
        target = store.path(st.id, "criu-root")
        os.makedirs(target, exist_ok=True)
        mounts.bind_mount(st.rootfs, target)
        return target, True
    if not os.path.ismount(st.rootfs):
        upper, work = overlay_dirs(store.dir(st.id))
        mounts.mount_overlay(load_spec(st.bundle).root.path, upper, work, st.rootfs)
    return st.rootfs, False


def _restore_in_monitor(store: StateStore, st: ContainerState, meta: CheckpointMeta, image_dir: str,
                        opts: RestoreOptions, criu_path: str | None, criu_root: str, network_lock: str,
                        notify: NotifyHandler | None = None, unhashed: Unhashed | None = None) -> RestoreResult:
    """Run CRIU's restore in a new monitor process, wait for its report, record the restored init."""
    cg = Cgroups.from_dict(st.cgroups) if st.cgroups else None
    if cg is not None:
        cg.create()
    journal = store.path(st.id, pending.RESTORE_JOURNAL)
    pending.remove_journal(journal)
    restore_lock = pending.hold_restore_lock(journal)  # the monitor inherits it: settling waits for it
    opened: list[int] = [restore_lock]
    out_r, out_w = os.pipe2(os.O_CLOEXEC)
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    rep_r, rep_w = os.pipe2(os.O_CLOEXEC)
    try:
        stdio_fds = {meta.stdio[name]: fd for name, fd in (("stdout", out_w), ("stderr", err_w)) if name in meta.stdio}
        criu_opts = _criu_options(st, meta, image_dir, opts, criu_root, network_lock, cg, stdio_fds, opened)
        if trace.log.isEnabledFor(logging.DEBUG):  # CRIU is asked from the monitor, whose stderr is /dev/null
            trace.log.debug("CRIU RESTORE request (from the monitor of %r, which holds fds %s): %s", st.id,
                            [*stdio_fds.values(), *opened[1:]], trace.describe_message(criu_opts.to_proto()))
        client = CriuClient(criu_path)
        client.criu_path  # locate CRIU here, so a missing binary is reported before forking
        timeout = opts.timeout or deadline_for(image_dir)
        new_stdio = {"stdin": "/dev/null", "stdout": f"pipe:[{os.fstat(out_w).st_ino}]",
                     "stderr": f"pipe:[{os.fstat(err_w).st_ino}]"}
        produce_init = _MonitorRestore(container_id=st.id, client=client, criu_opts=criu_opts, timeout=timeout,
                                       journal=journal, new_stdio=new_stdio, report_w=rep_w,
                                       owned_fds=(out_w, err_w, *opened[1:]), restore_lock=restore_lock,
                                       notify=notify, unhashed=unhashed)
        monitor_pid = spawn_monitor(log_path=store.path(st.id, CTR_LOG), output_fds=(out_r, err_r),
                                    report_w=rep_w, keep_fds=(out_w, err_w, *opened), produce_init=produce_init,
                                    on_exit=functools.partial(mark_stopped, store.root, st.id))
    except BaseException:
        os.close(rep_r)
        raise
    finally:
        for fd in (out_r, out_w, err_r, err_w, rep_w, *opened):
            os.close(fd)
    st = pending.update(store, st, monitor=monitor_pid)
    with timed(_log, "container %r: restore: CRIU's restore in monitor %d", st.id, monitor_pid):
        messages = _await_report(st.id, image_dir, rep_r, monitor_pid, timeout)
    init_pid = int(messages.get("init", 0))
    if "error" in messages or not init_pid:
        _raise_failure(st.id, image_dir, messages)
    return _record(store, st, meta, image_dir, opts, init_pid, messages, new_stdio, journal)


def _criu_options(st: ContainerState, meta: CheckpointMeta, image_dir: str, opts: RestoreOptions, criu_root: str,
                  network_lock: str, cg: Cgroups | None, stdio_fds: dict[str, int], opened: list[int]) -> CriuOptions:
    """CRIU's restore request for this container; the files it inherits are opened into ``opened``."""
    spec_binds = bind_sources(st.bundle)
    ctx = criu_options.CrContext(
        rootfs=criu_root, namespaces=dict(meta.namespaces), mounts=meta.mounts,
        cgroup_paths=dict(cg.paths) if cg else {}, cg_roots=tuple(cg.cg_roots()) if cg else (),
        bind_sources=spec_binds, stdio_fds=stdio_fds,
        network_lock=network_lock, netns_empty=meta.netns_empty,
        **_tcp_mode(opts, meta), file_locks=opts.file_locks, lazy_restore=opts.lazy is not None)
    try:
        plan = criu_options.build(ctx, Direction.RESTORE)
    except LookupError as exc:
        raise RestoreError(st.id, str(exc)) from exc
    handed: list[InheritFd] = []
    for key, path in plan.open_paths:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        opened.append(fd)
        handed.append(InheritFd(key=key, fd=fd))
    return plan.options(images_dir=image_dir, log_file=RESTORE_LOG, log_level=opts.log_level, opened=handed)


@dataclasses.dataclass(frozen=True, kw_only=True)
class _MonitorRestore:
    """The monitor's ``produce_init``: CRIU's restore, run in the monitor (the restored tree's parent).

    The pages images' hashes (``unhashed``) are checked on a thread beside
    CRIU and awaited in its post-restore notify (:class:`_RestoreHooks`): a
    damaged checkpoint is refused before the restored tree runs, and CRIU
    kills what it built.
    """

    container_id: str
    client: CriuClient
    criu_opts: CriuOptions
    timeout: float
    journal: str
    new_stdio: dict[str, str]
    report_w: int
    owned_fds: tuple[int, ...]  # closed here once CRIU has them (the monitor must not hold them)
    restore_lock: int  # released once the outcome is journalled
    notify: NotifyHandler | None
    unhashed: Unhashed | None

    def __call__(self) -> int:
        # The journal outlives a killed criu-cr: the next command settles from it.
        me = os.getpid()
        pending.write_journal(self.journal, monitor=me, monitor_start=proc_start_time(me) or 0)
        check = self.unhashed.start() if self.unhashed is not None and self.unhashed.digests else None
        hooks = _RestoreHooks(self.notify, check, lo_up=bool(self.criu_opts.empty_ns))
        try:
            res = self.client.restore(self.criu_opts, notify=hooks, timeout=self.timeout)
            if hooks.pid is not None and hooks.pid != res.pid:
                raise RestoreError(self.container_id,
                                   f"CRIU announced pid {hooks.pid} after restore but answered {res.pid}")
            pending.write_journal(self.journal, init=res.pid, init_start=proc_start_time(res.pid) or 0,
                                  stdio=self.new_stdio)
            return res.pid
        except BaseException as exc:
            pending.write_journal(self.journal, error=str(exc) or type(exc).__name__)
            if isinstance(exc, CriuError):
                _report_criu_failure(self.report_w, exc, check)
            raise
        finally:
            for fd in self.owned_fds:
                os.close(fd)
            os.close(self.restore_lock)


def _report_criu_failure(report_w: int, exc: CriuError, check: HashCheck | None) -> None:
    """Tell the caller why CRIU failed: a bad file of the checkpoint when the hashes found one
    (also when CRIU failed on it before post-restore), else CRIU's error and log."""
    bad = exc.__cause__ if isinstance(exc.__cause__, ImageIntegrityError) else None
    if bad is None and check is not None:
        try:
            check.wait()
        except ImageIntegrityError as found:
            bad = found
        except OSError:
            pass
    if bad is not None:
        report(report_w, integrity={"file": bad.file, "reason": bad.reason})
    else:
        report(report_w, criu={"message": criu_message(exc), "log_path": getattr(exc, "log_path", None),
                               "log_errors": list(getattr(exc, "log_errors", []) or [])})


def _await_report(cid: str, image_dir: str, rep_r: int, monitor_pid: int, timeout: float) -> dict[str, Any]:
    """The monitor's report; past the deadline the monitor and what it runs are killed."""
    try:
        return read_report(rep_r, timeout + REPORT_MARGIN, watch_pid=monitor_pid)
    except TimeoutError:
        _kill_monitor(monitor_pid)
        log = os.path.join(image_dir, RESTORE_LOG)
        raise RestoreError(cid, f"the restore did not finish within {timeout + REPORT_MARGIN:.0f} s: it was stopped, "
                           "and nothing of the restore runs", log_path=log, hint=f"see {log}") from None


def _raise_failure(cid: str, image_dir: str, messages: dict[str, Any]) -> None:
    """Raise what the monitor reported: ImageIntegrityError for a bad file, else RestoreError with CRIU's log."""
    bad = messages.get("integrity")
    if bad:
        raise ImageIntegrityError(image_dir, bad["file"], bad["reason"], container_id=cid)
    crit = messages.get("criu") or {}
    cause = CriuRpcError("RESTORE", log_path=crit.get("log_path"), log_errors=crit.get("log_errors"))
    raise RestoreError(cid, crit.get("message") or messages.get("error", "restore failed"),
                       log_path=crit.get("log_path"), log_errors=crit.get("log_errors") or [],
                       hint=f"the checkpoint at {image_dir} is kept: fix the cause and restore again") from cause


def _record(store: StateStore, st: ContainerState, meta: CheckpointMeta, image_dir: str, opts: RestoreOptions,
            init_pid: int, messages: dict[str, Any], new_stdio: dict[str, str], journal: str) -> RestoreResult:
    """Record the restored init in the state (or end it), then drop the journal and, unless kept, the logs."""
    try:
        st = pending.record_restored(store, st, init_pid, int(messages.get("monitor", 0)), sorted(meta.namespaces),
                                     new_stdio)
    except BaseException:
        # Unrecorded, the restored tree would run on out of anyone's reach: end it (its
        # pid namespace goes with its init; the monitor then exits).
        os.kill(init_pid, signal.SIGKILL)
        raise
    pending.remove_journal(journal)
    stats = stats_dict(image_dir, "restore")
    log_path: str | None = os.path.join(image_dir, RESTORE_LOG)
    if not opts.keep:
        remove_logs(image_dir, "restore")
        log_path = None
    return RestoreResult(container_id=st.id, pid=init_pid, image_dir=image_dir, log_path=log_path,
                         stats=stats, duration_us=0, criu_duration_us=criu_us(stats, "restore"))


def _kill_monitor(monitor_pid: int) -> None:
    """End a restoring monitor and what it runs (CRIU is in its session)."""
    try:
        os.killpg(monitor_pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
