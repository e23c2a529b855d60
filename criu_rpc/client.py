"""``CriuClient``: CRIU's operations as typed Python calls.

Each operation opens one connection -- a fresh ``criu swrk`` child, or a
connection to a ``criu service`` when ``service_address`` is given -- runs
its request(s) through a :class:`~criu_rpc.channel.Channel` and closes it
(the swrk child is always reaped).

Example::

    client = CriuClient()
    client.dump(CriuOptions(images_dir="/tmp/img", pid=pid, shell_job=True))
    restored = client.restore(CriuOptions(images_dir="/tmp/img", shell_job=True))
    print(restored.pid)

Errors (all :class:`~criu_rpc.errors.CriuError`): CriuNotFoundError,
CriuRpcError (CRIU said no; cr_errno, cr_errmsg, log_path, the log's first
errors), NotifyAbortedError (a hook raised; chained), CriuDiedError (CRIU
ended first; a half-restored tree is killed, see :mod:`criu_rpc.restoring`),
CriuTimeoutError, CriuProtocolError, IllegalStepError, InvalidOptionError,
FeatureUnavailableError (e.g. pre-dump without memory tracking).

Deadlines: each operation's ``timeout`` (seconds per request; None: the
client's ``timeout``, default none).  When it passes, a ``criu swrk`` child
is SIGKILLed with every task it started (a half-restored tree included) and
reaped; CriuTimeoutError names the request, deadline, log and first errors.
A ``criu service`` worker cannot be killed by us: the deadline only closes
the connection.  A tree being *dumped* is not CRIU's child and runs on, but
may stay network-locked (see :mod:`criu_rpc.faults`).
:func:`~criu_rpc.deadline.deadline_for` scales a deadline to an image size.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Iterator, Sequence

from .channel import Channel
from .connector import ALL_FEATURES, Connector
from .dump_session import DumpSession
from .errors import CriuRpcError, InvalidOptionError
from .locate import CriuVersion
from .notify import NotifyHandler
from .option_types import InheritFd
from .options import CriuOptions
from .prepare import PreparedRequest
from .results import DumpResult, DumpSequenceResult, PageServerResult, PreDumpResult, RestoreResult
from .session import Features, ReqType, Response

__all__ = ["CriuClient", "PageServerChild"]


class CriuClient:
    """CRIU's RPC operations.

    ``criu_path``: the criu binary (default: ``$CRIU_CR_CRIU``, then PATH;
    looked up on first use).  ``service_address``: talk to a running
    ``criu service`` at that socket path instead of spawning ``criu swrk``;
    CRIU's service cannot take our fds, so images/work dirs go by path and
    inherit_fd, page-server fds and rst_sibling are refused.
    ``timeout``: the default deadline of each request, in seconds (None:
    none); an operation's own ``timeout`` keyword overrides it.  (Not
    ``CriuOptions.timeout``: that is CRIU's own limit on seizing the tree.)
    """

    def __init__(self, criu_path: str | os.PathLike[str] | None = None,
                 service_address: str | os.PathLike[str] | None = None,
                 timeout: float | None = None) -> None:
        if timeout is not None and timeout <= 0:
            raise InvalidOptionError("timeout", f"must be positive seconds, not {timeout}")
        self.timeout = timeout
        self._connector = Connector(None if criu_path is None else os.fspath(criu_path),
                                    None if service_address is None else os.fspath(service_address))

    @property
    def criu_path(self) -> str:
        """The criu binary used for swrk (raises CriuNotFoundError)."""
        return self._connector.criu_path

    @property
    def service_address(self) -> str | None:
        """The ``criu service`` socket talked to, or None (``criu swrk``)."""
        return self._connector.service_address

    def _timeout(self, timeout: float | None) -> float | None:
        if timeout is None:
            return self.timeout
        if timeout <= 0:
            raise InvalidOptionError("timeout", f"must be positive seconds, not {timeout}")
        return timeout

    def _one_shot(self, rtype: ReqType, prepared: PreparedRequest | None = None,
                  notify: NotifyHandler | None = None, extra_fds: Sequence[int] = (),
                  timeout: float | None = None, **kw: object) -> Response:
        fds = [*(prepared.child_fds() if prepared is not None else []), *extra_fds]
        with Channel(self._connector.connect(fds), notify) as channel:
            return channel.call(rtype, prepared.proto if prepared else None,
                                log_path=prepared.log_path if prepared else None,
                                timeout=self._timeout(timeout), **kw)

    # -- information -------------------------------------------------------

    def version(self, *, timeout: float | None = None) -> CriuVersion:
        """CRIU's version, asked over RPC."""
        response = self._one_shot(ReqType.VERSION, timeout=timeout)
        if response.version is None:
            raise CriuRpcError("VERSION", cr_errmsg="CRIU answered without a version")
        return response.version

    def check(self, opts: CriuOptions | None = None, *, timeout: float | None = None) -> None:
        """Run CRIU's kernel check; raises CriuRpcError when it fails.

        ``opts`` (optional) only places CRIU's log (images/work dir,
        ``log_file``, ``log_level``) so a failure can name its errors.
        """
        if opts is None:
            self._one_shot(ReqType.CHECK, timeout=timeout)
            return
        prepared = self._connector.prepare(opts, ReqType.CHECK, None)
        try:
            self._one_shot(ReqType.CHECK, prepared, timeout=timeout)
        finally:
            prepared.close()

    def feature_check(self, *, timeout: float | None = None) -> Features:
        """Ask CRIU which of mem_track, lazy_pages, pidfd_store this kernel supports.

        Returns CRIU's answer (not the question).  Raises CriuRpcError when
        CRIU cannot tell.
        """
        response = self._one_shot(ReqType.FEATURE_CHECK, features=ALL_FEATURES, timeout=timeout)
        self._connector.features = response.features or Features()
        return self._connector.features

    # -- dump --------------------------------------------------------------

    def dump(self, opts: CriuOptions, notify: NotifyHandler | None = None,
             extra_fds: Sequence[int] = (), *, timeout: float | None = None) -> DumpResult:
        """Dump the tree rooted at ``opts.pid`` into the images dir.

        fds the options name (images/work dir, page-server socket) reach
        CRIU at their numbers; ``extra_fds`` adds any others (e.g. named
        only in ``opts.raw``).
        """
        with self.dump_session(notify, pass_fds=extra_fds, timeout=timeout) as session:
            return session.dump(opts)

    def pre_dump(self, opts: CriuOptions, notify: NotifyHandler | None = None, *,
                 timeout: float | None = None) -> PreDumpResult:
        """One pre-dump (PRE_DUMP) on its own session; see :meth:`dump_session` for more.

        Raises FeatureUnavailableError("mem_track") when the kernel cannot
        track memory (checked before anything is sent).
        """
        with self.dump_session(notify, timeout=timeout) as session:
            return session.pre_dump(opts)

    def single_pre_dump(self, opts: CriuOptions, notify: NotifyHandler | None = None, *,
                        timeout: float | None = None) -> PreDumpResult:
        """A SINGLE_PRE_DUMP request (CRIU does not wait for a final dump after it)."""
        with self.dump_session(notify, timeout=timeout) as session:
            return session.pre_dump(opts, single=True)

    @contextlib.contextmanager
    def dump_session(self, notify: NotifyHandler | None = None,
                     pass_fds: Sequence[int] = (), *, timeout: float | None = None) -> Iterator[DumpSession]:
        """One CRIU session for pre-dumps then one dump (iterative migration).

        ``pass_fds``: extra fds CRIU must hold (page-server sockets named in
        later requests).  ``timeout`` applies to each request.  Example::

            with client.dump_session() as s:
                s.pre_dump(CriuOptions(images_dir=d1, pid=pid))
                s.dump(CriuOptions(images_dir=d2, pid=pid, parent_img="../1"))
        """
        session = DumpSession(self._connector, notify, pass_fds, self._timeout(timeout))
        try:
            yield session
        finally:
            session.close()

    def dump_sequence(self, pre_dumps: Sequence[CriuOptions], final: CriuOptions,
                      notify: NotifyHandler | None = None, *, timeout: float | None = None) -> DumpSequenceResult:
        """Pre-dump with each of ``pre_dumps``, then dump with ``final``, on one session.

        Each step after the first gets ``parent_img`` (relative path to the
        previous images dir) and ``track_mem`` unless it sets them.
        """
        steps = list(pre_dumps) + [final]
        for i in range(1, len(steps)):
            prev, cur = steps[i - 1], steps[i]
            if cur.parent_img is None and cur.images_dir is not None and prev.images_dir is not None:
                parent = os.path.relpath(prev.images_dir, cur.images_dir)
                steps[i] = dataclasses.replace(cur, parent_img=parent, track_mem=True)
        fds = [s.ps.fd for s in steps if s.ps is not None and s.ps.fd is not None]
        with self.dump_session(notify, pass_fds=fds, timeout=timeout) as session:
            done = tuple(session.pre_dump(s) for s in steps[:-1])
            return DumpSequenceResult(pre_dumps=done, dump=session.dump(steps[-1]))

    # -- restore -----------------------------------------------------------

    def restore(self, opts: CriuOptions, notify: NotifyHandler | None = None,
                inherit: Sequence[InheritFd] = (), extra_fds: Sequence[int] = (), *,
                timeout: float | None = None) -> RestoreResult:
        """Restore the tree in the images dir; returns its root pid.

        ``inherit`` adds to ``opts.inherit_fd``; every fd named there is
        handed to CRIU at its number (swrk only), as are ``extra_fds``.
        With ``rst_sibling`` the tree becomes our child: reap it.  On a
        timeout (CriuTimeoutError) the half-restored tree is killed with CRIU.
        """
        if inherit:
            opts = dataclasses.replace(opts, inherit_fd=(*opts.inherit_fd, *inherit))
        prepared = self._connector.prepare(opts, ReqType.RESTORE, notify)
        try:
            response = self._one_shot(ReqType.RESTORE, prepared, notify, extra_fds, timeout=timeout)
        finally:
            prepared.close()
        assert response.restore_pid is not None
        return RestoreResult(pid=response.restore_pid, images_dir=prepared.images_dir,
                             log_path=prepared.log_path)

    # -- page server, cpuinfo ------------------------------------------------

    def page_server(self, opts: CriuOptions, *, timeout: float | None = None) -> PageServerResult:
        """Start a page server daemon (options' ``ps`` says where to listen)."""
        prepared = self._connector.prepare(opts, ReqType.PAGE_SERVER, None)
        try:
            response = self._one_shot(ReqType.PAGE_SERVER, prepared, timeout=timeout)
        finally:
            prepared.close()
        ps = response.page_server
        return PageServerResult(pid=ps.pid if ps else None, port=ps.port if ps else None,
                                address=opts.ps.address if opts.ps else None, log_path=prepared.log_path)

    def page_server_child(self, opts: CriuOptions, *, timeout: float | None = None) -> PageServerChild:
        """Start a page server as a child of a CRIU session we keep open.

        Use the returned object as a context manager; ``wait()`` asks CRIU
        to wait for the page server (WAIT_PID) and returns its wait status.
        """
        prepared = self._connector.prepare(opts, ReqType.PAGE_SERVER_CHLD, None)
        try:
            channel = Channel(self._connector.connect(prepared.child_fds()))
            try:
                response = channel.call(ReqType.PAGE_SERVER_CHLD, prepared.proto, keep_open=True,
                                        log_path=prepared.log_path, timeout=self._timeout(timeout))
            except BaseException:  # cleanup, then re-raise: a failed start leaves no swrk child
                channel.close()
                raise
        finally:
            prepared.close()
        ps = response.page_server
        return PageServerChild(channel, pid=ps.pid if ps else None, port=ps.port if ps else None,
                               log_path=prepared.log_path)

    def cpuinfo_dump(self, opts: CriuOptions, *, timeout: float | None = None) -> None:
        """Write this machine's CPU description into the images dir."""
        self._cpuinfo(ReqType.CPUINFO_DUMP, opts, timeout)

    def cpuinfo_check(self, opts: CriuOptions, *, timeout: float | None = None) -> None:
        """Check the images' CPU description against this machine (CriuRpcError if not compatible)."""
        self._cpuinfo(ReqType.CPUINFO_CHECK, opts, timeout)

    def _cpuinfo(self, rtype: ReqType, opts: CriuOptions, timeout: float | None) -> None:
        prepared = self._connector.prepare(opts, rtype, None)
        try:
            self._one_shot(rtype, prepared, timeout=timeout)
        finally:
            prepared.close()


class PageServerChild:
    """A page server started by PAGE_SERVER_CHLD on a session kept open."""

    def __init__(self, channel: Channel, *, pid: int | None, port: int | None, log_path: str | None) -> None:
        self._channel = channel
        self.pid = pid
        self.port = port
        self.log_path = log_path

    def wait(self) -> int:
        """Wait (through CRIU) for the page server to end; returns its wait status."""
        if self.pid is None:
            raise CriuRpcError("WAIT_PID", cr_errmsg="CRIU did not report the page server's pid")
        response = self._channel.call(ReqType.WAIT_PID, pid=self.pid)
        return response.status if response.status is not None else 0

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> PageServerChild:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
