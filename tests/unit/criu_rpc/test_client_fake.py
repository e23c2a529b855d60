"""CriuClient against a scripted fake ``criu swrk`` replaying CRIU 4.2.1 replies."""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path

import pytest

from criu_rpc import (CriuClient, CriuDiedError, CriuOptions, CriuRpcError, Features, FeatureUnavailableError,
                      InheritFd, InvalidOptionError, NotifyAbortedError, NotifyContext, NotifyHandler, PageServer)
from criu_rpc.errors import CriuProtocolError

from .fake_criu_fixture import fake_criu, zombies_of_us  # noqa: F401 (fixture)
from .replies import reply

MEM_TRACK_OK = {"send_msg": {"type": "FEATURE_CHECK", "success": True,
                             "features": {"mem_track": True, "lazy_pages": True, "pidfd_store": True}}}
PRE_DUMP_OK = {"send_msg": {"type": "PRE_DUMP", "success": True}}


def requests(journal: list[dict]) -> list[dict]:
    return [e["request"] for e in journal if "request" in e]


class Recorder(NotifyHandler):
    def __init__(self) -> None:
        self.calls: list[tuple[str, int | None]] = []

    def __getattribute__(self, name: str):  # record every hook without writing fourteen methods
        from criu_rpc.notify import NOTIFY_SCRIPTS

        if name in NOTIFY_SCRIPTS.values():
            return lambda ctx: object.__getattribute__(self, "calls").append((ctx.script, ctx.pid))
        return object.__getattribute__(self, name)


def test_version(fake_criu) -> None:
    client = CriuClient(fake_criu([{"recv": "VERSION"}, {"send": "version"}]))
    assert client.version() == (4, 2, 1)


def test_feature_check_returns_criu_answer_not_the_question(fake_criu) -> None:
    client = CriuClient(fake_criu([{"recv": "FEATURE_CHECK"}, {"send": "feature_check"}]))
    assert client.feature_check() == Features(mem_track=False, lazy_pages=True, pidfd_store=True)
    asked = requests(fake_criu.journal())[0]["features"]
    assert asked == {"mem_track": True, "lazy_pages": True, "pidfd_store": True}


def test_dump_with_notify_sets_notify_scripts_and_calls_hooks_in_order(fake_criu, tmp_path: Path) -> None:
    steps = [{"recv": "DUMP"}]
    for script in ("pre-dump", "query-ext-files", "post-dump"):
        steps += [{"send": f"notify_{script}"}, {"recv": "NOTIFY"}]
    steps.append({"send": "dump"})
    client = CriuClient(fake_criu(steps))
    handler = Recorder()
    result = client.dump(CriuOptions(images_dir=tmp_path, pid=1234), notify=handler)
    assert handler.calls == [("pre-dump", None), ("query-ext-files", None), ("post-dump", None)]
    sent = requests(fake_criu.journal())
    assert sent[0]["opts"]["notify_scripts"] is True and sent[0]["opts"]["pid"] == 1234
    assert sent[0]["opts"]["log_file"] == "dump.log"
    assert all(r["notify_success"] is True for r in sent[1:])
    assert result.pid == 1234 and result.log_path == str(tmp_path / "dump.log")
    assert result.images_dir == str(tmp_path)


def test_raising_hook_aborts_and_chains(fake_criu, tmp_path: Path) -> None:
    failure = {"send_msg": {"type": "DUMP", "success": False, "cr_errmsg": "script failed"}}
    client = CriuClient(fake_criu([{"recv": "DUMP"}, {"send": "notify_pre-dump"}, {"recv": "NOTIFY"}, failure]))
    boom = RuntimeError("not now")

    class Refuse(NotifyHandler):
        def pre_dump(self, ctx: NotifyContext) -> None:
            raise boom

    with pytest.raises(NotifyAbortedError) as info:
        client.dump(CriuOptions(images_dir=tmp_path, pid=1), notify=Refuse())
    assert info.value.__cause__ is boom and info.value.script == "pre-dump"
    assert requests(fake_criu.journal())[1]["notify_success"] is False


