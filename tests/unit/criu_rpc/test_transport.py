"""Transports: message sizing, truncation, fd passing, the swrk child's life."""

from __future__ import annotations

import array
import os
import socket
import threading
from pathlib import Path

import pytest

from criu_rpc.errors import CriuNotFoundError, CriuProtocolError
from criu_rpc.transport import MAX_FDS, ServiceConnection, SwrkProcess, recv_message, send_message

from .fake_criu_fixture import fake_criu, zombies_of_us  # noqa: F401 (fixture)
from .replies import reply


def pair() -> tuple[socket.socket, socket.socket]:
    return socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)


def open_fds() -> set[int]:
    listed = {int(n) for n in os.listdir("/proc/self/fd")}
    return {fd for fd in listed if _is_open(fd)}  # drops the fd the listing itself used


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def send_fds(sock: socket.socket, data: bytes, fds: list[int]) -> None:
    sock.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds).tobytes())])


def test_big_message_is_received_whole() -> None:
    a, b = pair()
    with a, b:
        payload = os.urandom(150_000)  # far beyond any fixed reply buffer (8 KiB in go-criu)
        a.send(payload)
        a.send(b"next")
        assert recv_message(b) == (payload, [])
        assert recv_message(b) == (b"next", [])


def test_eof_is_none() -> None:
    a, b = pair()
    a.close()
    with b:
        assert recv_message(b) is None


def test_passed_fds_are_kept_and_close_on_exec() -> None:
    a, b = pair()
    r, w = os.pipe()
    with a, b:
        send_fds(a, reply("notify_pre-dump"), [r])
        data, fds = recv_message(b)
        assert data == reply("notify_pre-dump") and len(fds) == 1
        assert fds[0] != r and not os.get_inheritable(fds[0])
        os.write(w, b"x")
        assert os.read(fds[0], 1) == b"x"
        for fd in (r, w, fds[0]):
            os.close(fd)


def test_too_many_fds_is_protocol_error_and_closes_them() -> None:
    a, b = pair()
    pipes = [os.pipe() for _ in range(MAX_FDS + 4)]
    with a, b:
        send_fds(a, b"x", [r for r, _ in pipes])
        before = open_fds()
        with pytest.raises(CriuProtocolError, match="truncated"):
            recv_message(b)
        assert open_fds() <= before
    for r, w in pipes:
        os.close(r)
        os.close(w)


class ShortPeek:
    """A socket whose size peek under-reports, to make the real read truncate."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def recv_into(self, buf: bytearray, n: int, flags: int) -> int:
        return self.sock.recv_into(buf, n, flags) - 10

    def recvmsg(self, *args: int) -> tuple:
        return self.sock.recvmsg(*args)


def test_truncated_read_is_protocol_error() -> None:
    a, b = pair()
    with a, b:
        a.send(reply("restore_failed"))
        with pytest.raises(CriuProtocolError, match="truncated"):
            recv_message(ShortPeek(b))  # type: ignore[arg-type]


def test_swrk_child_gets_its_end_and_extra_fds_at_their_numbers(fake_criu) -> None:
    r, w = os.pipe()
    before = open_fds()
    criu = fake_criu([{"probe_fds": [r]}, {"recv": "VERSION"}, {"send": "version"}])
    with SwrkProcess(criu, pass_fds=[r]) as proc:
        # Only our own end stayed open here: the child's copy was closed at spawn
        # (besides CRIU's stderr memfd and its pidfd).
        assert open_fds() - before - {proc.sock.fileno()} <= {proc._stderr.fileno(), proc._pidfd}
        proc.send(b"\x08\x0a")  # criu_req{type: VERSION}
        data, fds = proc.recv()
        assert data == reply("version") and fds == []
    assert proc.returncode == 0
    entries = fake_criu.journal()
    assert entries[0]["argv"][0] == "swrk" and entries[0]["ppid"] == os.getpid()
    assert entries[1] == {"fds": {str(r): True}}
    os.close(r)
    os.close(w)


def test_swrk_exit_reaps_the_child(fake_criu) -> None:
    with SwrkProcess(fake_criu([{"exit": 7}])) as proc:
        assert proc.recv() is None  # EOF: the child's end is not held open by us
    assert proc.returncode == 7
    assert proc.pid not in zombies_of_us()


def test_swrk_that_ignores_eof_is_killed_after_timeout(fake_criu) -> None:
    proc = SwrkProcess(fake_criu([{"hang": True}]), reap_timeout=0.5)
    proc.close()
    assert proc.returncode == -9
    assert proc.pid not in zombies_of_us()


def test_failed_spawn_closes_everything(tmp_path: Path) -> None:
    before = open_fds()
    with pytest.raises(CriuNotFoundError):
        SwrkProcess(str(tmp_path / "no-such-criu"))
    assert open_fds() == before


def test_service_connection_talks_seqpacket(tmp_path: Path) -> None:
    address = str(tmp_path / "criu.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    server.bind(address)
    server.listen(1)

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            assert conn.recv(100) == b"\x08\x0a"
            conn.send(reply("version"))

    t = threading.Thread(target=serve)
    t.start()
    with ServiceConnection(address) as conn:
        send_message(conn.sock, b"\x08\x0a")
        assert conn.recv() == (reply("version"), [])
        assert conn.recv() is None
        assert conn.pid is None and conn.wait() is None
    t.join()
    server.close()


def test_service_connection_names_the_address(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as info:
        ServiceConnection(str(tmp_path / "nothing.sock"))
    assert info.value.filename == str(tmp_path / "nothing.sock")



def test_swrk_stderr_errors_skip_the_harmless_line(tmp_path: Path) -> None:
    criu = tmp_path / "criu"
    criu.write_text("#!/bin/sh\n"
                    "echo \"Error (criu/util.c:1534): rlimit: Can't setup RLIMIT_NOFILE for self: x\" >&2\n"
                    "echo 'Error (criu/cr-service.c:1): the real one' >&2\n"
                    "echo 'just talk' >&2\n")
    criu.chmod(0o755)
    with SwrkProcess(str(criu)) as proc:
        assert proc.wait(10) == 0
        assert proc.stderr_errors() == ["Error (criu/cr-service.c:1): the real one"]
