"""The per-container monitor: a detached, subreaper process that owns the container's stdio.

:func:`spawn_monitor` double-forks so the monitor is nobody's child (the
caller reaps only the short-lived middle process), starts a new session,
becomes a child subreaper, points its own stdio at /dev/null and closes every
inherited descriptor except the ones it is given. It then calls
``produce_init()`` -- a pluggable step that returns the pid of the container's
init (fork a fresh init, or later run a CRIU restore whose restored tree
becomes the monitor's child because it is a subreaper). It reports
``{"monitor": PID}`` and ``{"init": PID}`` on the report pipe, closes it,
copies the container's stdout/stderr pipes into the log file, reaps every
child, and when init exits calls ``on_exit(init_pid, exit_status)`` (shell
convention: code, or 128+signal) and exits.
"""

from __future__ import annotations

import errno
import json
import os
import select
import time
from collections.abc import Callable, Iterable
from typing import Any

from runtime.container.init import report
from runtime.linux import syscalls as sc
from runtime.linux.procfs import exit_status_of

__all__ = ["spawn_monitor", "read_report", "exit_status_of", "DRAIN_TIMEOUT"]

# After init exits, how long to keep copying output still buffered in the pipes.
DRAIN_TIMEOUT = 2.0
_TICK_MS = 1000


