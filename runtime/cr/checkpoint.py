"""Checkpoint of whole containers over CRIU's RPC (no runc); :func:`restore` is in runtime.cr.restore.

A checkpoint freezes the container, asks CRIU to dump its process tree into
an image directory (0700: memory pages hold secrets) and, unless told to
leave it running, leaves the container ``checkpointed``. Next to CRIU's
images we write ``criu-cr.json`` (what the restore must know: external
mounts, stdio pipe names, joined namespaces, the network-lock method) and
``network.status`` (the interfaces of the pre-created netns, to recreate it
if it is gone). A failed checkpoint leaves the container running and thawed,
and an earlier checkpoint in the same directory untouched. See docs/checkpoint.md.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Any

from criu_rpc import CriuClient, CriuError, NotifyHandler, deadline_for
from criu_rpc.faults import FaultAt
from criu_rpc.trace import timed
from runtime import lazy
from runtime.container.host import overlay_dirs, release_network_lock
from runtime.container.state import Action, ContainerState, StateStore, process_alive
from runtime.cr import criu_options, manifest, pending
from runtime.cr.criu_options import Direction
from runtime.cr.layout import ROOTFS_DIFF
from runtime.cr.meta import (CheckpointMeta, choose_network_lock, fresh_image_dir, install_image_dir, remove_logs,
                             require_usable_criu, stats_dict)
from runtime.cr.options import DEFAULT_IMAGE_DIR, DUMP_LOG, CheckpointOptions, CheckpointResult, criu_us
from runtime.errors import CheckpointError, ContainerError, criu_message
from runtime.linux import mounts
from runtime.linux.cghier import read_proc_cgroup_text
from runtime.linux.cgroups import Cgroups
from runtime.linux.signals import deferred
from runtime.net import snapshot
from runtime.oci.spec import CAPABILITY_SETS, load_spec
from runtime.oci.support import bind_sources

__all__ = ["checkpoint"]

_log = logging.getLogger("criu_cr.cr")

FULL_FS_BYTES = 1 << 20  # less free than this after a failed dump: the disk was the reason

# What a checkpoint writes beside its images when asked: the option that asks, its writer (what it does),
# loaded only then (the archive and OCI writers bring tarfile, zstandard and the OCI layout
# code: ~6 ms of imports a plain `criu-cr checkpoint` would pay; docs/performance.md).
_OUTPUTS = (("export", "runtime.cr.portable:export_checkpoint", "exporting"),
            ("create_image", "runtime.cr.ociimage:create_checkpoint_image", "writing the image"))

# -- checkpoint -----------------------------------------------------------------------

def checkpoint(store: StateStore, container_id: str, opts: CheckpointOptions = CheckpointOptions(), *,
               criu_path: str | None = None, client: CriuClient | None = None,
               notify: NotifyHandler | None = None) -> CheckpointResult:
    """Checkpoint the running container ``container_id``.

    ``client`` lets the caller choose how CRIU is reached, e.g. a
    ``CriuClient(service_address=...)`` of a ``criu service`` kept warm
    (it saves CRIU's start-up and kernel probing on every dump). ``notify``
    receives CRIU's dump callbacks (a hook that raises aborts the dump).

    SIGINT/SIGTERM/SIGHUP arriving while CRIU works are held until the
    checkpoint is complete and recorded (see :mod:`runtime.linux.signals`); a
    killed criu-cr is settled by the next command (:mod:`runtime.cr.pending`).

    Raises ContainerStateError (not running), ContainerBusyError,
    CheckpointError (CRIU refused: ``.log_path``, ``.log_errors``; the
    container keeps running, thawed), ImageDirError, ArchiveError (with
    ``opts.export``/``opts.create_image``: the checkpoint was taken, its archive or image
    not written), OSError.
    """
    started = time.monotonic()
    cid = container_id
    with store.lock(cid):
        st = pending.current(store, cid)
        st.check(Action.COPY if opts.leave_running else Action.CHECKPOINT)
        with timed(_log, "container %r: checkpoint: finding a usable CRIU", cid):
            facts = require_usable_criu(criu_path, store.root)
        final_dir = opts.image_path or store.path(cid, DEFAULT_IMAGE_DIR)
        work_dir = fresh_image_dir(final_dir, container_id=cid)
        st = pending.begin(store, st, "checkpoint", work_dir=work_dir, final_dir=final_dir,
                           leave_running=opts.leave_running)
        with deferred("the checkpoint"):
            try:
                _dump(st, opts, facts, work_dir, criu_path, client, notify)
            except CriuError as exc:
                raise _failed(store, st, work_dir, exc) from exc
            except BaseException:
                _abandon(store, st, work_dir)
                raise
            with timed(_log, "container %r: checkpoint: installing %s", cid, final_dir):
                final_dir = _install(cid, work_dir, final_dir, opts.leave_running)
            extra = pending.with_checkpoint(pending.finish(st), final_dir, opts.leave_running)
            store.write(st.advance(Action.COPY if opts.leave_running else Action.CHECKPOINT, extra=extra))
        stats = stats_dict(final_dir, "dump")
        # Before the logs go: the archive carries CRIU's statistics and log, as podman's does.
        written = {}
        for name, writer, doing in _OUTPUTS:
            if getattr(opts, name):
                with timed(_log, "container %r: checkpoint: %s %s", cid, doing, getattr(opts, name)):
                    written[name] = lazy.load(writer)(store, st, final_dir, opts)
        log_path: str | None = os.path.join(final_dir, DUMP_LOG)
        if not opts.keep:
            remove_logs(final_dir, "dump")
            log_path = None
    _log.debug("container %r: checkpoint done in %.3f s", cid, time.monotonic() - started)
    return CheckpointResult(container_id=cid, image_dir=final_dir, log_path=log_path, stats=stats,
                            duration_us=int((time.monotonic() - started) * 1e6),
                            criu_duration_us=criu_us(stats, "dump"), archive=written.get("export"),
                            image=written.get("create_image"))


def _dump(st: ContainerState, opts: CheckpointOptions, facts: dict[str, Any], work_dir: str,
          criu_path: str | None, client: CriuClient | None, notify: NotifyHandler | None) -> None:
    """Freeze, dump into ``work_dir`` with the side files, thaw. Raises CriuError, OSError."""
    cg = Cgroups.from_dict(st.cgroups) if st.cgroups else None
    lock = opts.network_lock or choose_network_lock(facts=facts)
    meta = dataclasses.replace(_describe(st, opts), network_lock=lock, netns_empty=_netns_left_empty(st))
    if (meta.leave_running or opts.portable) and os.path.isdir(meta.upper_dir):
        # a copy that may outlive the container, or one that leaves the machine (podman exports it too)
        meta = dataclasses.replace(meta, rootfs_diff=True)
    meta.write(work_dir)
    ctx = criu_options.CrContext(
        rootfs=st.rootfs, pid=st.init_pid, namespaces=dict(st.joined_namespaces),
        ns_inodes={t: os.stat(p).st_ino for t, p in st.joined_namespaces.items()},
        mounts=meta.mounts, freezer_path=cg.freezer_path() if cg else None,
        cgroup_paths=dict(cg.paths) if cg else {}, proc_cgroup=read_proc_cgroup_text(st.init_pid),
        network_lock=lock, tcp_established=opts.tcp_established,
        tcp_skip_in_flight=(opts.leave_running if opts.tcp_skip_in_flight is None
                            else opts.tcp_skip_in_flight),
        file_locks=opts.file_locks,
        leave_running=opts.leave_running, page_server=opts.page_server, parent_img=opts.parent_img,
        netns_empty=meta.netns_empty, lazy_port=opts.lazy_port)
    criu_opts = criu_options.build(ctx, Direction.DUMP).options(images_dir=work_dir, log_file=DUMP_LOG,
                                                               log_level=opts.log_level)
    if cg is not None:
        with timed(_log, "container %r: checkpoint: freezing its cgroup", st.id):
            cg.freeze()  # faster than CRIU's 100 ms polling; CRIU finds it frozen
    # While the tree is frozen -- the moment the images hold -- and beside
    # CRIU's dump: the netns snapshot and, for a copy, the filesystem changes.
    # The pages are hashed as CRIU writes them: the manifest then costs little more.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="criu-cr-side") as pool, \
            manifest.follow(work_dir) as pages:
        side = pool.submit(_side_files, work_dir, st, meta)
        sealed: list[bool] = []

        def finish(strict: bool) -> None:
            """The side files done and the manifest sealed: after the dump, or at post-dump (before_kill)."""
            wait([side])
            try:
                side.result()
            except (OSError, ContainerError) as exc:  # archive_upper raises tarfile's errors as OSError
                if strict:
                    raise  # the container still runs: fail the checkpoint, nothing is lost
                # CRIU has already stopped the container: keep its images, lose only the extra.
                _log.warning("container %r: checkpoint taken, but %s", st.id, exc)
            with timed(_log, "container %r: checkpoint: sealing the manifest", st.id):
                manifest.seal(work_dir, container_id=st.id, strict=strict, followed=pages)  # for restore
            sealed.append(True)

        if opts.before_kill is not None:
            # At post-dump the images are complete, the tree frozen and CRIU waits for our word: a
            # raising action makes CRIU resume the tree instead of ending it (the hook CRIU keeps for
            # migrations). FaultAt is just that: an action at one notify, then the caller's handler.
            notify = FaultAt("post-dump", lambda _ctx: (finish(True), opts.before_kill(work_dir)),
                             inner=notify, request="DUMP")
        try:
            timeout = opts.timeout or deadline_for(_memory_bytes(cg))
            with timed(_log, "container %r: checkpoint: CRIU's dump (deadline %.0f s)", st.id, timeout):
                (client or CriuClient(criu_path)).dump(criu_opts, notify=notify, timeout=timeout)
        finally:
            with timed(_log, "container %r: checkpoint: waiting for the side files", st.id):
                wait([side])  # before the thaw: the rootfs diff must not see files change
            if cg is not None:
                # Thawed even when CRIU killed the tree: the empty cgroup must not
                # stay frozen, or the restored tasks would land frozen.
                cg.thaw()
        if not sealed:
            finish(opts.leave_running)


def _netns_left_empty(st: ContainerState) -> bool:
    """Whether the container's private netns can be left out of the images, as runc always does.

    CRIU's netns dump runs ``ip addr/route/rule save`` and ``iptables-save``
    while the tree is frozen: 66 ms of a small container's 171 ms (and ~18 ms
    of restoring). Left out only when there is nothing to lose: a netns of
    its own holding only ``lo``, no ``net.*`` sysctl from the spec, a
    container without CAP_NET_ADMIN (it cannot have changed routes or
    rules), and no joined uts/ipc (CRIU refuses ``empty_ns`` with ``join_ns``).
    """
    if "network" in st.joined_namespaces or "network" not in st.namespaces or not st.init_pid:
        return False
    if any(t in st.joined_namespaces for t in ("uts", "ipc")):
        return False
    try:
        spec = load_spec(st.bundle)
        caps = spec.process.capabilities
        if caps is None or any("CAP_NET_ADMIN" in (caps.get(k) or ()) for k in CAPABILITY_SETS):
            return False
        if any(k.startswith("net.") for k in spec.sysctl):
            return False
        links = snapshot.snapshot_interfaces(f"/proc/{st.init_pid}/ns/net")
    except (ContainerError, OSError, ValueError):
        return False  # cannot tell: dump it whole
    return [link.kind for link in links] == ["loopback"]


def _memory_bytes(cg: Cgroups | None) -> int:
    """What the container's memory cgroup charges (0 when unknown): what CRIU will write."""
    if cg is None:
        return 0
    for ctrl, name in (("memory", "memory.usage_in_bytes"), ("", "memory.current")):
        path = cg.paths.get(ctrl)
        if path:
            try:
                with open(os.path.join(path, name), encoding="ascii") as f:
                    return int(f.read().strip() or 0)
            except (OSError, ValueError):
                continue
    return 0


