"""Making the container's init process (runs inside the monitor, then in forked children).

The chain, as with runc: the monitor forks a *setup* process that joins the
namespaces given by path, enters the container's cgroups, unshares the
namespaces to create and forks the container's *init* (pid 1 of the new pid
namespace); the setup process reports init's host pid and exits, so init is
re-parented to the monitor (a subreaper). Init prepares the rootfs,
pivot_roots, sets hostname/sysctl/rlimits/user, reports ``ready`` on the report
pipe, then blocks opening ``exec.fifo`` for writing until ``start`` opens it for
reading, and execs the process.

Messages on the report pipe are JSON lines: ``{"init": PID}``, ``{"ready": true}``,
``{"error": "..."}``; the reader waits for EOF (every writer closed).
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
from dataclasses import dataclass

from runtime.linux import caps, mounts
from runtime.linux import syscalls as sc
from runtime.linux.cgroups import Cgroups
from runtime.oci.spec import Spec

__all__ = ["InitConfig", "spawn_init", "report", "find_executable", "EXEC_FIFO", "CREATED_NAMESPACES"]

EXEC_FIFO = "exec.fifo"
# Namespaces unshared by the setup process (cgroup comes later, from init, once it sits in its cgroups).
CREATED_NAMESPACES = ("mount", "uts", "ipc", "pid", "network")
_JOIN_ORDER = ("pid", "network", "ipc", "uts", "cgroup", "mount")


@dataclass(frozen=True, kw_only=True)
class InitConfig:
    """What the init process needs. File descriptors belong to the monitor."""

    spec: Spec
    rootfs: str  # host path of the mounted root (overlay)
    state_dir: str  # holds exec.fifo
    cgroups: Cgroups | None
    stdout_w: int
    stderr_w: int
    report_w: int


def report(fd: int, **message: object) -> None:
    """Write one JSON line to the report pipe; a reader that went away is ignored."""
    try:
        os.write(fd, (json.dumps(message) + "\n").encode())
    except OSError:
        pass


def find_executable(name: str, env: tuple[str, ...] | list[str]) -> str | None:
    """Resolve ``name`` like execvp does, with the PATH from the process env (in the current root)."""
    path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    for entry in env:
        if entry.startswith("PATH="):
            path = entry[5:]
    return shutil.which(name, path=path)


def spawn_init(cfg: InitConfig) -> int:
    """Fork the setup process; return init's host pid. Runs in the monitor.

    Raises ``RuntimeError`` when the setup process fails before forking init
    (it reports the reason on the report pipe itself).
    """
    pid_r, pid_w = os.pipe2(os.O_CLOEXEC)
    setup = os.fork()
    if setup == 0:
        os.close(pid_r)
        _setup_process(cfg, pid_w)  # never returns
    os.close(pid_w)
    with os.fdopen(pid_r, "rb") as f:
        data = f.read()
    _, status = os.waitpid(setup, 0)
    if not data.strip():
        raise RuntimeError(f"setup process failed (status {status})")
    return int(data)


def _setup_process(cfg: InitConfig, pid_w: int) -> None:
    code = 1
    try:
        spec = cfg.spec
        for ns_type in _JOIN_ORDER:
            ns = spec.namespace(ns_type)
            if ns is not None and ns.path:
                fd = os.open(ns.path, os.O_RDONLY | os.O_CLOEXEC)
                try:
                    sc.setns(fd, sc.NAMESPACE_FLAGS[ns_type], ns.path)
                finally:
                    os.close(fd)
        if cfg.cgroups is not None:
            cfg.cgroups.add(os.getpid())
        flags = 0
        for ns_type in CREATED_NAMESPACES:
            ns = spec.namespace(ns_type)
            if ns is not None and not ns.path:
                flags |= sc.NAMESPACE_FLAGS[ns_type]
        sc.unshare(flags)
        child = os.fork()
        if child == 0:
            os.close(pid_w)
            _init_process(cfg)  # never returns
        os.write(pid_w, str(child).encode())
        code = 0
    except BaseException as exc:  # noqa: BLE001 - everything goes back to the caller
        report(cfg.report_w, error=f"container setup: {_describe(exc)}")
    os._exit(code)


@dataclass(kw_only=True)
class _Setup:
    """What init's setup steps hand on to the exec."""

    binds: object = None  # mounts.cgroup_binds(), read before the mounts change
    fifo_dir: int = -1  # O_PATH: reopened through /proc/self/fd after pivot_root and the uid switch,
    fifo_path: int = -1  # when the state directory is neither visible nor searchable
    program: str = ""


