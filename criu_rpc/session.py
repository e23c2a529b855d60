"""The pure core of CRIU's RPC protocol: no socket, no process.

A :class:`Session` turns requests into the bytes to send and received
messages (bytes plus any fds that came with them) into events:
:class:`Response` or :class:`Notify`.  It knows which steps CRIU accepts and
in which order (the table ``_STEPS``); a step the table does not allow raises
:class:`~criu_rpc.errors.IllegalStepError` and leaves the session unchanged.

One session is one connection to CRIU (a ``criu swrk`` child or one
``criu service`` connection).  What CRIU allows on one connection:

* any single request, after which CRIU closes the connection;
* with ``keep_open``, another request after the response -- only for the
  request types CRIU accepts it for (``KEEP_OPEN_TYPES``);
* PRE_DUMP any number of times, then exactly one DUMP;
* while a request runs, NOTIFY messages when the request's options asked for
  them (``notify_scripts``); each must be answered by one NOTIFY request
  before anything else is sent.

Example::

    s = Session()
    wire = s.request(ReqType.VERSION)
    event = s.receive(reply_bytes)        # -> Response(type=VERSION, ...)
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from google.protobuf.message import DecodeError, EncodeError

from ._pb import rpc_pb2
from .errors import CriuProtocolError, IllegalStepError, InvalidOptionError
from .locate import CriuVersion

__all__ = [
    "ReqType",
    "KEEP_OPEN_TYPES",
    "State",
    "Features",
    "PageServerInfo",
    "Response",
    "Notify",
    "Event",
    "Session",
]

# CRIU's criu_req_type, numbers taken from the generated schema (defined once).
ReqType = enum.IntEnum("ReqType", dict(rpc_pb2.criu_req_type.items()), module=__name__)
ReqType.__doc__ = "CRIU's request (and response) types, as in criu_req_type."

#: Request types CRIU serves with ``keep_open`` (cr-service.c, chk_keepopen_req):
#: the ones that only fork, so CRIU leaks nothing between requests.
KEEP_OPEN_TYPES = frozenset({
    ReqType.PAGE_SERVER,
    ReqType.PAGE_SERVER_CHLD,
    ReqType.VERSION,
    ReqType.FEATURE_CHECK,
    ReqType.CPUINFO_DUMP,
    ReqType.CPUINFO_CHECK,
})

# CRIU answers PAGE_SERVER_CHLD with a PAGE_SERVER response (cr-service.c
# start_page_server_req sets that type for both); every other request is
# answered with its own type.
_RESPONSE_TYPE = {ReqType.PAGE_SERVER_CHLD: ReqType.PAGE_SERVER}

# Requests that CRIU dereferences opts for (it would crash without them).
_NEEDS_OPTS = frozenset({
    ReqType.DUMP, ReqType.PRE_DUMP, ReqType.SINGLE_PRE_DUMP, ReqType.RESTORE,
    ReqType.PAGE_SERVER, ReqType.PAGE_SERVER_CHLD,
    ReqType.CPUINFO_DUMP, ReqType.CPUINFO_CHECK,
})


class State(enum.Enum):
    """Where a session is in its conversation with CRIU."""

    IDLE = "idle"              # nothing in flight; a request may be sent
    WAITING = "waiting"        # a request is in flight
    NOTIFIED = "notified"      # CRIU sent a NOTIFY; only the ack may be sent
    PRE_DUMPED = "pre-dumped"  # a pre-dump succeeded; PRE_DUMP or DUMP next
    CLOSED = "closed"          # CRIU is done with this connection


class _Step(enum.Enum):
    SEND_REQUEST = "send a request"
    SEND_PRE_DUMP = "send PRE_DUMP"
    SEND_DUMP = "send DUMP"
    SEND_NOTIFY_ACK = "answer a notify"
    RECV_NOTIFY = "receive a notify"
    RECV_FINAL = "receive the final response"
    RECV_KEPT_OPEN = "receive a keep-open response"
    RECV_PRE_DUMP_OK = "receive a successful pre-dump response"


# The only place that says which step is legal where, and where it leads.
_STEPS: dict[tuple[State, _Step], State] = {
    (State.IDLE, _Step.SEND_REQUEST): State.WAITING,
    (State.IDLE, _Step.SEND_PRE_DUMP): State.WAITING,
    (State.IDLE, _Step.SEND_DUMP): State.WAITING,
    (State.PRE_DUMPED, _Step.SEND_PRE_DUMP): State.WAITING,
    (State.PRE_DUMPED, _Step.SEND_DUMP): State.WAITING,
    (State.WAITING, _Step.RECV_NOTIFY): State.NOTIFIED,
    (State.NOTIFIED, _Step.SEND_NOTIFY_ACK): State.WAITING,
    (State.WAITING, _Step.RECV_FINAL): State.CLOSED,
    (State.WAITING, _Step.RECV_KEPT_OPEN): State.IDLE,
    (State.WAITING, _Step.RECV_PRE_DUMP_OK): State.PRE_DUMPED,
}


# ---------------------------------------------------------------------------
# Events and their payloads


@dataclass(frozen=True, slots=True, kw_only=True)
class Features:
    """CRIU's answer to FEATURE_CHECK; ``None`` means "not asked / not told"."""

    mem_track: bool | None = None
    lazy_pages: bool | None = None
    pidfd_store: bool | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class PageServerInfo:
    """A page server's address as CRIU reports it (PAGE_SERVER responses)."""

    address: str | None = None
    port: int | None = None
    pid: int | None = None
    fd: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Response:
    """CRIU's final answer to a request.

    ``type`` is the request type CRIU answered (EMPTY when CRIU rejected the
    request itself).  Only the payload of that type is set: ``restored``
    (DUMP), ``restore_pid`` (RESTORE), ``page_server`` (PAGE_SERVER*),
    ``features`` (FEATURE_CHECK), ``version`` (VERSION), ``status``
    (WAIT_PID, a wait status).  ``raw`` is the parsed ``criu_resp``.
    """

    type: ReqType
    success: bool
    cr_errno: int = 0
    cr_errmsg: str = ""
    restored: bool | None = None
    restore_pid: int | None = None
    page_server: PageServerInfo | None = None
    features: Features | None = None
    version: CriuVersion | None = None
    status: int | None = None
    raw: Any = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class Notify:
    """CRIU asks us to run its ``script`` hook and answer before it goes on.

    ``pid`` is set on restore hooks that name the restored root task;
    ``fd`` is the descriptor CRIU sent with it (orphan-pts-master), owned by
    whoever handles the event.
    """

    script: str
    pid: int | None = None
    fd: int | None = None
    raw: Any = field(default=None, compare=False, repr=False)