def _install(cid: str, work_dir: str, final_dir: str, leave_running: bool) -> str:
    """Swap the finished images in; returns where they are.

    When the swap fails after CRIU stopped the container, the images stay
    where they are and are recorded there: they are the container now.
    """
    try:
        install_image_dir(work_dir, final_dir)
        return final_dir
    except OSError as exc:
        if leave_running:
            mounts.remove_tree(work_dir)
            raise
        _log.warning("container %r: could not move the checkpoint to %s (%s); it stays at %s",
                     cid, final_dir, exc, work_dir)
        return work_dir


def _failed(store: StateStore, st: ContainerState, work_dir: str, exc: CriuError) -> CheckpointError:
    """After CRIU failed: the container runs on (thawed, unlocked) unless its tree died."""
    alive = process_alive(st.init_pid, st.init_start_time)
    if alive:
        _unlock_quietly(st)  # a CRIU that was killed did not unlock
    err = _checkpoint_error(st.id, work_dir, exc, init_died=not alive)
    _prune_failed(work_dir)
    store.write(pending.finish(st).advance(Action.COPY if alive else Action.EXIT))
    return err


def _abandon(store: StateStore, st: ContainerState, work_dir: str) -> None:
    """Not CRIU's failure (our own error, an interrupt before CRIU ran): undo everything."""
    if st.cgroups and process_alive(st.init_pid, st.init_start_time):
        Cgroups.from_dict(st.cgroups).thaw()
        _unlock_quietly(st)
    try:
        mounts.remove_tree(work_dir)
    finally:
        store.write(pending.finish(st))


