"""The same round trip through a `criu service` socket (root, real CRIU 4.2)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from criu_rpc import CriuClient, CriuOptions, NotifyHandler

from .rpc_helpers import Counter, criu_path, wait_until


@pytest.fixture
def service(tmp_path: Path):
    """A `criu service` we start as our child, stopped (by its pid) afterwards."""
    criu = criu_path()
    address = tmp_path / "criu.sock"
    log = tmp_path / "service.log"
    proc = subprocess.Popen([criu, "service", "--address", str(address), "-o", str(log)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: address.exists() or proc.poll() is not None, 10, "criu service to listen")
        assert proc.poll() is None, f"criu service exited with {proc.returncode}; see {log}"
        yield str(address)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def counter(tmp_path: Path):
    c = Counter(tmp_path)
    try:
        yield c
    finally:
        c.cleanup()


def test_version_over_service(service: str) -> None:
    assert CriuClient(service_address=service).version() >= (4, 2)


def test_dump_and_restore_over_service(service: str, counter: Counter, tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir(mode=0o700)
    client = CriuClient(service_address=service)
    calls: list[str] = []

    class Record(NotifyHandler):
        def post_dump(self, ctx) -> None:
            calls.append(ctx.script)
            assert ctx.criu_pid is None  # we do not know the service worker's pid

    client.dump(CriuOptions(images_dir=images, pid=counter.pid), notify=Record())
    assert calls == ["post-dump"]
    value_at_dump = counter.wait_dumped_away()

    restored = client.restore(CriuOptions(images_dir=images))
    counter.restored(restored.pid)
    assert restored.pid == counter.pid
    assert counter.keeps_counting()
    assert value_at_dump < counter.value() < value_at_dump + 200
