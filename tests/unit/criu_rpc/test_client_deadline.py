"""Deadlines that end what they wait for, against a scripted fake ``criu swrk``."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from pathlib import Path

import pytest

from criu_rpc import CriuClient, CriuDiedError, CriuError, CriuOptions, CriuTimeoutError, InvalidOptionError
from criu_rpc.proctree import process_table

from .fake_criu_fixture import fake_criu, zombies_of_us  # noqa: F401 (fixture)
from .test_transport import open_fds


def spawned(journal: list[dict]) -> list[int]:
    return [e["spawned"] for e in journal if "spawned" in e]


def gone(pid: int) -> bool:
    """Not a live task any more (a zombie of another parent counts as gone)."""
    st = process_table().get(pid)
    return st is None or st.state == "Z"


def kill_leftovers(pids: list[int]) -> None:
    for pid in pids:  # the fake's sleepers, started by this test
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_silent_criu_is_killed_with_what_it_started(fake_criu, tmp_path: Path) -> None:
    (tmp_path / "dump.log").write_text("(00.1) Error (criu/util.c:1534): rlimit: Can't setup RLIMIT_NOFILE\n"
                                       "(00.2) Error (criu/cr-dump.c:9): stuck here\n")
    client = CriuClient(fake_criu([{"recv": "DUMP"}, {"spawn": 2}, {"hang": True}]))
    before = open_fds()
    with pytest.raises(CriuTimeoutError) as info:
        client.dump(CriuOptions(images_dir=tmp_path, pid=4321), timeout=0.5)
    err = info.value
    children = spawned(fake_criu.journal())
    try:
        assert len(children) == 4
        assert err.request == "DUMP" and err.timeout == 0.5 and err.criu_killed
        assert sorted(err.killed) == sorted(children)
        assert err.log_path == str(tmp_path / "dump.log")
        assert err.log_errors == ["Error (criu/cr-dump.c:9): stuck here"]
        assert "within 0.5 s" in str(err) and "was killed" in str(err) and "stuck here" in str(err)
        assert isinstance(err, CriuError)
        assert all(gone(pid) for pid in [err.criu_pid, *children])
        assert zombies_of_us() == []
        assert open_fds() == before
    finally:
        kill_leftovers(children)


def test_client_default_timeout_and_restore(fake_criu, tmp_path: Path) -> None:
    client = CriuClient(fake_criu([{"recv": "RESTORE"}, {"hang": True}]), timeout=0.3)
    with pytest.raises(CriuTimeoutError) as info:
        client.restore(CriuOptions(images_dir=tmp_path))
    assert info.value.request == "RESTORE" and info.value.killed == ()
    assert gone(info.value.criu_pid) and zombies_of_us() == []


def test_deadline_covers_the_whole_request_not_each_message(fake_criu, tmp_path: Path) -> None:
    # CRIU answers a notify, then goes silent: the deadline still ends it.
    steps = [{"recv": "DUMP"}, {"send": "notify_pre-dump"}, {"recv": "NOTIFY"}, {"hang": True}]
    with pytest.raises(CriuTimeoutError):
        CriuClient(fake_criu(steps)).dump(CriuOptions(images_dir=tmp_path, pid=1, notify_scripts=True),
                                          timeout=0.3)


def test_an_answer_in_time_is_not_affected(fake_criu, tmp_path: Path) -> None:
    client = CriuClient(fake_criu([{"recv": "DUMP"}, {"send": "dump"}]), timeout=30)
    assert client.dump(CriuOptions(images_dir=tmp_path, pid=7)).pid == 7


def test_criu_dying_while_its_children_hold_the_socket_is_seen_at_once(fake_criu, tmp_path: Path) -> None:
    # No deadline: only CRIU's pidfd can tell that it is gone (no EOF arrives).
    client = CriuClient(fake_criu([{"recv": "RESTORE"}, {"spawn": 1}, {"exit": 3}]))
    try:
        with pytest.raises(CriuDiedError) as info:
            client.restore(CriuOptions(images_dir=tmp_path))
        assert info.value.returncode == 3 and info.value.request == "RESTORE"
        assert zombies_of_us() == []
    finally:
        kill_leftovers(spawned(fake_criu.journal()))


def test_criu_dying_after_announcing_the_root_takes_the_tree_along(fake_criu, tmp_path: Path) -> None:
    # CRIU names the restored root, then dies: its tree (re-parented away
    # from CRIU) would stay, half restored; the client ends it.
    steps = [{"recv": "RESTORE"}, {"spawn": 1}, {"announce": "post-restore"}, {"recv": "NOTIFY"}, {"kill": True}]
    client = CriuClient(fake_criu(steps))
    try:
        with pytest.raises(CriuDiedError) as info:
            client.restore(CriuOptions(images_dir=tmp_path, notify_scripts=True))
        tree = spawned(fake_criu.journal())
        assert sorted(info.value.killed) == sorted(tree) and len(tree) == 2
        assert "were killed" in str(info.value)
        wait_until_gone(tree)
    finally:
        kill_leftovers(spawned(fake_criu.journal()))


def wait_until_gone(pids: list[int]) -> None:
    deadline = time.monotonic() + 10
    while not all(gone(p) for p in pids):
        assert time.monotonic() < deadline, f"{pids} still alive"
        time.sleep(0.01)


@pytest.mark.parametrize("bad", [0, -1.5])
def test_timeout_must_be_positive(tmp_path: Path, bad: float) -> None:
    with pytest.raises(InvalidOptionError):
        CriuClient("/bin/false", timeout=bad)
    with pytest.raises(InvalidOptionError):
        CriuClient("/bin/false").dump(CriuOptions(images_dir=tmp_path, pid=1), timeout=bad)


def test_service_connection_is_closed_not_killed(tmp_path: Path) -> None:
    address = str(tmp_path / "s.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    server.bind(address)
    server.listen(1)
    saw_eof = threading.Event()

    def silent_service() -> None:
        conn, _ = server.accept()
        with conn, server:
            conn.recv(1 << 16)  # the request, never answered
            if conn.recv(1 << 16) == b"":
                saw_eof.set()

    thread = threading.Thread(target=silent_service)
    thread.start()
    with pytest.raises(CriuTimeoutError) as info:
        CriuClient(service_address=address).version(timeout=0.3)
    thread.join(10)
    assert saw_eof.is_set()
    assert not info.value.criu_killed and info.value.criu_pid is None
    assert "connection to the criu service was closed" in str(info.value)
