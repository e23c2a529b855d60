"""``DumpSession``: pre-dumps then one dump on one CRIU session (iterative
migration).  It gets a :class:`~criu_rpc.connector.Connector` to open its
connection and prepare its requests; open one with
:meth:`CriuClient.dump_session <criu_rpc.client.CriuClient.dump_session>`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from .channel import Channel
from .connector import ALL_FEATURES, Connector
from .errors import CriuRpcError, FeatureUnavailableError
from .notify import NotifyHandler
from .options import CriuOptions
from .prepare import PreparedRequest
from .results import DumpResult, PreDumpResult
from .session import Features, ReqType

__all__ = ["DumpSession", "NO_MEM_TRACK_MESSAGE"]

NO_MEM_TRACK_MESSAGE = (
    "CRIU reports no memory tracking (CONFIG_MEM_SOFT_DIRTY off): pre-copy/pre-dump cannot work "
    "on this kernel; dump without pre-dumps, or use lazy pages (post-copy) instead")

# How CRIU 4.2 fails a pre-dump without soft-dirty bits: with track_mem it
# refuses the option; without, it hits BUG() in mem.c.
_NO_MEM_TRACK_MARKS = ("Tracking memory is not available", "BUG at criu/mem.c")


class DumpSession:
    """Pre-dumps then one dump on one CRIU session (see CriuClient.dump_session).

    The connection is opened by ``connector`` at the first request and holds
    ``pass_fds`` besides the fds that request names; ``timeout`` (seconds,
    None: none) applies to each request.  Call :meth:`close` when done.
    """

    def __init__(self, connector: Connector, notify: NotifyHandler | None, pass_fds: Sequence[int],
                 timeout: float | None = None) -> None:
        self._connector = connector
        self._notify = notify
        self._pass_fds = list(pass_fds)
        self._timeout = timeout
        self._channel: Channel | None = None

    def _channel_for(self, prepared: PreparedRequest) -> Channel:
        if self._channel is None:
            conn = self._connector.connect(self._pass_fds + prepared.child_fds())
            self._channel = Channel(conn, self._notify)
        return self._channel

    def _require_mem_track(self, channel: Channel) -> None:
        features = self._connector.features
        if features is None:
            # On this same session: CRIU accepts FEATURE_CHECK with keep_open.
            response = channel.call(ReqType.FEATURE_CHECK, features=ALL_FEATURES, keep_open=True,
                                    timeout=self._timeout)
            features = self._connector.features = response.features or Features()
        if features.mem_track is False:
            raise FeatureUnavailableError("mem_track", NO_MEM_TRACK_MESSAGE)

    def pre_dump(self, opts: CriuOptions, *, single: bool = False) -> PreDumpResult:
        """Pre-dump memory of ``opts.pid`` (``track_mem`` is turned on).

        Raises FeatureUnavailableError("mem_track") without memory tracking,
        IllegalStepError after the dump or a single pre-dump.
        """
        rtype = ReqType.SINGLE_PRE_DUMP if single else ReqType.PRE_DUMP
        if not opts.track_mem:
            opts = dataclasses.replace(opts, track_mem=True)
        prepared = self._connector.prepare(opts, rtype, self._notify)
        try:
            channel = self._channel_for(prepared)
            self._require_mem_track(channel)
            try:
                channel.call(rtype, prepared.proto, log_path=prepared.log_path, timeout=self._timeout)
            except CriuRpcError as exc:
                if any(m in line for m in _NO_MEM_TRACK_MARKS for line in [exc.cr_errmsg, *exc.log_errors]):
                    raise FeatureUnavailableError("mem_track", NO_MEM_TRACK_MESSAGE) from exc
                raise
        finally:
            prepared.close()
        return PreDumpResult(pid=opts.pid, images_dir=prepared.images_dir, log_path=prepared.log_path,
                             parent_img=opts.parent_img)

    def dump(self, opts: CriuOptions) -> DumpResult:
        """The final dump of the session."""
        prepared = self._connector.prepare(opts, ReqType.DUMP, self._notify)
        try:
            self._channel_for(prepared).call(ReqType.DUMP, prepared.proto, log_path=prepared.log_path,
                                             timeout=self._timeout)
        finally:
            prepared.close()
        return DumpResult(pid=opts.pid, images_dir=prepared.images_dir, log_path=prepared.log_path,
                          leave_running=opts.leave_running)

    def close(self) -> None:
        """End the session (reaps the swrk child)."""
        if self._channel is not None:
            self._channel.close()