def test_rpc_failure_keeps_errno_errmsg_and_log_errors(fake_criu, tmp_path: Path) -> None:
    (tmp_path / "restore.log").write_text(
        "(00.001) Error (criu/util.c:1534): rlimit: Can't setup RLIMIT_NOFILE for self: Operation not permitted\n"
        "(00.002) Error (criu/cr-restore.c:1237): Can't fork for 4242: File exists\n")
    client = CriuClient(fake_criu([{"recv": "RESTORE"}, {"send": "restore_failed"}]))
    with pytest.raises(CriuRpcError) as info:
        client.restore(CriuOptions(images_dir=tmp_path))
    err = info.value
    assert err.request == "RESTORE" and err.cr_errno == 17
    assert err.cr_errmsg == ""  # CRIU's "first error" was the harmless rlimit line
    assert err.log_path == str(tmp_path / "restore.log")
    assert err.log_errors == ["Error (criu/cr-restore.c:1237): Can't fork for 4242: File exists"]
    assert "Can't fork for 4242" in str(err)


def test_criu_rejection_is_rpc_error(fake_criu) -> None:
    client = CriuClient(fake_criu([{"recv": "CHECK"}, {"send": "invalid_request"}]))
    with pytest.raises(CriuRpcError):
        client.check()


def test_wrong_response_type_is_protocol_error(fake_criu, tmp_path: Path) -> None:
    client = CriuClient(fake_criu([{"recv": "RESTORE"}, {"send": "dump"}]))
    with pytest.raises(CriuProtocolError):
        client.restore(CriuOptions(images_dir=tmp_path))
    assert zombies_of_us() == []


@pytest.mark.parametrize("how, code", [({"kill": True}, -9), ({"exit": 3}, 3)])
def test_criu_dying_mid_request(fake_criu, tmp_path: Path, how: dict, code: int) -> None:
    client = CriuClient(fake_criu([{"recv": "DUMP"}, how]))
    with pytest.raises(CriuDiedError) as info:
        client.dump(CriuOptions(images_dir=tmp_path, pid=1))
    assert info.value.returncode == code and info.value.request == "DUMP"
    assert zombies_of_us() == []


def test_criu_dying_inside_a_notify(fake_criu, tmp_path: Path) -> None:
    client = CriuClient(fake_criu([{"recv": "DUMP"}, {"send": "notify_pre-dump"}, {"kill": True}]))
    with pytest.raises(CriuDiedError) as info:
        client.dump(CriuOptions(images_dir=tmp_path, pid=1), notify=NotifyHandler())
    assert info.value.returncode == -9
    assert zombies_of_us() == []


def test_pre_dump_without_mem_track_fails_before_sending(fake_criu, tmp_path: Path) -> None:
    client = CriuClient(fake_criu([{"recv": "FEATURE_CHECK"}, {"send": "feature_check"}]))
    with pytest.raises(FeatureUnavailableError, match="CONFIG_MEM_SOFT_DIRTY") as info:
        client.pre_dump(CriuOptions(images_dir=tmp_path, pid=1))
    assert info.value.feature == "mem_track"
    sent = requests(fake_criu.journal())
    assert [r["type"] for r in sent] == ["FEATURE_CHECK"] and sent[0]["keep_open"] is True


def test_criu_own_no_mem_track_failure_is_mapped(fake_criu, tmp_path: Path) -> None:
    client = CriuClient(fake_criu([{"recv": "FEATURE_CHECK"}, MEM_TRACK_OK,
                                   {"recv": "SINGLE_PRE_DUMP"}, {"send": "single_pre_dump_failed"}]))
    with pytest.raises(FeatureUnavailableError) as info:
        client.single_pre_dump(CriuOptions(images_dir=tmp_path, pid=1))
    assert isinstance(info.value.__cause__, CriuRpcError)