def _unlock_quietly(st: ContainerState) -> None:
    try:
        release_network_lock(st)
    except OSError as exc:
        _log.warning("container %r: could not remove CRIU's network lock: %s", st.id, exc)


def _prune_failed(work_dir: str) -> None:
    """Keep only CRIU's log of a failed dump (its pages can be hundreds of MB)."""
    mounts.unmount_under(work_dir)
    for name in os.listdir(work_dir):
        if name == DUMP_LOG:
            continue
        path = os.path.join(work_dir, name)
        if os.path.isdir(path) and not os.path.islink(path):
            mounts.remove_tree(path)
        else:
            os.unlink(path)


def _describe(st: ContainerState, opts: CheckpointOptions) -> CheckpointMeta:
    binds = bind_sources(st.bundle)
    with open(f"/proc/{st.init_pid}/mountinfo", encoding="utf-8") as f:
        records = criu_options.external_mounts(f.read(), binds)
    return CheckpointMeta(container_id=st.id, bundle=st.bundle, rootfs=st.rootfs,
                          namespaces=dict(st.joined_namespaces), mounts=records,
                          stdio={k: v for k, v in st.stdio.items() if v.startswith("pipe:")},
                          cgroups_path=st.cgroups.get("path", "") if st.cgroups else "",
                          upper_dir=overlay_dirs(os.path.dirname(st.rootfs))[0],
                          leave_running=opts.leave_running, tcp_established=opts.tcp_established,
                          file_locks=opts.file_locks, created=time.time())


