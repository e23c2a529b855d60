"""Stop-and-copy migration's failure points over 127.0.0.1 (issue 10): after each, the container
runs on exactly one side -- thawed, its network unlocked, its counter continued -- and the other
side holds nothing. (Wrong token and nobody listening: tests/integration/test_migrate.py.)

- ``--pre-copy`` on this kernel (no soft-dirty): refused before anything is frozen or sent;
- the connection cut mid-stream (a proxy that cuts after K bytes from the source);
- the destination cannot restore: its rootfs is missing (found while staging: CRIU resumes the
  frozen source), or the service's port is taken in its netns (found by CRIU after GO: the pages
  come back and the source restores);
- CRIU killed on the source (at post-dump, everything staged) and on the destination (restore).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading

import pytest

from criu_rpc.faults import KillCriuAt
from runtime.container import Container
from runtime.cr import migrate as migrate_mod
from runtime.cr.migrate import MigrationError, Receiver, migrate
from runtime.net.in_netns import in_netns
from runtime.testing.net import http_get, wait_tcp
from tests.integration.container_helpers import counter, until
from tests.integration.migrate_helpers import serve_cutting

pytestmark = pytest.mark.usefixtures("container_prereqs")

TOKEN = b"0123456789abcdef0123456789abcdef"
CRIU = os.environ.get("CRIU_CR_CRIU")


def _serve(rx: Receiver) -> tuple[threading.Thread, list]:
    out: list = []
    t = threading.Thread(target=lambda: out.append(rx.serve_once()), daemon=True)
    t.start()
    return t, out


def runs_here_only(ctr, net, state_root: str, elsewhere: str, before: int) -> None:
    """What a user checks: the service answers, the counter went on, nothing on the other side."""
    back = Container.load(ctr.id, state_root)
    assert back.status == "running"
    wait_tcp(net.ip, 80, timeout=10)
    assert http_get(net.ip, 80) == (200, b"hello from the container\n")
    until(lambda: counter(back) > before, what="the counter to go on at the source")
    assert Container.list(elsewhere) == []
    for root in (state_root, elsewhere):
        if os.path.isdir(root):
            assert not [n for n in os.listdir(root) if n.startswith((".migrate-", ".import-"))], os.listdir(root)


def test_destination_refusal_resumes_the_source(service, state_root, elsewhere):
    """The receiver refuses the archive (over its size limit) at the source's post-dump: the pages
    went, the tree is frozen, CRIU waits -- and resumes it."""
    ctr, net = service
    before = counter(ctr)
    with Receiver(("127.0.0.1", 0), TOKEN, root=elsewhere, limit=1024) as rx:
        thread, out = _serve(rx)
        with pytest.raises(MigrationError) as err:
            migrate(ctr.id, rx.address, TOKEN, root=state_root, criu_path=CRIU)
        thread.join(60)
    assert err.value.restored_locally and err.value.where == "destination", err.value
    assert "runs here" in str(err.value)
    assert out and not out[0].ok
    runs_here_only(ctr, net, state_root, elsewhere, before)


def test_pre_copy_is_refused_before_anything_is_frozen(service, state_root, elsewhere, tmp_path):
    ctr, net = service
    before = counter(ctr)
    files_before = sorted(os.listdir(os.path.join(state_root, ctr.id)))
    with socket.create_server(("127.0.0.1", 0)) as lsn:  # a destination that must never hear from us
        token = tmp_path / "token"
        token.write_bytes(TOKEN)
        host, port = lsn.getsockname()[:2]
        res = subprocess.run([sys.executable, "-m", "runtime.cli", "--root", state_root, "migrate", "--pre-copy", "3",
                              "--token-file", str(token), ctr.id, f"{host}:{port}"],
                             capture_output=True, text=True, timeout=60)
        lsn.settimeout(0.0)
        with pytest.raises(BlockingIOError):
            lsn.accept()  # nobody connected
    assert res.returncode != 0
    assert "FEATURE_CHECK" in res.stderr and "mem_track" in res.stderr and "--lazy" in res.stderr, res.stderr
    assert "nothing was frozen" in res.stderr
    assert sorted(os.listdir(os.path.join(state_root, ctr.id))) == files_before  # nothing changed
    runs_here_only(ctr, net, state_root, elsewhere, before)


@pytest.mark.parametrize("limit", [40, 60_000], ids=["in-handshake", "mid-archive"])
def test_connection_cut_mid_stream(service, state_root, elsewhere, limit):
    ctr, net = service
    before = counter(ctr)
    with Receiver(("127.0.0.1", 0), TOKEN, root=elsewhere, criu_path=CRIU, timeout=30) as rx:
        thread, out = _serve(rx)
        with socket.create_server(("127.0.0.1", 0)) as lsn:
            proxy = threading.Thread(target=serve_cutting, args=(lsn, rx.address, limit), daemon=True)
            proxy.start()
            with pytest.raises(MigrationError) as err:
                migrate(ctr.id, lsn.getsockname()[:2], TOKEN, root=state_root, criu_path=CRIU, timeout=30)
            proxy.join(30)
        thread.join(60)
    assert err.value.restored_locally or "nothing was frozen" in str(err.value), err.value
    assert out and not out[0].ok
    runs_here_only(ctr, net, state_root, elsewhere, before)


def test_destination_rootfs_missing(service, state_root, elsewhere):
    """Found while staging, before GO: CRIU resumes the frozen source."""
    ctr, net = service
    before = counter(ctr)
    lower = Container.load(ctr.id, state_root).refresh().bundle + "/rootfs"  # the image's rootfs
    hidden = lower + ".hidden"
    with Receiver(("127.0.0.1", 0), TOKEN, root=elsewhere, criu_path=CRIU) as rx:
        thread, out = _serve(rx)
        real = migrate_mod.archive.write_archive

        def write_then_hide(*args, **kwargs):  # the source has what it needs: now the rootfs "is not here"
            info = real(*args, **kwargs)
            os.rename(lower, hidden)
            return info

        try:
            with pytest.MonkeyPatch.context() as mp:
                mp.setattr(migrate_mod.archive, "write_archive", write_then_hide)
                with pytest.raises(MigrationError) as err:
                    migrate(ctr.id, rx.address, TOKEN, root=state_root, criu_path=CRIU)
        finally:
            if os.path.isdir(hidden):
                os.rename(hidden, lower)
        thread.join(60)
    assert err.value.restored_locally and err.value.where == "destination", err.value
    assert "root filesystem" in str(err.value) and "never stopped" in str(err.value)
    runs_here_only(ctr, net, state_root, elsewhere, before)


def test_destination_port_taken(service, state_root, elsewhere):
    """Found by CRIU after GO (the source's tree is gone): the pages come back, the source restores."""
    ctr, net = service
    before = counter(ctr)

    def take_port(_ctx):
        # Run by the destination's restoring monitor (CRIU's parent): the port stays taken until
        # that process ends with the failed restore.
        def bind() -> socket.socket:
            s = socket.socket()
            s.bind((net.ip, 80))
            s.listen(1)
            return s
        taken.append(in_netns(net.path, bind))

    taken: list[socket.socket] = []

    from criu_rpc.faults import FaultAt

    with Receiver(("127.0.0.1", 0), TOKEN, root=elsewhere, criu_path=CRIU,
                  notify=FaultAt("pre-restore", take_port, request="RESTORE")) as rx:
        thread, out = _serve(rx)
        with pytest.raises(MigrationError) as err:
            migrate(ctr.id, rx.address, TOKEN, root=state_root, criu_path=CRIU)
        thread.join(60)
    assert err.value.restored_locally and err.value.where == "destination", err.value
    assert "Address already in use" in str(err.value) and "pages came back" in str(err.value)
    assert out and not out[0].ok
    runs_here_only(ctr, net, state_root, elsewhere, before)


def test_criu_killed_on_the_source(service, state_root, elsewhere):
    """At post-dump, with everything staged on the destination: the tree runs on, the destination drops it."""
    ctr, net = service
    before = counter(ctr)
    kill = KillCriuAt("post-dump", request="DUMP")
    with Receiver(("127.0.0.1", 0), TOKEN, root=elsewhere, criu_path=CRIU) as rx:
        thread, out = _serve(rx)
        with pytest.raises(MigrationError) as err:
            migrate(ctr.id, rx.address, TOKEN, root=state_root, criu_path=CRIU, notify=kill)
        thread.join(60)
    assert kill.fired
    assert err.value.restored_locally, err.value
    assert out and not out[0].ok and "gave up" in out[0].error
    runs_here_only(ctr, net, state_root, elsewhere, before)


def test_criu_killed_on_the_destination(service, state_root, elsewhere):
    """During the destination's restore (after GO): the pages come back, the source restores."""
    ctr, net = service
    before = counter(ctr)
    with Receiver(("127.0.0.1", 0), TOKEN, root=elsewhere, criu_path=CRIU,
                  notify=KillCriuAt("post-restore", request="RESTORE")) as rx:
        thread, out = _serve(rx)
        with pytest.raises(MigrationError) as err:
            migrate(ctr.id, rx.address, TOKEN, root=state_root, criu_path=CRIU)
        thread.join(60)
    assert err.value.restored_locally and err.value.where == "destination", err.value
    assert out and not out[0].ok
    runs_here_only(ctr, net, state_root, elsewhere, before)


def test_connection_lost_between_staged_and_go(service, state_root, elsewhere):
    """The source ended its tree (it got STAGED), GO never arrives: neither side may restore on its own
    (the destination cannot tell this from a source that resumed). The destination keeps the complete
    checkpoint and the error says how to restore it; following it, the container runs there, once."""
    ctr, net = service
    before = counter(ctr)
    real_send = migrate_mod.Conn.send

    def send(self, kind, payload=b""):
        if kind is migrate_mod.Kind.GO:
            self.sock.shutdown(socket.SHUT_RDWR)  # the link dies right there
            raise ConnectionResetError("cut before GO")
        real_send(self, kind, payload)

    with Receiver(("127.0.0.1", 0), TOKEN, root=elsewhere, criu_path=CRIU) as rx:
        thread, out = _serve(rx)
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(migrate_mod.Conn, "send", send)
            with pytest.raises(MigrationError) as err:
                migrate(ctr.id, rx.address, TOKEN, root=state_root, criu_path=CRIU)
        thread.join(60)
    assert not err.value.restored_locally and "check the destination first" in str(err.value)
    assert Container.load(ctr.id, state_root).status == "checkpointed"  # nothing runs here
    assert out and not out[0].ok and "restore it here" in out[0].error
    assert Container.list(elsewhere) == []  # nor there, yet: no duplicate
    command = out[0].error.split("restore it here: ")[1].split("; else")[0].split()
    assert command[:3] == ["criu-cr", "restore", ctr.id], command
    res = subprocess.run([sys.executable, "-m", "runtime.cli", "--root", elsewhere, *command[1:]],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    there = Container.load(ctr.id, elsewhere)
    assert there.status == "running"
    wait_tcp(net.ip, 80, timeout=10)
    assert http_get(net.ip, 80) == (200, b"hello from the container\n")
    until(lambda: counter(there) > before, what="the counter to go on at the destination")
