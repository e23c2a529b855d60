"""The pure session core, driven with stored CRIU 4.2.1 replies."""

from __future__ import annotations

import pytest

from criu_rpc._pb import rpc_pb2
from criu_rpc.errors import CriuProtocolError, IllegalStepError, InvalidOptionError
from criu_rpc.session import KEEP_OPEN_TYPES, Features, Notify, ReqType, Response, Session, State

from .replies import reply


def opts(**kw: object) -> rpc_pb2.criu_opts:
    return rpc_pb2.criu_opts(images_dir_fd=3, **kw)


def sent(data: bytes) -> rpc_pb2.criu_req:
    return rpc_pb2.criu_req.FromString(data)


def waiting(rtype: ReqType, **kw: object) -> Session:
    s = Session()
    s.request(rtype, **kw)
    return s


# --- framing of requests -------------------------------------------------


def test_request_encodes_type_opts_and_flags() -> None:
    req = sent(Session().request(ReqType.DUMP, opts(pid=42, leave_running=True)))
    assert req.type == rpc_pb2.DUMP
    assert req.opts.pid == 42 and req.opts.leave_running
    assert not req.HasField("keep_open")


def test_feature_check_request_carries_the_question() -> None:
    req = sent(Session().request("FEATURE_CHECK", features=Features(mem_track=True, lazy_pages=True),
                                 keep_open=True))
    assert req.keep_open
    assert req.features.mem_track and req.features.lazy_pages
    assert not req.features.HasField("pidfd_store")


def test_wait_pid_request_carries_pid() -> None:
    assert sent(Session().request(ReqType.WAIT_PID, pid=77)).pid == 77


@pytest.mark.parametrize("rtype", [ReqType.DUMP, ReqType.RESTORE, ReqType.PRE_DUMP, ReqType.PAGE_SERVER])
def test_requests_that_crIU_dereferences_opts_for_need_them(rtype: ReqType) -> None:
    s = Session()
    with pytest.raises(InvalidOptionError):
        s.request(rtype)
    assert s.state is State.IDLE


def test_unencodable_opts_raise_invalid_option() -> None:
    with pytest.raises(InvalidOptionError):
        Session().request(ReqType.DUMP, rpc_pb2.criu_opts(pid=1))  # images_dir_fd is required


# --- every response type ---------------------------------------------------


def test_version_response() -> None:
    event = waiting(ReqType.VERSION).receive(reply("version"))
    assert isinstance(event, Response) and event.success
    assert event.version is not None and event.version.numbers[:3] == (4, 2, 1)


def test_feature_check_response_is_criu_answer() -> None:
    s = waiting(ReqType.FEATURE_CHECK, features=Features(mem_track=True, lazy_pages=True, pidfd_store=True))
    event = s.receive(reply("feature_check"))
    assert event.features == Features(mem_track=False, lazy_pages=True, pidfd_store=True)


def test_check_and_cpuinfo_responses() -> None:
    assert waiting(ReqType.CHECK).receive(reply("check")).success
    assert waiting(ReqType.CPUINFO_DUMP, opts=opts()).receive(reply("cpuinfo_dump")).success


def test_dump_response() -> None:
    s = waiting(ReqType.DUMP, opts=opts(pid=1))
    event = s.receive(reply("dump"))
    assert event.success and event.restored is False
    assert s.state is State.CLOSED


def test_restore_response_and_failure() -> None:
    ok = waiting(ReqType.RESTORE, opts=opts()).receive(reply("restore"))
    assert ok.success and ok.restore_pid > 0
    bad = waiting(ReqType.RESTORE, opts=opts()).receive(reply("restore_failed"))
    assert not bad.success and bad.cr_errno == 17 and "RLIMIT" in bad.cr_errmsg


def test_page_server_daemon_pid_zero_means_unknown() -> None:
    event = waiting(ReqType.PAGE_SERVER, opts=opts()).receive(reply("page_server"))
    assert event.page_server is not None
    assert event.page_server.pid is None and event.page_server.port > 0


def test_page_server_child_is_answered_as_page_server_then_wait_pid() -> None:
    s = waiting(ReqType.PAGE_SERVER_CHLD, opts=opts(), keep_open=True)
    event = s.receive(reply("page_server_chld"))
    assert event.type is ReqType.PAGE_SERVER and event.page_server.pid > 0
    assert s.state is State.IDLE
    s.request(ReqType.WAIT_PID, pid=event.page_server.pid)
    assert s.receive(reply("wait_pid")).status == 0xFF00
    assert s.state is State.CLOSED


def test_criu_rejection_comes_as_empty_failure() -> None:
    event = waiting(ReqType.VERSION).receive(reply("invalid_request"))
    assert event.type is ReqType.EMPTY and not event.success


# --- protocol errors leave the session unchanged ------------------------------


def test_wrong_response_type_is_protocol_error() -> None:
    s = waiting(ReqType.RESTORE, opts=opts())
    with pytest.raises(CriuProtocolError, match="RESTORE with a DUMP"):
        s.receive(reply("dump"))
    assert s.state is State.WAITING
    assert s.receive(reply("restore")).success


def test_truncated_message_is_protocol_error() -> None:
    s = waiting(ReqType.DUMP, opts=opts())
    with pytest.raises(CriuProtocolError, match="truncated"):
        s.receive(reply("restore_failed")[:-7])
    assert s.state is State.WAITING


def test_message_missing_required_fields_is_protocol_error() -> None:
    with pytest.raises(CriuProtocolError, match="required"):
        waiting(ReqType.VERSION).receive(b"\x08\x0a")  # type only, no success