Event = Response | Notify


# ---------------------------------------------------------------------------
# Converting messages


def _opt(msg: Any, name: str) -> Any:
    return getattr(msg, name) if msg.HasField(name) else None


def _features(msg: Any) -> Features:
    return Features(mem_track=_opt(msg, "mem_track"), lazy_pages=_opt(msg, "lazy_pages"),
                    pidfd_store=_opt(msg, "pidfd_store"))


def _response(msg: Any) -> Response:
    kw: dict[str, Any] = {}
    if msg.HasField("dump"):
        kw["restored"] = _opt(msg.dump, "restored")
    if msg.HasField("restore"):
        kw["restore_pid"] = msg.restore.pid
    if msg.HasField("ps"):
        # CRIU 4.2 reports pid 0 for a daemon page server: 0 is no pid (and
        # os.kill(0, ...) would signal our own process group), so say None.
        pid = _opt(msg.ps, "pid")
        kw["page_server"] = PageServerInfo(address=_opt(msg.ps, "address"), port=_opt(msg.ps, "port"),
                                           pid=pid if pid and pid > 0 else None, fd=_opt(msg.ps, "fd"))
    if msg.HasField("features"):
        kw["features"] = _features(msg.features)
    if msg.HasField("version"):
        kw["version"] = CriuVersion.from_proto(msg.version)
    if msg.HasField("status"):
        kw["status"] = msg.status
    return Response(type=ReqType(msg.type), success=msg.success, cr_errno=msg.cr_errno,
                    cr_errmsg=msg.cr_errmsg, raw=msg, **kw)


def _parse(data: bytes) -> Any:
    msg = rpc_pb2.criu_resp()
    try:
        msg.ParseFromString(data)
    except DecodeError as exc:
        raise CriuProtocolError(f"cannot parse CRIU's message ({len(data)} bytes; truncated?): {exc}") from exc
    if not msg.IsInitialized():
        missing = ", ".join(msg.FindInitializationErrors())
        raise CriuProtocolError(f"CRIU's message ({len(data)} bytes) lacks required fields: {missing}")
    if msg.type not in ReqType._value2member_map_:
        raise CriuProtocolError(f"CRIU's message has unknown type {msg.type}")
    return msg


def _serialize(req: Any) -> bytes:
    try:
        return req.SerializeToString()
    except EncodeError as exc:
        raise InvalidOptionError("opts", f"request cannot be encoded: {exc}") from exc


# ---------------------------------------------------------------------------
# The session


