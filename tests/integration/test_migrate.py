"""Stop-and-copy migration (issue 10) over 127.0.0.1 between two state roots on this machine.

A busybox service moves from its state root to ``elsewhere`` through a
``Receiver`` in a thread: it answers at the same IP, its counter goes on,
the source holds nothing. A wrong token is refused before anything is
frozen. The CLI does the same with ``receive --once`` and ``migrate``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time

import pytest

from runtime.container import Container
from runtime.cr.migrate import MigrationError, Receiver, migrate
from runtime.testing.net import http_get, wait_tcp
from tests.integration.container_helpers import count_in, counter, until

pytestmark = pytest.mark.usefixtures("container_prereqs")

TOKEN = b"0123456789abcdef0123456789abcdef"


def _serve(receiver: Receiver) -> tuple[threading.Thread, list]:
    out: list = []
    t = threading.Thread(target=lambda: out.append(receiver.serve_once()), daemon=True)
    t.start()
    return t, out


def _nothing_left(root: str, cid: str) -> None:
    assert not os.path.exists(os.path.join(root, cid))
    assert not [n for n in os.listdir(root) if n.startswith(".migrate-")]


def _poll(ip: str, stop: threading.Event, answered: list[float]) -> None:
    """A client asking the service every 10 ms; the times it was answered (the longest gap: the downtime)."""
    while not stop.is_set():
        try:
            if http_get(ip, 80, timeout=0.1)[0] == 200:
                answered.append(time.monotonic())
        except (OSError, ValueError):
            pass
        stop.wait(0.01)


def test_migrate_over_loopback(service, state_root, elsewhere):
    ctr, net = service
    before = counter(ctr)
    stop, answered = threading.Event(), []
    poller = threading.Thread(target=_poll, args=(net.ip, stop, answered), daemon=True)
    poller.start()
    stop_rx, out = threading.Event(), []
    with Receiver(("127.0.0.1", 0), TOKEN, root=elsewhere, criu_path=os.environ.get("CRIU_CR_CRIU")) as rx:
        thread = threading.Thread(target=rx.serve_forever, args=(stop_rx,), kwargs={"on_result": out.append})
        thread.start()
        until(lambda: answered, what="the poller to see the service")
        moved = ctr.migrate(f"127.0.0.1:{rx.address[1]}", TOKEN, criu_path=os.environ.get("CRIU_CR_CRIU"))
        t_end = time.monotonic()
        until(lambda: out, timeout=60, what="the receiver's report")
        stop_rx.set()
        thread.join(60)
    assert out and out[0].ok, out
    until(lambda: answered[-1] > t_end, what="the poller to see it again")
    stop.set()
    poller.join(5)
    gap = max(b - a for a, b in zip(answered, answered[1:]))
    print(f"\nmigrate: {moved.page_bytes} B of pages, {moved.bytes} B of the rest, checkpoint {moved.checkpoint_s:.3f}s send {moved.send_s:.3f}s "
          f"restore {moved.restore_s:.3f}s (receiver: receive {out[0].received_s:.3f}s restore "
          f"{out[0].restore_s:.3f}s; CRIU frozen {moved.frozen_s}s, CRIU restore {moved.criu_restore_s}s) downtime {moved.downtime_s:.3f}s, longest gap seen by a client {gap:.3f}s",
          file=sys.stderr)
    there = Container.load(ctr.id, elsewhere)
    assert there.status == "running" and there.init_pid == moved.pid
    wait_tcp(net.ip, 80, timeout=10)
    assert http_get(net.ip, 80) == (200, b"hello from the container\n")
    after = until(lambda: count_in(elsewhere, ctr.id) if count_in(elsewhere, ctr.id) > before else 0,
                  what="the counter to go on")
    assert before < after <= before + 40  # continued, not restarted
    _nothing_left(state_root, ctr.id)
    _nothing_left(elsewhere, "-none-")
    assert Container.list(state_root) == []


def test_bad_token_is_refused_and_the_source_runs_on(service, state_root, elsewhere):
    ctr, net = service
    with Receiver(("127.0.0.1", 0), TOKEN, root=elsewhere) as rx:
        thread, out = _serve(rx)
        with pytest.raises(MigrationError) as err:
            migrate(ctr.id, rx.address, b"not-the-token-at-all-00000000", root=state_root)
        thread.join(30)
    assert "bad token" in str(err.value) and "nothing was frozen" in str(err.value)
    assert out and not out[0].ok and "bad token" in out[0].error
    assert Container.load(ctr.id, state_root).status == "running"
    assert http_get(net.ip, 80)[0] == 200
    assert Container.list(elsewhere) == []
    _nothing_left(elsewhere, ctr.id)


def test_cli_receive_once_and_migrate(service, state_root, elsewhere, tmp_path):
    ctr, net = service
    token = tmp_path / "token"
    token.write_bytes(TOKEN + b"\n")
    env = dict(os.environ)
    base = [sys.executable, "-m", "runtime.cli"]
    with socket.socket() as s:  # a free port for the page connection, as a firewall rule would name it
        s.bind(("127.0.0.1", 0))
        page_port = s.getsockname()[1]
    rx = subprocess.Popen([*base, "--root", elsewhere, "receive", "--listen", "127.0.0.1:0", "--token-file",
                           str(token), "--once", "--page-port", str(page_port)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        first = rx.stdout.readline()  # "listening on HOST:PORT"
        assert first.startswith("listening on "), first + rx.stderr.read()
        addr = first.split()[-1]
        res = subprocess.run([*base, "--root", state_root, "migrate", "--token-file", str(token), ctr.id, addr],
                             capture_output=True, text=True, timeout=120, env=env)
        assert res.returncode == 0, res.stderr
        rest, err = rx.communicate(timeout=60)
    finally:
        if rx.poll() is None:
            rx.kill()
            rx.wait()
    assert rx.returncode == 0, err
    assert Container.load(ctr.id, elsewhere).status == "running"
    wait_tcp(net.ip, 80, timeout=10)
    assert http_get(net.ip, 80) == (200, b"hello from the container\n")
    _nothing_left(state_root, ctr.id)


def test_nobody_listening_freezes_nothing(service, state_root):
    ctr, net = service
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        addr = s.getsockname()
    with pytest.raises(MigrationError, match="cannot reach .*nothing was frozen"):
        migrate(ctr.id, addr, TOKEN, root=state_root)
    assert Container.load(ctr.id, state_root).status == "running"
    assert http_get(net.ip, 80)[0] == 200
    _nothing_left(state_root, "-none-")
