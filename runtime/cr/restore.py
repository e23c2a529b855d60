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
import json
import os
import signal
import time
import warnings
from typing import Any

from criu_rpc import CriuClient, CriuError, CriuRpcError, InheritFd, NotifyHandler, deadline_for
from criu_rpc.notify import NOTIFY_SCRIPTS

from runtime.cr import criu_options, pending
from runtime.linux import mounts
from runtime.net import netns
from runtime.linux.cgroups import Cgroups
from runtime.container.host import overlay_dirs
from runtime.cr.criu_options import Direction
from runtime.cr.meta import NETWORK_FILE, CheckpointMeta, choose_network_lock, read_meta, remove_logs, require_usable_criu, stats_dict
from runtime.cr.options import CTR_LOG, DEFAULT_IMAGE_DIR, RESTORE_LOG, REPORT_MARGIN, RestoreOptions, RestoreResult, criu_us
from runtime.errors import ContainerStateError, RestoreError, criu_message
from runtime.cr.imagecheck import require_checkpoint
from runtime.container.init import report
from runtime.container.monitor import read_report, spawn_monitor
from runtime.oci.spec import load_spec
from runtime.linux.signals import deferred
from runtime.container.state import ContainerState, StateStore, mark_stopped
from runtime.linux.procfs import proc_start_time, process_alive

__all__ = ["restore", "restore_locked"]


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
        if st.status in ("running", "paused", "created"):
            raise ContainerStateError(cid, st.status, "restore",
                                      f"container {cid} is {st.status}; checkpoint or delete it first")
        image_dir = opts.image_path or (st.extra.get("checkpoint") or {}).get("image_dir") \
            or store.path(cid, DEFAULT_IMAGE_DIR)
        facts = require_usable_criu(criu_path, store.root)
        # Before CRIU reads a byte: the files as the checkpoint wrote them.
        require_checkpoint(cid, image_dir, verify=opts.verify and not new)
        meta = read_meta(image_dir, container_id=cid)
        if opts.netns:  # another pre-created netns (a second copy's own): CRIU joins that one
            meta = dataclasses.replace(meta, namespaces={**meta.namespaces, "network": opts.netns})
        if new:
            _warn_shared_netns(store, cid, meta)
        _ensure_network(meta, image_dir)
        criu_root, temporary = _restore_root(store, st)
        try:
            # Unlock with the method the dump locked with: the other one would leave the lock.
            lock = opts.network_lock or meta.network_lock or choose_network_lock(facts=facts)
            st = pending.begin(store, st, "restore", image_dir=image_dir, joined=sorted(meta.namespaces))
            with deferred("the restore"):
                try:
                    result = _restore_in_monitor(store, st, meta, image_dir, opts, criu_path, criu_root,
                                                 lock, notify)
                except BaseException:
                    _undo(store, st, image_dir)
                    raise
        finally:
            if temporary:
                # The restored tree has its own copy of the mount; ours was only for CRIU.
                mounts.unmount(criu_root)
                os.rmdir(criu_root)
    return dataclasses.replace(result, duration_us=int((time.monotonic() - started) * 1e6))


def _warn_shared_netns(store: StateStore, cid: str, meta: CheckpointMeta) -> None:
    """A copy restored beside a running original takes the same IP and ports in the same netns."""
    path = meta.namespaces.get("network")
    if not path:
        return
    for other in store.iter_states():
        if other.id != cid and other.joined_namespaces.get("network") == path \
                and other.status in ("running", "paused") and process_alive(other.init_pid, other.init_start_time):
            warnings.warn(f"container {other.id!r} runs in the same network namespace {path}: the copy "
                          f"{cid!r} takes the same IP and ports (the restore fails on a port in use)",
                          RuntimeWarning, stacklevel=4)


def _undo(store: StateStore, st: ContainerState, image_dir: str) -> None:
    """After a failed or interrupted restore: nothing of it may run, no mount of CRIU's stay."""
    try:
        pending.kill_cgroup(st)
        mounts.unmount_under(image_dir)
    finally:
        store.write(pending.finish(st))
    pending.remove_journal(store.path(st.id, pending.RESTORE_JOURNAL))


