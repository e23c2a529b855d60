"""Helpers shared by the container integration tests."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from runtime.container import Container
from tests.conftest import require

REPO = Path(__file__).resolve().parents[2]


def need_container_prereqs() -> None:
    require(os.geteuid() == 0, "needs root")
    require(os.path.exists("/bin/busybox"), "needs /bin/busybox (busybox-static)")
    require(os.path.isdir("/sys/fs/cgroup"), "needs cgroups")


def until(cond: Callable[[], object], timeout: float = 10.0, what: str = "condition") -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.05)
    pytest.fail(f"timed out after {timeout} s waiting for {what}")


def cli(root: str, *args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    """Run ``python -m runtime.cli`` with ``root`` as CRIU_CR_ROOT; capture output."""
    env = dict(os.environ, CRIU_CR_ROOT=root)
    return subprocess.run([sys.executable, "-m", "runtime.cli", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


def runc_available() -> bool:
    return shutil.which("runc") is not None


# httpd on :80, an echo server on :7000, and a counter ticking every 50 ms (written
# then renamed: a checkpoint between truncate and write would leave it empty).
SERVICE = ("httpd -p 80 -h /www; "
           "nc -ll -p 7000 -e cat & "
           "i=0; while true; do i=$((i+1)); echo $i > /tmp/count.new; busybox mv /tmp/count.new /tmp/count; "
           "echo tick $i; sleep 0.05; done")


def read_count(path: str) -> int:
    """The counter file's value; 0 while it is missing or being rewritten."""
    try:
        with open(path) as f:
            return int(f.read().strip() or 0)
    except (FileNotFoundError, ValueError):
        return 0


def counter(ctr: Container) -> int:
    return read_count(os.path.join(ctr.refresh().rootfs, "tmp", "count"))


def answers(ip: str, port: int = 80, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((ip, port), timeout=timeout):
            return True
    except OSError:
        return False


def echo(sock: socket.socket, text: bytes) -> bytes:
    sock.sendall(text)
    got = b""
    while not got.endswith(b"\n"):
        chunk = sock.recv(100)
        if not chunk:
            break
        got += chunk
    return got


def count_in(root: str, cid: str) -> int:
    """The counter of container ``cid`` under state root ``root``."""
    return read_count(os.path.join(Container.load(cid, root).refresh().rootfs, "tmp", "count"))
