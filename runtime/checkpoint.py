"""Checkpoint and restore of whole containers, over CRIU's RPC (no runc).

A checkpoint freezes the container, asks CRIU to dump its process tree into
an image directory (0700: memory pages hold secrets) and, unless told to
leave it running, leaves the container ``checkpointed``. Next to CRIU's
images we write ``criu-cr.json`` (what the restore must know: external
mounts, stdio pipe names, joined namespaces) and ``network.status`` (the
interfaces of the pre-created netns, to recreate it if it is gone).

A restore runs inside a fresh monitor process (see :mod:`runtime.monitor`):
it is the subreaper and the parent of the restored init, holds the new
stdout/stderr pipes and hands them to CRIU with ``inherit_fd`` under the old
pipes' names. A failed checkpoint leaves the container running and thawed;
a failed restore leaves the images untouched and the container checkpointed.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import shutil
import threading
import time
from dataclasses import dataclass
from typing import Any

from criu_rpc import CriuClient, CriuError, CriuOptions, CriuRpcError, NotifyHandler, has_inventory

from . import crplan, mounts, netns
from .cgroups import Cgroups
from .container import Container, _live
from .crmeta import (IMAGE_DIR_MODE, METADATA_FILE, NETWORK_FILE, CheckpointMeta, choose_network_lock,
                     fresh_image_dir, install_image_dir, read_meta, remove_logs, stats_dict)
from .errors import CheckpointError, ContainerStateError, RestoreError
from .init import report
from .monitor import read_report, spawn_monitor
from .spec import load_spec
from .state import ContainerState, StateStore, mark_stopped, proc_start_time
from .syscalls import PROC_NS_NAMES

__all__ = ["CheckpointOptions", "RestoreOptions", "CheckpointResult", "RestoreResult",
           "checkpoint", "restore", "RESTORE_TIMEOUT", "DEFAULT_IMAGE_DIR"]

RESTORE_TIMEOUT = 300.0  # seconds for CRIU to restore a tree (large memory takes long)
DEFAULT_IMAGE_DIR = "checkpoint"  # under the container's directory, as podman does
LOG_LEVEL = 4  # CRIU's most detailed: the logs are what an operator debugs with
DUMP_LOG = "dump.log"
RESTORE_LOG = "restore.log"
CTR_LOG = "ctr.log"


@dataclass(frozen=True, kw_only=True)
class CheckpointOptions:
    """How to checkpoint (podman's flag names). ``image_path`` defaults to ``<ctr>/checkpoint``."""

    image_path: str | None = None
    leave_running: bool = False
    tcp_established: bool = False
    file_locks: bool = False
    keep: bool = False
    network_lock: str | None = None  # None: chosen by what the host has
    log_level: int = LOG_LEVEL

    def __post_init__(self) -> None:
        if self.image_path is not None and not os.path.isabs(self.image_path):
            object.__setattr__(self, "image_path", os.path.abspath(self.image_path))


@dataclass(frozen=True, kw_only=True)
class RestoreOptions:
    """How to restore. ``bundle`` is needed only to restore into a new container."""

    image_path: str | None = None
    tcp_established: bool = False
    tcp_close: bool = False
    file_locks: bool = False
    keep: bool = False
    network_lock: str | None = None
    bundle: str | None = None
    log_level: int = LOG_LEVEL

    def __post_init__(self) -> None:
        if self.tcp_established and self.tcp_close:
            raise ValueError("tcp_established and tcp_close exclude each other: restore the "
                             "connections, or close them")
        if self.image_path is not None and not os.path.isabs(self.image_path):
            object.__setattr__(self, "image_path", os.path.abspath(self.image_path))


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckpointResult:
    """A finished checkpoint. ``stats``: CRIU's dump statistics (podman's field names)."""

    container_id: str
    image_dir: str
    log_path: str | None
    stats: dict[str, int]
    duration_us: int
    criu_duration_us: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class RestoreResult:
    """A finished restore: ``pid`` is the restored init, on the host."""

    container_id: str
    pid: int
    image_dir: str
    log_path: str | None
    stats: dict[str, int]
    duration_us: int
    criu_duration_us: int | None


# -- checkpoint -----------------------------------------------------------------------

def checkpoint(ctr: Container, opts: CheckpointOptions = CheckpointOptions(), *,
               criu_path: str | None = None, client: CriuClient | None = None) -> CheckpointResult:
    """Checkpoint the running container ``ctr``.

    ``client`` lets the caller choose how CRIU is reached, e.g. a
    ``CriuClient(service_address=...)`` of a ``criu service`` kept warm
    (it saves CRIU's start-up and kernel probing on every dump).

    Raises ContainerStateError (not running), ContainerBusyError,
    CheckpointError (CRIU refused: ``.log_path``, ``.log_errors``; the
    container keeps running, thawed), OSError.
    """
    started = time.monotonic()
    store: StateStore = ctr.store
    with store.lock(ctr.id):
        st = _live(store.read(ctr.id))
        if st.status != "running":
            hint = "resume it first" if st.status == "paused" else ""
            raise ContainerStateError(ctr.id, st.status, "checkpoint", hint)
        final_dir = opts.image_path or store.path(ctr.id, DEFAULT_IMAGE_DIR)
        work_dir = fresh_image_dir(final_dir)
        cg = Cgroups.from_dict(st.cgroups) if st.cgroups else None
        try:
            lock = opts.network_lock or choose_network_lock(criu_path, store.root)
            meta = dataclasses.replace(_describe(st, final_dir, opts), network_lock=lock)
            _write_sidecars(work_dir, st, meta)
            ctx = crplan.CrContext(
                rootfs=st.rootfs, pid=st.init_pid, namespaces=dict(st.joined_namespaces),
                ns_inodes={t: os.stat(p).st_ino for t, p in st.joined_namespaces.items()},
                mounts=meta.mounts, freezer_path=cg.freezer_path() if cg else None,
                network_lock=lock, tcp_established=opts.tcp_established, file_locks=opts.file_locks,
                leave_running=opts.leave_running)
            kwargs, _ = crplan.build(ctx, crplan.DUMP)
            criu_opts = CriuOptions(images_dir=work_dir, log_file=DUMP_LOG, log_level=opts.log_level, **kwargs)
            # The netns snapshot (netlink, ~30 ms) runs while CRIU dumps.
            snapshot = _Background(_snapshot_network, work_dir, st)
            if cg is not None:
                cg.freeze()  # faster than CRIU's 100 ms polling; CRIU finds it frozen
            try:
                (client or CriuClient(criu_path)).dump(criu_opts)
                snapshot.result()
            finally:
                if cg is not None:
                    # Thawed even when CRIU killed the tree: the empty cgroup must not
                    # stay frozen, or the restored tasks would land frozen.
                    cg.thaw()
        except CriuError as exc:
            raise _checkpoint_error(ctr.id, work_dir, exc) from exc
        except BaseException:
            if cg is not None and _alive(st):
                cg.thaw()
            shutil.rmtree(work_dir, ignore_errors=True)
            raise
        install_image_dir(work_dir, final_dir)
        stats = stats_dict(final_dir, "dump")
        log_path = os.path.join(final_dir, DUMP_LOG)
        if not opts.keep:
            remove_logs(final_dir, "dump")
            log_path = None
        extra = dict(st.extra)
        extra["checkpoint"] = {"image_dir": final_dir, "time": time.time(),
                               "leave_running": opts.leave_running}
        if opts.leave_running:
            store.write(st.replace(extra=extra))
        else:
            store.write(st.replace(status="checkpointed", extra=extra))
    return CheckpointResult(container_id=ctr.id, image_dir=final_dir, log_path=log_path, stats=stats,
                            duration_us=int((time.monotonic() - started) * 1e6),
                            criu_duration_us=_criu_us(stats, "dump"))


def _alive(st: ContainerState) -> bool:
    return proc_start_time(st.init_pid) == st.init_start_time


def _describe(st: ContainerState, image_dir: str, opts: CheckpointOptions) -> CheckpointMeta:
    binds = {}
    try:
        spec = load_spec(st.bundle)
        binds = {m.destination: m.source for m in spec.mounts if m.is_bind}
    except Exception:  # noqa: BLE001 - an adopted container's bundle may be gone; mountinfo suffices
        pass
    with open(f"/proc/{st.init_pid}/mountinfo", encoding="utf-8") as f:
        records = crplan.external_mounts(f.read(), binds)
    return CheckpointMeta(container_id=st.id, bundle=st.bundle, rootfs=st.rootfs,
                          namespaces=dict(st.joined_namespaces), mounts=records,
                          stdio={k: v for k, v in st.stdio.items() if v.startswith("pipe:")},
                          cgroups_path=st.cgroups.get("path", "") if st.cgroups else "",
                          upper_dir=os.path.join(os.path.dirname(st.rootfs), "overlay", "upper"),
                          leave_running=opts.leave_running, tcp_established=opts.tcp_established,
                          file_locks=opts.file_locks, created=time.time())


def _write_sidecars(work_dir: str, st: ContainerState, meta: CheckpointMeta) -> None:
    """criu-cr.json, and the filesystem changes of a checkpoint that leaves the container running."""
    if meta.leave_running and os.path.isdir(meta.upper_dir):
        # A copy that outlives the container: keep its filesystem changes with the images.
        mounts.archive_upper(meta.upper_dir, os.path.join(work_dir, "rootfs-diff.tar"))
        meta = dataclasses.replace(meta, rootfs_diff=True)
    meta.write(work_dir)


def _snapshot_network(work_dir: str, st: ContainerState) -> None:
    """network.status: the pre-created netns' interfaces, to recreate it if it is gone at restore."""
    net = st.joined_namespaces.get("network")
    if net:
        status = {"netns": net, "interfaces": [i.to_dict() for i in netns.snapshot_interfaces(net)]}
        with open(os.path.join(work_dir, NETWORK_FILE), "w", encoding="utf-8") as f:
            json.dump(status, f, indent=2)


class _Background:
    """Run a function in a thread (here: while CRIU dumps); ``result()`` re-raises its error."""

    def __init__(self, fn: Any, *args: Any) -> None:
        self._error: BaseException | None = None

        def run() -> None:
            try:
                fn(*args)
            except BaseException as exc:  # noqa: BLE001 - handed to result()
                self._error = exc

        self._thread = threading.Thread(target=run, name="criu-cr-snapshot", daemon=True)
        self._thread.start()

    def result(self) -> None:
        self._thread.join()
        if self._error is not None:
            raise self._error


def _checkpoint_error(cid: str, work_dir: str, exc: CriuError) -> CheckpointError:
    log = os.path.join(work_dir, DUMP_LOG)
    errors = list(getattr(exc, "log_errors", []) or [])
    hint = ""
    text = "\n".join(errors)
    if "--tcp-established" in text or "tcp-established" in _log_text(log):
        hint = ("the container has established TCP connections: checkpoint with --tcp-established "
                "(and restore with --tcp-established or --tcp-close)")
    return CheckpointError(cid, str(exc), log_path=log if os.path.exists(log) else None,
                           log_errors=errors, hint=hint)


def _log_text(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return "\n".join(line for line in f if "Error" in line)
    except OSError:
        return ""


def _criu_us(stats: dict[str, int], kind: str) -> int | None:
    if kind == "dump":
        keys = ("frozen_time",)
    else:
        keys = ("restore_time",)
    vals = [stats[k] for k in keys if stats.get(k) is not None]
    return vals[0] if vals else None


# -- restore --------------------------------------------------------------------------

def restore(ctr: Container | None, opts: RestoreOptions = RestoreOptions(), *, container_id: str | None = None,
            root: str | None = None, criu_path: str | None = None) -> RestoreResult:
    """Restore a checkpointed container (``ctr``), or a new one (``container_id`` + ``opts.bundle``).

    Raises ContainerStateError ("container X is running"), RestoreError (no
    complete checkpoint; CRIU failed: ``.log_path``, ``.log_errors`` -- the
    images stay for another try), ContainerExistsError, SpecError, OSError.
    """
    from .crnew import prepare_new_container  # restore into a container that does not exist yet

    started = time.monotonic()
    if ctr is None:
        if not container_id:
            raise ValueError("restore needs a container or a container_id")
        ctr = prepare_new_container(container_id, opts, root)
        fresh = True
    else:
        fresh = False
    store: StateStore = ctr.store
    try:
        with store.lock(ctr.id):
            st = _live(store.read(ctr.id))
            if st.status in ("running", "paused", "created"):
                raise ContainerStateError(ctr.id, st.status, "restore",
                                          f"container {ctr.id} is {st.status}; checkpoint or delete it first")
            image_dir = opts.image_path or (st.extra.get("checkpoint") or {}).get("image_dir") \
                or store.path(ctr.id, DEFAULT_IMAGE_DIR)
            if not has_inventory(image_dir):
                raise RestoreError(ctr.id, f"no complete checkpoint for {ctr.id} at {image_dir}",
                                   hint="checkpoint the container first, or give --image-path")
            meta = read_meta(image_dir)
            _ensure_network(meta, image_dir)
            criu_root, temporary = _restore_root(store, st)
            try:
                result = _restore_in_monitor(store, st, meta, image_dir, opts, criu_path, criu_root)
            finally:
                if temporary:
                    # The restored tree has its own copy of the mount; ours was only for CRIU.
                    mounts.unmount(criu_root)
                    os.rmdir(criu_root)
    except BaseException:
        if fresh:
            _discard(ctr)
        raise
    return dataclasses.replace(result, duration_us=int((time.monotonic() - started) * 1e6))


def _discard(ctr: Container) -> None:
    try:
        ctr.delete(force=True)
    except Exception:  # noqa: BLE001 - best effort: the original error matters more
        pass


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


class _RestoreHooks(NotifyHandler):
    """CRIU's restore callbacks: the restored init's pid arrives with post-restore.

    Nothing is needed at setup-namespaces: the joined netns is handed in as
    an fd and the cgroups exist before CRIU starts.
    """

    def __init__(self) -> None:
        self.pid: int | None = None

    def post_restore(self, ctx: Any) -> None:
        self.pid = ctx.pid


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
        d = os.path.dirname(st.rootfs)
        spec = load_spec(st.bundle)
        mounts.mount_overlay(spec.root.path, os.path.join(d, "overlay", "upper"),
                             os.path.join(d, "overlay", "work"), st.rootfs)
    return st.rootfs, False


def _restore_in_monitor(store: StateStore, st: ContainerState, meta: CheckpointMeta, image_dir: str,
                        opts: RestoreOptions, criu_path: str | None, criu_root: str) -> RestoreResult:
    cg = Cgroups.from_dict(st.cgroups) if st.cgroups else None
    if cg is not None:
        cg.create()
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
        ctx = crplan.CrContext(
            rootfs=criu_root, namespaces=dict(meta.namespaces), mounts=meta.mounts,
            cgroup_paths=dict(cg.paths) if cg else {}, cg_roots=tuple(cg.cg_roots()) if cg else (),
            bind_sources=spec_binds, stdio_fds=stdio_fds,
            # Unlock with the method the dump locked with: the other one would leave the lock in place.
            network_lock=opts.network_lock or meta.network_lock or choose_network_lock(criu_path, store.root),
            tcp_established=opts.tcp_established, tcp_close=opts.tcp_close, file_locks=opts.file_locks)
        try:
            kwargs, open_paths = crplan.build(ctx, crplan.RESTORE)
        except LookupError as exc:
            raise RestoreError(st.id, str(exc)) from exc
        inherit = list(kwargs.pop("inherit_fd", ()))
        from criu_rpc import InheritFd

        for key, path in open_paths:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            opened.append(fd)
            inherit.append(InheritFd(key=key, fd=fd))
        criu_opts = CriuOptions(images_dir=image_dir, log_file=RESTORE_LOG, log_level=opts.log_level,
                                inherit_fd=tuple(inherit), **kwargs)
        client = CriuClient(criu_path)
        client.criu_path  # locate CRIU here, so a missing binary is reported before forking

        def produce_init() -> int:
            hooks = _RestoreHooks()
            try:
                res = client.restore(criu_opts, notify=hooks)
                if hooks.pid is not None and hooks.pid != res.pid:
                    raise RestoreError(st.id, f"CRIU announced pid {hooks.pid} after restore but answered {res.pid}")
                return res.pid
            except CriuError as exc:
                report(rep_w, criu={"message": str(exc), "log_path": getattr(exc, "log_path", None),
                                    "log_errors": list(getattr(exc, "log_errors", []) or [])})
                raise
            finally:
                for fd in [out_w, err_w, *opened]:
                    os.close(fd)

        new_stdio = {"stdin": "/dev/null", "stdout": f"pipe:[{os.fstat(out_w).st_ino}]",
                     "stderr": f"pipe:[{os.fstat(err_w).st_ino}]"}
        spawn_monitor(log_path=store.path(st.id, CTR_LOG), output_fds=(out_r, err_r), report_w=rep_w,
                      keep_fds=(out_w, err_w, *opened), produce_init=produce_init,
                      on_exit=functools.partial(mark_stopped, store.root, st.id))
    finally:
        for fd in (out_r, out_w, err_r, err_w, rep_w, *opened):
            os.close(fd)
    messages = read_report(rep_r, RESTORE_TIMEOUT)
    init_pid = int(messages.get("init", 0))
    if "error" in messages or not init_pid:
        crit = messages.get("criu") or {}
        cause = CriuRpcError("RESTORE", log_path=crit.get("log_path"), log_errors=crit.get("log_errors"))
        raise RestoreError(st.id, crit.get("message") or messages.get("error", "restore failed"),
                           log_path=crit.get("log_path"), log_errors=crit.get("log_errors") or [],
                           hint=f"the checkpoint at {image_dir} is intact: fix the cause and restore again") from cause
    namespaces = {t: (p if t in meta.namespaces else f"/proc/{init_pid}/ns/{PROC_NS_NAMES[t]}")
                  for t, p in st.namespaces.items()}
    st = st.replace(status="running", init_pid=init_pid, init_start_time=proc_start_time(init_pid) or 0,
                    monitor_pid=int(messages.get("monitor", 0)), namespaces=namespaces, stdio=new_stdio,
                    exit_status=None)
    store.write(st)
    stats = stats_dict(image_dir, "restore")
    log_path: str | None = os.path.join(image_dir, RESTORE_LOG)
    if not opts.keep:
        remove_logs(image_dir, "restore")
        log_path = None
    return RestoreResult(container_id=st.id, pid=init_pid, image_dir=image_dir, log_path=log_path,
                         stats=stats, duration_us=0, criu_duration_us=_criu_us(stats, "restore"))


__all__ += ["IMAGE_DIR_MODE", "METADATA_FILE"]
