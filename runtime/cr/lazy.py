"""CRIU's lazy-pages daemon: the memory of a lazy (post-copy) restore, as a child process.

A restore with ``lazy_pages`` leaves the memory CRIU marked lazy out: each
restored task hands its userfaultfd to the daemon and runs; a page it
touches is fetched on demand, the rest in the background, until all has
arrived -- then the daemon exits. The daemon exists only as a command,
``criu lazy-pages`` (there is no RPC request for it), so this is criu-cr's
one exec of CRIU besides ``criu swrk``.

Where the pages come from:

* a remote page server (post-copy migration): ``--page-server --address
  --port``, the source's CRIU serving the frozen tree's memory;
* the local images (``criu-cr restore --lazy``): without ``--page-server``
  the daemon reads the pages files of the checkpoint itself.

The daemon and the restore meet at ``lazy-pages.socket`` in the images
directory (CRIU's work directory for both). The daemon is a context
manager: ``__exit__`` kills it unless it finished, and reaps it.
"""

from __future__ import annotations

import os
import select
import subprocess
import time
from typing import Any

from criu_rpc.locate import locate
from criu_rpc.logs import first_errors
from runtime.cr.layout import LAZY_PAGES_LOG, LAZY_PAGES_SOCKET
from runtime.cr.options import LazyPages
from runtime.errors import RestoreError

__all__ = ["LazyPagesDaemon", "LazyPagesError", "LAZY_PAGES_SOCKET", "READY_TIMEOUT", "PAGE_SERVER_PIPE",
           "page_server_problem"]

READY_TIMEOUT = 30.0  # seconds for the daemon to read the images and listen
# A lazy dump's page server copies pages through a pipe it sizes to 1024 pages. Without CAP_SYS_RESOURCE
# that needs fs.pipe-max-size at least as big; below it CRIU 4.2.1 ignores the failed resize and its
# first transfer fails ("page-pipe: splice: -1: Bad file descriptor": the sink it never opened).
PAGE_SERVER_PIPE = 1024 * 4096
_PIPE_MAX_SIZE = "/proc/sys/fs/pipe-max-size"
_CAP_SYS_RESOURCE = 24


def page_server_problem() -> str | None:
    """Why CRIU's lazy page server would fail on this host (a post-copy source), or None."""
    with open("/proc/self/status", encoding="ascii") as f:
        eff = next(int(line.split()[1], 16) for line in f if line.startswith("CapEff:"))
    if eff & (1 << _CAP_SYS_RESOURCE):
        return None
    with open(_PIPE_MAX_SIZE, encoding="ascii") as f:
        limit = int(f.read().strip())
    if limit >= PAGE_SERVER_PIPE:
        return None
    return (f"CRIU's lazy page server needs pipes of {PAGE_SERVER_PIPE} bytes; without CAP_SYS_RESOURCE (as here) "
            f"fs.pipe-max-size ({limit}) must allow them: sysctl -w fs.pipe-max-size={PAGE_SERVER_PIPE}")


class LazyPagesError(RestoreError):
    """The lazy-pages daemon failed: ``log_path`` is its log."""


class LazyPagesDaemon:
    """``criu lazy-pages`` for the images at ``images_dir``, pages from ``source``.

    Started (and ready: listening for the restore) when constructed; raises
    LazyPagesError (it could not start: its log's first errors), CriuNotFoundError.
    """

    def __init__(self, container_id: str, images_dir: str, source: LazyPages, *, criu_path: str | None = None,
                 log_level: int = 4) -> None:
        self.container_id, self.images_dir = container_id, images_dir
        self.log_path = os.path.join(images_dir, LAZY_PAGES_LOG)
        self.started = time.monotonic()
        self.finished: float | None = None
        argv = [locate(criu_path), "lazy-pages", "-D", images_dir, "-o", LAZY_PAGES_LOG, f"-v{log_level}"]
        if source.address is not None:
            argv += ["--page-server", "--address", source.address, "--port", str(source.port)]
        ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
        try:
            self._proc = subprocess.Popen([*argv, "--status-fd", str(ready_w)], pass_fds=(ready_w,),
                                          stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL, close_fds=True)
        except BaseException:
            os.close(ready_r)
            os.close(ready_w)
            raise
        os.close(ready_w)  # only the daemon holds it: EOF when it dies before it is ready
        try:
            self._await_ready(ready_r)
        except BaseException:
            self.close()
            raise
        finally:
            os.close(ready_r)

    @property
    def pid(self) -> int:
        return self._proc.pid

    def _await_ready(self, fd: int) -> None:
        if not select.select([fd], [], [], READY_TIMEOUT)[0]:
            raise self._error(f"did not get ready within {READY_TIMEOUT:.0f} s")
        if os.read(fd, 1) != b"\0":  # EOF: it exited
            raise self._error(f"exited ({self._proc.wait()}) before it was ready")

    def _error(self, problem: str) -> LazyPagesError:
        errors = first_errors(self.log_path) if os.path.exists(self.log_path) else []
        return LazyPagesError(self.container_id, f"criu lazy-pages {problem}", log_path=self.log_path,
                              log_errors=errors, hint=f"see {self.log_path}")

    def running(self) -> bool:
        return self._proc.poll() is None

    def wait(self, timeout: float | None = None) -> float:
        """Wait until every page has arrived (the daemon exited); seconds since it started.

        Raises LazyPagesError (it failed: some memory never arrived), TimeoutError (it is left running).
        """
        try:
            code = self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise TimeoutError(f"the lazy pages of {self.container_id!r} were still arriving after {timeout} s") \
                from None
        if self.finished is None:
            self.finished = time.monotonic()
        if code != 0:
            raise self._error(f"failed ({code}): memory of the restored container is missing")
        return self.finished - self.started

    def close(self) -> None:
        """Kill the daemon unless it is done, and reap it."""
        if self._proc.poll() is None:
            self._proc.kill()  # our own child, by its pid
        self._proc.wait()
        if self.finished is None:
            self.finished = time.monotonic()

    def __enter__(self) -> LazyPagesDaemon:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