def test_dump_sequence_on_one_session_with_relative_parents(fake_criu, tmp_path: Path) -> None:
    dirs = [tmp_path / n for n in ("1", "2", "3")]
    for d in dirs:
        d.mkdir()
    client = CriuClient(fake_criu([{"recv": "FEATURE_CHECK"}, MEM_TRACK_OK,
                                   {"recv": "PRE_DUMP"}, PRE_DUMP_OK,
                                   {"recv": "PRE_DUMP"}, PRE_DUMP_OK,
                                   {"recv": "DUMP"}, {"send": "dump"}]))
    result = client.dump_sequence([CriuOptions(images_dir=d, pid=9) for d in dirs[:2]],
                                  CriuOptions(images_dir=dirs[2], pid=9))
    sent = requests(fake_criu.journal())
    assert [r["type"] for r in sent] == ["FEATURE_CHECK", "PRE_DUMP", "PRE_DUMP", "DUMP"]
    assert "parent_img" not in sent[1]["opts"] and sent[1]["opts"]["track_mem"] is True
    assert sent[2]["opts"]["parent_img"] == "../1" and sent[3]["opts"]["parent_img"] == "../2"
    assert sent[3]["opts"]["track_mem"] is True
    assert [p.images_dir for p in result.pre_dumps] == [str(d) for d in dirs[:2]]
    assert result.dump.images_dir == str(dirs[2])
    assert len([e for e in fake_criu.journal() if "argv" in e]) == 1  # one swrk for all of it


def test_restore_passes_inherit_fds_at_their_numbers(fake_criu, tmp_path: Path) -> None:
    r, w = os.pipe()
    try:
        client = CriuClient(fake_criu([{"probe_fds": [r]}, {"recv": "RESTORE"}, {"send": "restore"}]))
        result = client.restore(CriuOptions(images_dir=tmp_path), inherit=[InheritFd(key="pipe:[1]", fd=r)])
    finally:
        os.close(r)
        os.close(w)
    journal = fake_criu.journal()
    assert {"fds": {str(r): True}} in journal
    assert requests(journal)[0]["opts"]["inherit_fd"] == [{"key": "pipe:[1]", "fd": r}]
    assert result.pid > 0 and result.log_path == str(tmp_path / "restore.log")


def test_orphan_pts_master_fd_reaches_the_handler(fake_criu, tmp_path: Path) -> None:
    notify = {"type": "NOTIFY", "success": True, "notify": {"script": "orphan-pts-master"}}
    client = CriuClient(fake_criu([{"recv": "RESTORE"}, {"send_fd": "notify_pre-restore", "text": "ignored"},
                                   {"recv": "NOTIFY"}, {"send_msg": notify}, {"recv": "NOTIFY"},
                                   {"send": "restore"}]))
    got: list[bytes] = []

    class Keep(NotifyHandler):
        def orphan_pts_master(self, ctx: NotifyContext) -> None:
            assert ctx.fd is None  # this one came without an fd
            got.append(b"none")

        def pre_restore(self, ctx: NotifyContext) -> None:
            fd = ctx.take_fd()
            got.append(os.read(fd, 100))
            os.close(fd)

    client.restore(CriuOptions(images_dir=tmp_path), notify=Keep())
    assert got == [b"ignored", b"none"]


def test_page_server_daemon_and_child(fake_criu, tmp_path: Path) -> None:
    client = CriuClient(fake_criu([{"recv": "PAGE_SERVER"}, {"send": "page_server"}]))
    result = client.page_server(CriuOptions(images_dir=tmp_path, ps=PageServer(address="127.0.0.1", port=0)))
    assert result.pid is None and result.port > 0 and result.address == "127.0.0.1"

    client = CriuClient(fake_criu([{"recv": "PAGE_SERVER_CHLD"}, {"send": "page_server_chld"},
                                   {"recv": "WAIT_PID"}, {"send": "wait_pid"}]))
    with client.page_server_child(CriuOptions(images_dir=tmp_path, ps=PageServer(port=0))) as child:
        assert child.pid > 0
        assert os.WEXITSTATUS(child.wait()) == 255
    sent = requests(fake_criu.journal())
    assert sent[-2]["keep_open"] is True and sent[-1]["pid"] == child.pid