def _side_files(work_dir: str, st: ContainerState, meta: CheckpointMeta) -> None:
    """network.status (the pre-created netns' interfaces, to recreate it if it is gone at
    restore) and, for a copy, rootfs-diff.tar (the overlay's upper dir)."""
    net = st.joined_namespaces.get("network")
    if net:
        snapshot.write_network_status(work_dir, net, snapshot.snapshot_interfaces(net))
    if meta.rootfs_diff:
        mounts.archive_upper(meta.upper_dir, os.path.join(work_dir, ROOTFS_DIFF))


def _checkpoint_error(cid: str, work_dir: str, exc: CriuError, *, init_died: bool = False) -> CheckpointError:
    log = os.path.join(work_dir, DUMP_LOG)
    errors = list(getattr(exc, "log_errors", []) or [])
    hint = ""
    if init_died:
        hint = "the container's init died during the checkpoint: the container is stopped"
    text = "\n".join(errors)
    logged = _log_text(log)
    if init_died:
        pass
    elif _nearly_full(work_dir):
        hint = (f"the filesystem of {os.path.dirname(work_dir)} is full: free space there, or "
                "checkpoint to another --image-path")
    elif "--tcp-established" in text or "tcp-established" in logged:
        hint = ("the container has established TCP connections: checkpoint with --tcp-established "
                "(and restore with --tcp-established or --tcp-close)")
    elif "In-flight connection" in text or "In-flight connection" in logged:
        hint = ("a connection was still being accepted by the container: retry, or checkpoint with "
                "--tcp-skip-in-flight to drop such connections")
    return CheckpointError(cid, criu_message(exc), log_path=log if os.path.exists(log) else None,
                           log_errors=errors, hint=hint)


def _nearly_full(path: str) -> bool:
    """Whether ``path``'s filesystem has (almost) no room left -- CRIU's log may not even say so."""
    try:
        st = os.statvfs(path)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < FULL_FS_BYTES


def _log_text(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return "\n".join(line for line in f if "Error" in line)
    except OSError:
        return ""