def test_message_when_nothing_is_pending_is_protocol_error() -> None:
    s = Session()
    with pytest.raises(CriuProtocolError):
        s.receive(reply("version"))
    assert s.state is State.IDLE


# --- the legal steps ----------------------------------------------------------


def test_pre_dump_may_repeat_then_exactly_one_dump() -> None:
    s = Session()
    ok = rpc_pb2.criu_resp(type=rpc_pb2.PRE_DUMP, success=True).SerializeToString()
    for _ in range(3):
        s.request(ReqType.PRE_DUMP, opts(track_mem=True))
        assert s.receive(ok).success
        assert s.state is State.PRE_DUMPED
    with pytest.raises(IllegalStepError):
        s.request(ReqType.RESTORE, opts())
    assert s.state is State.PRE_DUMPED
    s.request(ReqType.DUMP, opts(parent_img="../2"))
    s.receive(reply("dump"))
    with pytest.raises(IllegalStepError):
        s.request(ReqType.DUMP, opts())
    assert s.state is State.CLOSED


def test_failed_pre_dump_ends_the_session() -> None:
    s = waiting(ReqType.PRE_DUMP, opts=opts())
    fail = rpc_pb2.criu_resp(type=rpc_pb2.PRE_DUMP, success=False).SerializeToString()
    assert not s.receive(fail).success
    assert s.state is State.CLOSED


def test_single_pre_dump_ends_the_session() -> None:
    s = waiting(ReqType.SINGLE_PRE_DUMP, opts=opts())
    assert not s.receive(reply("single_pre_dump_failed")).success
    with pytest.raises(IllegalStepError):
        s.request(ReqType.DUMP, opts())


def test_request_while_waiting_is_illegal_and_changes_nothing() -> None:
    s = waiting(ReqType.DUMP, opts=opts())
    with pytest.raises(IllegalStepError):
        s.request(ReqType.VERSION)
    assert s.state is State.WAITING and s.pending is ReqType.DUMP


@pytest.mark.parametrize("rtype", sorted(set(ReqType) - KEEP_OPEN_TYPES - {ReqType.EMPTY, ReqType.NOTIFY}))
def test_keep_open_only_where_criu_allows_it(rtype: ReqType) -> None:
    s = Session()
    with pytest.raises(IllegalStepError, match="keep_open"):
        s.request(rtype, opts(), keep_open=True, features=Features(), pid=1)
    assert s.state is State.IDLE and s.pending is None


def test_keep_open_allows_the_next_request() -> None:
    s = waiting(ReqType.VERSION, keep_open=True)
    s.receive(reply("version"))
    assert s.state is State.IDLE
    s.request(ReqType.FEATURE_CHECK, features=Features(mem_track=True), keep_open=True)
    s.receive(reply("feature_check"))
    s.request(ReqType.PRE_DUMP, opts())
    assert s.state is State.WAITING


def test_without_keep_open_the_session_closes() -> None:
    s = waiting(ReqType.VERSION)
    s.receive(reply("version"))
    with pytest.raises(IllegalStepError, match="closed"):
        s.request(ReqType.VERSION)


@pytest.mark.parametrize("rtype", [ReqType.NOTIFY, ReqType.EMPTY])
def test_client_cannot_start_notify_or_empty(rtype: ReqType) -> None:
    with pytest.raises(IllegalStepError):
        Session().request(rtype)


# --- notify -------------------------------------------------------------------


def test_after_a_notify_only_the_ack_may_be_sent() -> None:
    s = waiting(ReqType.DUMP, opts=opts(notify_scripts=True))
    event = s.receive(reply("notify_pre-dump"))
    assert isinstance(event, Notify) and event.script == "pre-dump" and event.pid is None
    assert s.state is State.NOTIFIED
    with pytest.raises(IllegalStepError):
        s.request(ReqType.DUMP, opts())
    with pytest.raises(CriuProtocolError):
        s.receive(reply("dump"))
    assert s.state is State.NOTIFIED
    ack = sent(s.ack(True))
    assert ack.type == rpc_pb2.NOTIFY and ack.notify_success is True
    assert s.receive(reply("dump")).success


def test_ack_without_a_notify_is_illegal() -> None:
    s = waiting(ReqType.DUMP, opts=opts(notify_scripts=True))
    with pytest.raises(IllegalStepError):
        s.ack(True)
    assert s.state is State.WAITING


def test_nack_and_externals() -> None:
    s = waiting(ReqType.DUMP, opts=opts(notify_scripts=True))
    s.receive(reply("notify_query-ext-files"))
    ack = sent(s.ack(False, ["file[12:34]"]))
    assert ack.notify_success is False and list(ack.opts.external) == ["file[12:34]"]


def test_notify_carries_pid_and_fd() -> None:
    s = waiting(ReqType.RESTORE, opts=opts(notify_scripts=True))
    event = s.receive(reply("notify_post-restore"), fds=[9])
    assert event.pid > 0 and event.fd == 9


def test_notify_that_was_not_asked_for_is_protocol_error() -> None:
    s = waiting(ReqType.DUMP, opts=opts())
    with pytest.raises(CriuProtocolError, match="notif"):
        s.receive(reply("notify_pre-dump"))
    assert s.state is State.WAITING


def test_restore_notify_sequence_as_criu_sends_it() -> None:
    s = waiting(ReqType.RESTORE, opts=opts(notify_scripts=True))
    scripts = []
    for name in ("pre-restore", "post-restore", "pre-resume", "post-resume"):
        scripts.append(s.receive(reply(f"notify_{name}")).script)
        s.ack()
    assert scripts == ["pre-restore", "post-restore", "pre-resume", "post-resume"]
    assert s.receive(reply("restore")).success