def test_page_server_child_on_a_connected_socket(fake_criu, tmp_path: Path) -> None:
    """A migration hands CRIU's page server a connection it authenticated itself (ps.fd): the fd
    reaches CRIU at the number the request names, and no address or port is sent."""
    import socket

    a, b = socket.socketpair()
    fd = b.fileno()
    with a, b:
        client = CriuClient(fake_criu([{"recv": "PAGE_SERVER_CHLD"}, {"probe_fds": [fd]},
                                       {"send": "page_server_chld"}, {"recv": "WAIT_PID"}, {"send": "wait_pid"}]))
        with client.page_server_child(CriuOptions(images_dir=tmp_path, ps=PageServer(fd=fd))) as child:
            child.wait()
    [req] = [r for r in requests(fake_criu.journal()) if r["type"] == "PAGE_SERVER_CHLD"]
    assert req["opts"]["ps"] == {"fd": fd}
    assert {"fds": {str(fd): True}} in fake_criu.journal()


def test_cpuinfo(fake_criu, tmp_path: Path) -> None:
    client = CriuClient(fake_criu([{"recv": "CPUINFO_DUMP"}, {"send": "cpuinfo_dump"}]))
    client.cpuinfo_dump(CriuOptions(images_dir=tmp_path))
    assert requests(fake_criu.journal())[0]["opts"]["log_file"] == "cpuinfo.log"


def test_missing_criu_binary(tmp_path: Path) -> None:
    from criu_rpc import CriuNotFoundError

    with pytest.raises(CriuNotFoundError):
        CriuClient(tmp_path / "nope").version()


# --- criu service -------------------------------------------------------------


def serve_once(address: str, replies: list[bytes], received: list[bytes]) -> threading.Thread:
    server = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    server.bind(address)
    server.listen(1)

    def run() -> None:
        conn, _ = server.accept()
        with conn, server:
            for data in replies:
                received.append(conn.recv(1 << 16))
                conn.send(data)

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_service_mode_sends_images_dir_by_path(tmp_path: Path) -> None:
    from criu_rpc._pb import rpc_pb2

    received: list[bytes] = []
    thread = serve_once(str(tmp_path / "s.sock"), [reply("dump")], received)
    client = CriuClient(service_address=tmp_path / "s.sock")
    client.dump(CriuOptions(images_dir=tmp_path, pid=5))
    thread.join()
    req = rpc_pb2.criu_req.FromString(received[0])
    assert req.opts.images_dir_fd == -1 and req.opts.images_dir == str(tmp_path)


@pytest.mark.parametrize("kw", [{"inherit_fd": (InheritFd(key="pipe:[1]", fd=0),)}, {"rst_sibling": True},
                                {"ps": PageServer(fd=0)}])
def test_service_mode_refuses_what_needs_our_fds(tmp_path: Path, kw: dict) -> None:
    client = CriuClient(service_address=tmp_path / "unused.sock")
    with pytest.raises(InvalidOptionError):
        client.restore(CriuOptions(images_dir=tmp_path, **kw))


def test_dump_hands_extra_fds_to_criu(fake_criu, tmp_path: Path) -> None:
    r, w = os.pipe()
    try:
        client = CriuClient(fake_criu([{"probe_fds": [r, w]}, {"recv": "DUMP"}, {"send": "dump"}]))
        client.dump(CriuOptions(images_dir=tmp_path, pid=3), extra_fds=[r])
    finally:
        os.close(r)
        os.close(w)
    assert {"fds": {str(r): True, str(w): False}} in fake_criu.journal()