class Session:
    """One conversation with CRIU, as bytes in and events out.

    Methods that send return the bytes to write as one SOCK_SEQPACKET
    message.  :meth:`receive` takes one received message and the fds that
    came with it.  Nothing here touches a socket or closes an fd.
    """

    __slots__ = ("_state", "_pending", "_notify_allowed", "_keep_open")

    def __init__(self) -> None:
        self._state = State.IDLE
        self._pending: ReqType | None = None
        self._notify_allowed = False
        self._keep_open = False

    @property
    def state(self) -> State:
        return self._state

    @property
    def pending(self) -> ReqType | None:
        """The request in flight (or last answered), for error messages."""
        return self._pending

    def _next(self, step: _Step) -> State:
        try:
            return _STEPS[(self._state, step)]
        except KeyError:
            raise IllegalStepError(f"cannot {step.value} while the session is {self._state.value}"
                                   + (f" (request {self._pending.name})" if self._pending else "")) from None

    def request(self, type: ReqType | int | str, opts: Any = None, *, keep_open: bool = False,
                features: Features | None = None, pid: int | None = None) -> bytes:
        """Encode request ``type`` with ``opts`` (a ``criu_opts`` message).

        ``features`` is for FEATURE_CHECK (the features to ask about), ``pid``
        for WAIT_PID.  Raises IllegalStepError when this request is not
        allowed now or with these flags, InvalidOptionError when the request
        lacks what CRIU needs or cannot be encoded.
        """
        rtype = ReqType[type] if isinstance(type, str) else ReqType(type)
        if rtype in (ReqType.EMPTY, ReqType.NOTIFY):
            raise IllegalStepError(f"{rtype.name} is not a request a client starts")
        if keep_open and rtype not in KEEP_OPEN_TYPES:
            raise IllegalStepError(f"keep_open is not allowed for {rtype.name}; CRIU accepts it only for "
                                   + ", ".join(sorted(t.name for t in KEEP_OPEN_TYPES)))
        step = {ReqType.PRE_DUMP: _Step.SEND_PRE_DUMP, ReqType.DUMP: _Step.SEND_DUMP}.get(rtype, _Step.SEND_REQUEST)
        new_state = self._next(step)
        if rtype in _NEEDS_OPTS and opts is None:
            raise InvalidOptionError("opts", f"{rtype.name} needs options")
        if rtype == ReqType.FEATURE_CHECK and features is None:
            raise InvalidOptionError("features", "FEATURE_CHECK needs the features to ask about")
        if rtype == ReqType.WAIT_PID and pid is None:
            raise InvalidOptionError("pid", "WAIT_PID needs a pid")

        req = rpc_pb2.criu_req(type=int(rtype))
        if opts is not None:
            req.opts.CopyFrom(opts)
        if keep_open:
            req.keep_open = True
        if features is not None:
            for name in ("mem_track", "lazy_pages", "pidfd_store"):
                if getattr(features, name) is not None:
                    setattr(req.features, name, getattr(features, name))
        if pid is not None:
            req.pid = pid
        data = _serialize(req)

        self._state = new_state
        self._pending = rtype
        self._keep_open = keep_open
        self._notify_allowed = opts is not None and opts.notify_scripts
        return data

    def ack(self, success: bool = True, externals: Iterable[str] = ()) -> bytes:
        """Encode the answer to the notify just received.

        ``success=False`` tells CRIU to abort the request.  ``externals`` is
        only meaningful for query-ext-files: the external resources
        (``--external`` keys) CRIU should add.
        """
        new_state = self._next(_Step.SEND_NOTIFY_ACK)
        req = rpc_pb2.criu_req(type=ReqType.NOTIFY, notify_success=bool(success))
        externals = list(externals)
        if externals:
            req.opts.images_dir_fd = -1  # required field; CRIU reads only `external` here
            req.opts.external.extend(externals)
        data = _serialize(req)
        self._state = new_state
        return data

    def receive(self, data: bytes, fds: Sequence[int] = ()) -> Event:
        """Turn one message from CRIU into a :class:`Response` or :class:`Notify`.

        ``fds`` are descriptors received with it; a Notify carries the first
        one.  Raises CriuProtocolError (session unchanged) when the message is
        unparsable, of the wrong type, or not expected now.
        """
        if self._state is not State.WAITING:
            raise CriuProtocolError(f"CRIU sent a message while the session is {self._state.value}")
        msg = _parse(data)
        assert self._pending is not None
        if msg.type == ReqType.NOTIFY:
            if not self._notify_allowed:
                raise CriuProtocolError(f"CRIU sent a notify during {self._pending.name}, "
                                        "which did not ask for notifications")
            if not msg.HasField("notify"):
                raise CriuProtocolError("CRIU sent a NOTIFY without its notify payload")
            self._state = self._next(_Step.RECV_NOTIFY)
            return Notify(script=msg.notify.script, pid=_opt(msg.notify, "pid"),
                          fd=fds[0] if fds else None, raw=msg)

        # CRIU answers a request it cannot serve at all with type EMPTY.
        expected = _RESPONSE_TYPE.get(self._pending, self._pending)
        if msg.type != expected and not (msg.type == ReqType.EMPTY and not msg.success):
            raise CriuProtocolError(f"CRIU answered {self._pending.name} with a "
                                    f"{ReqType(msg.type).name} response")
        if self._keep_open:
            step = _Step.RECV_KEPT_OPEN
        elif self._pending == ReqType.PRE_DUMP and msg.success:
            step = _Step.RECV_PRE_DUMP_OK
        else:
            step = _Step.RECV_FINAL
        response = _response(msg)
        self._state = self._next(step)
        return response
