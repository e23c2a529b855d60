"""Run a process inside a running container: its namespaces, root, cgroups.

A forked helper joins the container's cgroups, then ``setns`` into every
namespace of the container's init that differs from ours (``/proc/PID/ns/*``,
mount last), changes root to init's root (``/proc/PID/root``, opened before
joining), and forks the process, which is then inside the container's pid
namespace. The helper exits with the process's exit status.
"""

from __future__ import annotations

import os
import select
import signal
import time
from dataclasses import dataclass

from runtime.container.init import find_executable
from runtime.linux import syscalls as sc
from runtime.linux.cgroups import Cgroups
from runtime.linux.procfs import exit_status_of

__all__ = ["ExecResult", "exec_in"]

# /proc/PID/ns names in join order: mount last (it changes what /proc means).
_NS_ORDER = (("ipc", sc.CLONE_NEWIPC), ("uts", sc.CLONE_NEWUTS), ("net", sc.CLONE_NEWNET),
             ("pid", sc.CLONE_NEWPID), ("cgroup", sc.CLONE_NEWCGROUP), ("mnt", sc.CLONE_NEWNS))


@dataclass(frozen=True, kw_only=True)
class ExecResult:
    """How an exec'd process ended (shell convention: 128+signal) and what it wrote."""

    exit_code: int
    stdout: bytes = b""
    stderr: bytes = b""


def exec_in(*, init_pid: int, cgroups: Cgroups | None, argv: list[str], env: list[str], cwd: str = "/",
            uid: int = 0, gid: int = 0, capture: bool = True, timeout: float | None = None) -> ExecResult:
    """Run ``argv`` in the container whose init is ``init_pid``. Raises OSError, TimeoutError.

    An executable missing in the container gives exit code 127 and a message on stderr.
    """
    if not argv:
        raise ValueError("exec: empty command")
    root_fd = os.open(f"/proc/{init_pid}/root", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    ns_fds = []
    try:
        for name, flag in _NS_ORDER:
            target = f"/proc/{init_pid}/ns/{name}"
            if os.stat(target).st_ino != os.stat(f"/proc/self/ns/{name}").st_ino:
                ns_fds.append((os.open(target, os.O_RDONLY | os.O_CLOEXEC), flag, target))
        pipes = [os.pipe2(os.O_CLOEXEC), os.pipe2(os.O_CLOEXEC)] if capture else []
        helper = os.fork()
        if helper == 0:
            _helper(root_fd, ns_fds, cgroups, argv, env, cwd, uid, gid, [w for _, w in pipes])
    finally:
        os.close(root_fd)
        for fd, _, _ in ns_fds:
            os.close(fd)
    out = {0: b"", 1: b""}
    if capture:
        for _, w in pipes:
            os.close(w)
        _collect([r for r, _ in pipes], out, timeout, helper)
    status = _wait(helper, timeout)
    return ExecResult(exit_code=status, stdout=out[0], stderr=out[1])


def _collect(fds: list[int], out: dict[int, bytes], timeout: float | None, helper: int) -> None:
    deadline = None if timeout is None else time.monotonic() + timeout
    index = {fd: i for i, fd in enumerate(fds)}
    open_fds = list(fds)
    try:
        while open_fds:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                os.kill(helper, signal.SIGKILL)
                os.waitpid(helper, 0)  # never leave a zombie behind
                raise TimeoutError(f"exec did not finish within {timeout} s")
            ready, _, _ = select.select(open_fds, [], [], left)
            for fd in ready:
                data = os.read(fd, 65536)
                if data:
                    out[index[fd]] += data
                else:
                    open_fds.remove(fd)
    finally:
        for fd in fds:
            os.close(fd)


def _wait(pid: int, timeout: float | None) -> int:
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG if deadline is not None else 0)
        if done:
            return exit_status_of(status)
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise TimeoutError(f"exec did not finish within {timeout} s")
        time.sleep(0.01)


def _helper(root_fd: int, ns_fds: list[tuple[int, int, str]], cgroups: Cgroups | None, argv: list[str],
            env: list[str], cwd: str, uid: int, gid: int, out_fds: list[int]) -> None:
    code = 126
    try:
        if cgroups is not None:
            cgroups.add(os.getpid())
        for fd, flag, path in ns_fds:
            sc.setns(fd, flag, path)
        os.fchdir(root_fd)
        os.chroot(".")
        child = os.fork()
        if child == 0:
            _run(argv, env, cwd, uid, gid, out_fds)
        for fd in out_fds:
            os.close(fd)
        _, status = os.waitpid(child, 0)
        code = exit_status_of(status)
    except BaseException as exc:  # noqa: BLE001
        os.write(out_fds[1] if out_fds else 2, f"criu-cr exec: {exc}\n".encode())
    os._exit(code)


def _run(argv: list[str], env: list[str], cwd: str, uid: int, gid: int, out_fds: list[int]) -> None:
    try:
        # A timed-out exec SIGKILLs the helper; this takes the process with it (else the
        # container's init would inherit it).
        sc.prctl(sc.PR_SET_PDEATHSIG, signal.SIGKILL)
        if out_fds:
            null = os.open("/dev/null", os.O_RDONLY)
            os.dup2(null, 0)
            os.dup2(out_fds[0], 1)
            os.dup2(out_fds[1], 2)
        os.chdir(cwd)
        os.umask(0o022)  # the container's default (as runc's), not whatever criu-cr was started with
        os.setgroups([])
        os.setgid(gid)
        os.setuid(uid)
        for sig in (signal.SIGPIPE, signal.SIGXFSZ):
            signal.signal(sig, signal.SIG_DFL)
        path = find_executable(argv[0], env)
        if path is None:
            os.write(2, f"criu-cr exec: {argv[0]}: executable file not found in the container\n".encode())
            os._exit(127)
        os.execve(path, argv, dict(e.partition("=")[::2] for e in env))
    except BaseException as exc:  # noqa: BLE001
        os.write(2, f"criu-cr exec: {argv[0]}: {exc}\n".encode())
    os._exit(126)
