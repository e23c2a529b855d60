"""Turning :class:`~criu_rpc.options.CriuOptions` into one request's
``criu_opts``: open the directories, choose the log file, know the log's
path and which fds CRIU must hold."""

from __future__ import annotations

import dataclasses
import os

from .options import CriuOptions
from .session import ReqType

__all__ = ["PreparedRequest", "DEFAULT_LOG_FILES"]

#: Log file names used when the options name none (CRIU's default would be
#: one shared "criu.log").
DEFAULT_LOG_FILES = {
    ReqType.DUMP: "dump.log",
    ReqType.PRE_DUMP: "pre-dump.log",
    ReqType.SINGLE_PRE_DUMP: "pre-dump.log",
    ReqType.RESTORE: "restore.log",
    ReqType.PAGE_SERVER: "page-server.log",
    ReqType.PAGE_SERVER_CHLD: "page-server.log",
    ReqType.CPUINFO_DUMP: "cpuinfo.log",
    ReqType.CPUINFO_CHECK: "cpuinfo.log",
}


class PreparedRequest:
    """A request's ``criu_opts`` plus the directory fds opened for it.

    ``by_path``: send the images dir as a path (criu service) rather than
    as an fd we open.  A path-typed work dir is always opened and sent as
    an fd: CRIU reads it through /proc/<our pid>/fd/N, which works for a
    swrk child and for a service on this host alike.  ``log_path`` is where
    CRIU writes this request's log.  Raises OSError (naming the path) when
    a directory cannot be opened.  Call :meth:`close` when done.
    """

    def __init__(self, opts: CriuOptions, rtype: ReqType, *, by_path: bool) -> None:
        self.fds: list[int] = []
        if opts.log_file is None and rtype in DEFAULT_LOG_FILES:
            opts = dataclasses.replace(opts, log_file=DEFAULT_LOG_FILES[rtype])
        self.opts = opts
        try:
            images_fd = None
            if opts.images_dir is not None and not by_path:
                images_fd = self._open_dir(opts.images_dir)
            work_fd = self._open_dir(opts.work_dir) if opts.work_dir is not None else None
            self.proto = opts.to_proto(images_dir_fd=images_fd, work_dir_fd=work_fd)
        except BaseException:  # cleanup, then re-raise: a failed prepare holds no fd
            self.close()
            raise
        self.images_dir = opts.images_dir if opts.images_dir is not None else self._fd_path(opts.images_dir_fd)
        log_dir = opts.work_dir or (self._fd_path(opts.work_dir_fd) if opts.work_dir_fd is not None
                                    else self.images_dir)
        self.log_path = os.path.join(log_dir, opts.log_file) if log_dir and opts.log_file else None

    def _open_dir(self, path: str) -> int:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self.fds.append(fd)
        return fd

    @staticmethod
    def _fd_path(fd: int | None) -> str | None:
        if fd is None:
            return None
        try:
            return os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            return None

    def child_fds(self) -> list[int]:
        """Fds CRIU must hold at the numbers the request names."""
        p = self.proto
        fds = [p.images_dir_fd] if p.images_dir_fd >= 0 else []
        fds += [p.work_dir_fd] if p.HasField("work_dir_fd") else []
        fds += [item.fd for item in p.inherit_fd]
        fds += [p.ps.fd] if p.HasField("ps") and p.ps.HasField("fd") else []
        return fds

    def close(self) -> None:
        while self.fds:
            os.close(self.fds.pop())
