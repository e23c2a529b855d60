"""Page server (daemon and child + WAIT_PID) and cpuinfo against real CRIU 4.2 (root)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from criu_rpc import CriuClient, CriuOptions, PageServer

from .rpc_helpers import criu_path, stat_fields, wait_until


@pytest.fixture
def client() -> CriuClient:
    return CriuClient(criu_path())


def hang_up(port: int) -> None:
    """A page server serves one connection: connecting and leaving ends it."""
    with socket.create_connection(("127.0.0.1", port), timeout=5):
        pass


def test_page_server_daemon(client: CriuClient, tmp_path: Path) -> None:
    result = client.page_server(CriuOptions(images_dir=tmp_path, ps=PageServer(address="127.0.0.1", port=0)))
    try:
        assert result.port and result.port > 0
        assert result.pid is None  # CRIU 4.2 reports 0 for a daemon: no pid, never os.kill(0, ...)
        assert os.path.exists(result.log_path)
    finally:
        hang_up(result.port)


def test_page_server_child_then_wait_pid_on_the_same_session(client: CriuClient, tmp_path: Path) -> None:
    with client.page_server_child(CriuOptions(images_dir=tmp_path,
                                              ps=PageServer(address="127.0.0.1", port=0))) as server:
        assert server.pid and server.port
        assert stat_fields(server.pid) is not None  # running, a child of our swrk
        hang_up(server.port)
        status = server.wait()
        assert os.WIFEXITED(status) or os.WIFSIGNALED(status)
    wait_until(lambda: stat_fields(server.pid) is None, 10, "the page server to be reaped")


def test_cpuinfo_dump_then_check_on_the_same_machine(client: CriuClient, tmp_path: Path) -> None:
    client.cpuinfo_dump(CriuOptions(images_dir=tmp_path))
    assert (tmp_path / "cpuinfo.img").exists()
    client.cpuinfo_check(CriuOptions(images_dir=tmp_path))