def _ensure_network(meta: CheckpointMeta, image_dir: str) -> None:
    """Restore into the pre-created netns; recreate it (same name, IPs, MACs) when it is gone."""
    path = meta.namespaces.get("network")
    if not path or netns.netns_exists(path):
        return
    try:
        with open(os.path.join(image_dir, NETWORK_FILE), encoding="utf-8") as f:
            status = json.load(f)
    except FileNotFoundError:
        raise RestoreError(meta.container_id, f"network namespace {path} is gone and the checkpoint "
                           f"has no {NETWORK_FILE} to recreate it", hint=f"create {path} again") from None
    if not path.startswith(netns.NETNS_DIR + "/"):
        raise RestoreError(meta.container_id, f"network namespace {path} is gone; only namespaces under "
                           f"{netns.NETNS_DIR} can be recreated", hint=f"create {path} again")
    netns.recreate_from_snapshot(os.path.basename(path), status["interfaces"])


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
    """CRIU's restore callbacks: the restored init's pid arrives with post-restore.

    Nothing is needed at setup-namespaces: the joined netns is handed in as
    an fd and the cgroups exist before CRIU starts. A caller's handler sees
    every callback first.
    """

    def __init__(self, user: NotifyHandler | None = None) -> None:
        self.pid: int | None = None
        self._user = user
        if user is not None:  # every other callback is the caller's
            for name in set(NOTIFY_SCRIPTS.values()) - {"post_restore"}:
                setattr(self, name, getattr(user, name))

    def post_restore(self, ctx: Any) -> None:
        self.pid = ctx.pid
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
                        opts: RestoreOptions, criu_path: str | None, criu_root: str,
                        network_lock: str, notify: NotifyHandler | None = None) -> RestoreResult:
    cg = Cgroups.from_dict(st.cgroups) if st.cgroups else None
    if cg is not None:
        cg.create()
    journal = store.path(st.id, pending.RESTORE_JOURNAL)
    pending.remove_journal(journal)
    opened: list[int] = []
    out_r, out_w = os.pipe2(os.O_CLOEXEC)
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    rep_r, rep_w = os.pipe2(os.O_CLOEXEC)
    try:
        stdio_fds = {}
        if "stdout" in meta.stdio:
            stdio_fds[meta.stdio["stdout"]] = out_w
        if "stderr" in meta.stdio:
            stdio_fds[meta.stdio["stderr"]] = err_w
        spec_binds = {}
        try:
            spec_binds = {m.destination: m.source for m in load_spec(st.bundle).mounts if m.is_bind}
        except Exception:  # noqa: BLE001 - fall back to the recorded sources
            pass
        ctx = criu_options.CrContext(
            rootfs=criu_root, namespaces=dict(meta.namespaces), mounts=meta.mounts,
            cgroup_paths=dict(cg.paths) if cg else {}, cg_roots=tuple(cg.cg_roots()) if cg else (),
            bind_sources=spec_binds, stdio_fds=stdio_fds,
            network_lock=network_lock,
            **_tcp_mode(opts, meta), file_locks=opts.file_locks)
        try:
            plan = criu_options.build(ctx, Direction.RESTORE)
        except LookupError as exc:
            raise RestoreError(st.id, str(exc)) from exc
        handed: list[InheritFd] = []
        for key, path in plan.open_paths:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            opened.append(fd)
            handed.append(InheritFd(key=key, fd=fd))
        criu_opts = plan.options(images_dir=image_dir, log_file=RESTORE_LOG, log_level=opts.log_level,
                                 opened=handed)
        client = CriuClient(criu_path)
        client.criu_path  # locate CRIU here, so a missing binary is reported before forking
        timeout = opts.timeout or deadline_for(image_dir)
        new_stdio = {"stdin": "/dev/null", "stdout": f"pipe:[{os.fstat(out_w).st_ino}]",
                     "stderr": f"pipe:[{os.fstat(err_w).st_ino}]"}

        def produce_init() -> int:
            # The journal outlives a killed criu-cr: the next command settles from it.
            me = os.getpid()
            pending.write_journal(journal, monitor=me, monitor_start=proc_start_time(me) or 0)
            hooks = _RestoreHooks(notify)
            try:
                res = client.restore(criu_opts, notify=hooks, timeout=timeout)
                if hooks.pid is not None and hooks.pid != res.pid:
                    raise RestoreError(st.id, f"CRIU announced pid {hooks.pid} after restore but answered {res.pid}")
                pending.write_journal(journal, init=res.pid, init_start=proc_start_time(res.pid) or 0,
                                      stdio=new_stdio)
                return res.pid
            except BaseException as exc:
                pending.write_journal(journal, error=str(exc) or type(exc).__name__)
                if isinstance(exc, CriuError):
                    report(rep_w, criu={"message": criu_message(exc), "log_path": getattr(exc, "log_path", None),
                                        "log_errors": list(getattr(exc, "log_errors", []) or [])})
                raise
            finally:
                for fd in [out_w, err_w, *opened]:
                    os.close(fd)

        monitor_pid = spawn_monitor(log_path=store.path(st.id, CTR_LOG), output_fds=(out_r, err_r),
                                    report_w=rep_w, keep_fds=(out_w, err_w, *opened), produce_init=produce_init,
                                    on_exit=functools.partial(mark_stopped, store.root, st.id))
    finally:
        for fd in (out_r, out_w, err_r, err_w, rep_w, *opened):
            os.close(fd)
    st = pending.update(store, st, monitor=monitor_pid)
    try:
        messages = read_report(rep_r, timeout + REPORT_MARGIN, watch_pid=monitor_pid)
    except TimeoutError:
        _kill_monitor(monitor_pid)
        raise RestoreError(st.id, f"the restore did not finish within {timeout + REPORT_MARGIN:.0f} s: it was stopped, "
                           "and nothing of the restore runs", log_path=os.path.join(image_dir, RESTORE_LOG),
                           hint=f"see {os.path.join(image_dir, RESTORE_LOG)}") from None
    init_pid = int(messages.get("init", 0))
    if "error" in messages or not init_pid:
        crit = messages.get("criu") or {}
        cause = CriuRpcError("RESTORE", log_path=crit.get("log_path"), log_errors=crit.get("log_errors"))
        raise RestoreError(st.id, crit.get("message") or messages.get("error", "restore failed"),
                           log_path=crit.get("log_path"), log_errors=crit.get("log_errors") or [],
                           hint=f"the checkpoint at {image_dir} is kept: fix the cause and restore again") from cause
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