def _prepare(cfg: InitConfig, s: _Setup) -> None:
    spec = cfg.spec
    s.binds = mounts.cgroup_binds()
    cg = spec.namespace("cgroup")
    if cg is not None and not cg.path:
        sc.unshare(sc.CLONE_NEWCGROUP)
    net = spec.namespace("network")
    if net is not None and not net.path:
        sc.link_up("lo")
    s.fifo_dir = os.open(cfg.state_dir, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    s.fifo_path = os.open(EXEC_FIFO, os.O_PATH | os.O_CLOEXEC, dir_fd=s.fifo_dir)


def _hostname(cfg: InitConfig, s: _Setup) -> None:
    if cfg.spec.hostname:
        sc.sethostname(cfg.spec.hostname)


def _sysctl(cfg: InitConfig, s: _Setup) -> None:
    for key, value in cfg.spec.sysctl.items():
        with open("/proc/sys/" + key.replace(".", "/"), "w") as f:
            f.write(value)


def _limits(cfg: InitConfig, s: _Setup) -> None:
    proc = cfg.spec.process
    for rl in proc.rlimits:
        resource.setrlimit(getattr(resource, rl.type), (rl.soft, rl.hard))
    if proc.oom_score_adj is not None:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write(str(proc.oom_score_adj))


def _cwd(cfg: InitConfig, s: _Setup) -> None:
    os.makedirs(cfg.spec.process.cwd, exist_ok=True)
    os.chdir(cfg.spec.process.cwd)


def _find_program(cfg: InitConfig, s: _Setup) -> None:
    proc = cfg.spec.process
    path = find_executable(proc.args[0], proc.env)
    if path is None:
        raise FileNotFoundError(f"{proc.args[0]}: executable file not found in the container's rootfs")
    s.program = path


def _switch_user(cfg: InitConfig, s: _Setup) -> None:
    proc = cfg.spec.process
    # Not ours: the umask criu-cr was started with is no business of the container (runc's default).
    os.umask(proc.umask if proc.umask is not None else 0o022)
    if proc.capabilities is not None:
        caps.drop_bounding(proc.capabilities)  # needs CAP_SETPCAP: before the uid switch
        if proc.uid != 0:
            sc.prctl(sc.PR_SET_KEEPCAPS, 1)
    os.setgroups(list(proc.additional_gids))
    os.setgid(proc.gid)
    os.setuid(proc.uid)


def _capabilities(cfg: InitConfig, s: _Setup) -> None:
    proc = cfg.spec.process
    if proc.capabilities is not None:
        caps.apply(proc.capabilities)
    if proc.no_new_privileges:
        sc.prctl(sc.PR_SET_NO_NEW_PRIVS, 1)


def _stdio(cfg: InitConfig, s: _Setup) -> None:
    # Its own session, as with runc: CRIU refuses a tree whose session
    # leader lives outside the container's pid namespace.
    os.setsid()
    null = os.open("/dev/null", os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(cfg.stdout_w, 1)
    os.dup2(cfg.stderr_w, 2)
    for fd in (null, cfg.stdout_w, cfg.stderr_w):
        if fd > 2:
            os.close(fd)
    # Python ignores SIGPIPE/SIGXFSZ; an ignored signal stays ignored across execve.
    for sig in (signal.SIGPIPE, signal.SIGXFSZ):
        signal.signal(sig, signal.SIG_DFL)


# Init's setup, in order; a failure is reported as "<stage>: <what went wrong>".
_STEPS = (
    ("prepare", _prepare),
    ("mounts", lambda cfg, s: mounts.setup_rootfs(cfg.spec, cfg.rootfs, s.binds)),
    ("pivot_root", lambda cfg, s: mounts.pivot_into(cfg.rootfs)),
    ("hostname", _hostname),
    ("sysctl", _sysctl),  # before /proc/sys turns read-only
    ("masked/read-only paths", lambda cfg, s: mounts.finish_rootfs(cfg.spec)),
    ("rlimits", _limits),
    ("cwd", _cwd),
    ("exec", _find_program),
    ("user", _switch_user),
    ("capabilities", _capabilities),
    ("stdio", _stdio),
)


def _init_process(cfg: InitConfig) -> None:
    setup = _Setup()
    stage = "prepare"
    try:
        for stage, step in _STEPS:
            step(cfg, setup)
        report(cfg.report_w, ready=True)
        os.close(cfg.report_w)
    except BaseException as exc:  # noqa: BLE001
        report(cfg.report_w, error=f"{stage}: {_describe(exc)}")
        os._exit(1)
    _wait_and_exec(cfg, setup)


def _wait_and_exec(cfg: InitConfig, s: _Setup) -> None:
    """Block on exec.fifo until ``start``, then exec the process; never returns."""
    proc = cfg.spec.process
    try:
        try:
            fifo = os.open(f"/proc/self/fd/{s.fifo_path}", os.O_WRONLY | os.O_CLOEXEC)
        except FileNotFoundError:  # no /proc in the container
            fifo = os.open(EXEC_FIFO, os.O_WRONLY | os.O_CLOEXEC, dir_fd=s.fifo_dir)
        os.write(fifo, b"0")
        os.close(s.fifo_dir)
        os.close(s.fifo_path)
        os.execve(s.program, list(proc.args), _env_dict(proc.env))
    except BaseException as exc:  # noqa: BLE001 - the log is all that is left to tell
        os.write(2, f"criu-cr: exec {proc.args[0]}: {_describe(exc)}\n".encode())
    os._exit(127)


def _env_dict(env: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for entry in env:
        k, _, v = entry.partition("=")
        out[k] = v
    return out


def _describe(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        where = f" ({exc.filename})" if exc.filename else ""
        return f"{exc.strerror}{where}"
    return str(exc) or type(exc).__name__