def spawn_monitor(*, log_path: str, output_fds: Iterable[int], report_w: int, keep_fds: Iterable[int] = (),
                  produce_init: Callable[[], int], on_exit: Callable[[int, int], None]) -> int:
    """Start a detached monitor; return its pid (it is not a child of the caller).

    ``output_fds`` are read ends of the container's stdout/stderr pipes,
    ``keep_fds`` further descriptors ``produce_init`` needs (it must close the
    ones the monitor should not hold, e.g. the pipes' write ends, once the init
    has them). Raises OSError when the fork fails.
    """
    output_fds = list(output_fds)
    keep = set(output_fds) | set(keep_fds) | {report_w}
    pid_r, pid_w = os.pipe2(os.O_CLOEXEC)
    middle = os.fork()
    if middle == 0:
        code = 1
        try:
            os.close(pid_r)
            os.setsid()
            monitor = os.fork()
            if monitor == 0:
                _monitor_main(log_path, output_fds, report_w, keep | {pid_w}, pid_w, produce_init, on_exit)
            os.write(pid_w, str(monitor).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(pid_w)
    with os.fdopen(pid_r, "rb") as f:
        data = f.read()
    os.waitpid(middle, 0)
    if not data:
        raise OSError(errno.ECHILD, "monitor: could not fork the monitor process")
    return int(data)


def read_report(fd: int, timeout: float, *, watch_pid: int | None = None) -> dict[str, Any]:
    """Collect the JSON lines of a report pipe until every writer closed it; closes ``fd``.

    With ``watch_pid`` (the monitor) the read also ends when that process
    is gone, even if a child it left behind still holds the pipe open.
    Later keys win, except that the first ``error`` (the most specific) is
    kept. Raises TimeoutError.
    """
    buf = b""
    deadline = time.monotonic() + timeout
    pidfd = -1
    if watch_pid:
        try:
            pidfd = os.pidfd_open(watch_pid)
        except ProcessLookupError:
            pidfd = -2  # already gone: read what is there
    try:
        while True:
            left = deadline - time.monotonic()
            watched = [fd] + ([pidfd] if pidfd >= 0 else [])
            ready = select.select(watched, [], [], max(left, 0))[0] if pidfd != -2 else [pidfd]
            if not ready:
                raise TimeoutError(f"the container's init did not report within {timeout} s")
            if fd not in ready:  # the monitor is gone: take what it wrote, then stop
                buf += _read_available(fd)
                break
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            buf += chunk
    finally:
        os.close(fd)
        if pidfd >= 0:
            os.close(pidfd)
    messages: dict[str, Any] = {}
    for line in buf.splitlines():
        try:
            msg = json.loads(line)
        except ValueError:
            continue  # a line cut short by a killed writer
        if "error" in msg and "error" in messages:
            continue
        messages.update(msg)
    return messages


def _read_available(fd: int) -> bytes:
    os.set_blocking(fd, False)
    return b"".join(_Chunks(fd))


def _close_all_but(keep: set[int]) -> None:
    low = 3
    for fd in sorted(keep) + [os.sysconf("SC_OPEN_MAX")]:
        if fd >= low:
            os.closerange(low, fd)
            low = fd + 1


def _monitor_main(log_path: str, output_fds: list[int], report_w: int, keep: set[int], pid_w: int,
                  produce_init: Callable[[], int], on_exit: Callable[[int, int], None]) -> None:
    code = 1
    try:
        null = os.open("/dev/null", os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        os.close(null)
        os.chdir("/")  # pin no directory of the caller
        # What CRIU writes under us (restore.log, stats-restore: 0644 less the umask) stays
        # private; the container's init sets its own umask, a restored one gets its dumped one.
        os.umask(0o077)
        _close_all_but(keep)
        os.close(pid_w)
        sc.prctl(sc.PR_SET_CHILD_SUBREAPER, 1)
        report(report_w, monitor=os.getpid())
        try:
            init_pid = produce_init()
        except BaseException as exc:  # noqa: BLE001
            report(report_w, error=f"monitor: {exc}")
            _reap_all()
            raise
        report(report_w, init=init_pid)
        os.close(report_w)
        status = _supervise(init_pid, output_fds, log_path)
        on_exit(init_pid, status)
        code = 0
    finally:
        os._exit(code)


def _reap_all() -> dict[int, int]:
    """Reap every exited child without blocking; {pid: wait status}."""
    out = {}
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return out
        if pid == 0:
            return out
        out[pid] = status


def _supervise(init_pid: int, output_fds: list[int], log_path: str) -> int:
    log = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    os.fchmod(log, 0o600)  # whatever the umask: the container's output may hold secrets
    poller = select.poll()
    for fd in output_fds:
        os.set_blocking(fd, False)
        poller.register(fd, select.POLLIN)
    open_fds = set(output_fds)
    try:
        pidfd = os.pidfd_open(init_pid)
        poller.register(pidfd, select.POLLIN)
    except ProcessLookupError:
        pidfd = -1
    status: int | None = None
    deadline = None
    while open_fds:
        timeout = _TICK_MS if deadline is None else max(0, int((deadline - time.monotonic()) * 1000))
        for fd, _ev in poller.poll(timeout):
            if fd in open_fds:
                if not _copy(fd, log):
                    poller.unregister(fd)
                    open_fds.discard(fd)
        reaped = _reap_all()
        if status is None and init_pid in reaped:
            status = exit_status_of(reaped[init_pid])
            deadline = time.monotonic() + DRAIN_TIMEOUT
            if pidfd >= 0:
                poller.unregister(pidfd)
                os.close(pidfd)
                pidfd = -1
        if deadline is not None and time.monotonic() >= deadline:
            break
    while status is None:  # output closed before init exited: just wait for it
        pid, wstatus = os.waitpid(-1, 0)
        if pid == init_pid:
            status = exit_status_of(wstatus)
    _reap_all()
    os.close(log)
    return status


def _copy(fd: int, log: int) -> bool:
    """Copy what is available on ``fd`` to ``log``; False at EOF."""
    chunks = _Chunks(fd)
    for data in chunks:
        os.write(log, data)
    return not chunks.at_eof


class _Chunks:
    """What a non-blocking ``fd`` has to read now, chunk by chunk; ``at_eof`` once the writers are gone."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.at_eof = False

    def __iter__(self) -> "_Chunks":
        return self

    def __next__(self) -> bytes:
        try:
            data = os.read(self.fd, 65536)
        except BlockingIOError:
            raise StopIteration from None
        if not data:
            self.at_eof = True
            raise StopIteration
        return data
