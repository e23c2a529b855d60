"""Stop-and-copy migration's failure points between the two hosts of the lab (issue 10).

After each the container runs on host a only: the client reaches it at its IP, a TCP connection
the client held echoes on, the counter went on, and host b holds nothing.
"""

from __future__ import annotations

import socket

import pytest

from criu_rpc.faults import FaultAt, KillCriuAt
from runtime.testing import lab_ops
from runtime.testing.lab import LAB_PORT
from tests.integration.container_helpers import echo, until
from tests.integration.migrate_helpers import cutting_proxy
from tests.integration.lab_helpers import CID, PAGE, TOKEN, count_on, lab_service

pytestmark = pytest.mark.usefixtures("container_prereqs")

PROXY_PORT = LAB_PORT + 1


# -- run on a lab host (module-level: sent by reference) -------------------------------------

def migrate_fails(address: tuple[str, int], token: bytes, **kwargs) -> dict:
    """migrate_to, expecting a MigrationError: what it said."""
    from runtime.cr.migrate import MigrationError

    try:
        lab_ops.migrate_to(CID, address, token, **kwargs)
    except MigrationError as exc:
        return {"error": str(exc), "restored_locally": exc.restored_locally, "where": exc.where}
    return {"error": ""}


def take_port(ctx) -> None:
    """At the destination's pre-restore: something else listens on the service's port in its netns.
    (Run by the restoring monitor: the port is taken until that process ends.)"""
    import json
    import os

    from runtime.net.in_netns import in_netns

    with open(os.path.join(os.environ["LAB_NET_FILE"])) as f:
        ip, path = json.load(f)

    def bind() -> socket.socket:
        s = socket.socket()
        s.bind((ip, 80))
        s.listen(1)
        return s
    _TAKEN.append(in_netns(path, bind))


_TAKEN: list[socket.socket] = []


# -- the tests ----------------------------------------------------------------------------

def runs_on_a_only(lab, net, held, before: int) -> None:
    """``held`` None: established connections are not expected to survive (see test_criu_killed)."""
    assert lab.a.call(lab_ops.status, CID) == "running"
    assert lab.b.call(lab_ops.status, CID) == ""
    lab.wait_http(net.ip)
    assert lab.http_get(net.ip) == (200, PAGE)
    if held is not None:
        assert echo(held, b"still there\n") == b"still there\n"
    else:
        fresh = lab.connect(net.ip, 7000)
        assert echo(fresh, b"a new one\n") == b"a new one\n"
        fresh.close()
    until(lambda: count_on(lab.a) > before, what="the counter to go on at a")
    left = lab.b.call(lab_ops.leftovers)
    assert left.empty(), left


@pytest.fixture
def moving(two_host_lab, busybox_bundle):
    lab = two_host_lab
    net = lab_service(lab, busybox_bundle)
    held = lab.connect(net.ip, 7000)
    assert echo(held, b"before\n") == b"before\n"
    yield lab, net, held, count_on(lab.a)
    held.close()


def test_wrong_token_and_nobody_listening(moving):
    lab, net, held, before = moving
    said = lab.a.call(migrate_fails, (lab.b.peer_ip, LAB_PORT), TOKEN)  # nobody listens yet
    assert "cannot reach" in said["error"] and "nothing was frozen" in said["error"]
    with lab.b.spawn(lab_ops.receive_once, LAB_PORT, TOKEN) as rx:
        until(lambda: lab.b.listening(LAB_PORT), what="the receiver to listen")
        said = lab.a.call(migrate_fails, (lab.b.peer_ip, LAB_PORT), b"not-the-token-at-all-00000000")
        got = rx.result(60)
    assert "bad token" in said["error"] and "nothing was frozen" in said["error"]
    assert not got.ok
    runs_on_a_only(lab, net, held, before)


def test_connection_cut_mid_stream(moving):
    lab, net, held, before = moving
    with lab.b.spawn(lab_ops.receive_once, LAB_PORT, TOKEN, timeout=30) as rx, \
            lab.b.spawn(cutting_proxy, PROXY_PORT, (lab.b.peer_ip, LAB_PORT), 60_000) as proxy:
        until(lambda: lab.b.listening(LAB_PORT) and lab.b.listening(PROXY_PORT), what="receiver and proxy")
        said = lab.a.call(migrate_fails, (lab.b.peer_ip, PROXY_PORT), TOKEN, timeout=30)
        assert proxy.result(60) == 60_000
        got = rx.result(60)
    assert said["error"] and said["restored_locally"], said
    assert not got.ok
    runs_on_a_only(lab, net, held, before)


def test_port_taken_on_the_destination(moving, tmp_path, monkeypatch):
    lab, net, held, before = moving
    netfile = tmp_path / "net.json"
    netfile.write_text(f'["{net.ip}", "{net.path}"]')
    monkeypatch.setenv("LAB_NET_FILE", str(netfile))  # inherited by the hosts' pythons
    with lab.b.spawn(lab_ops.receive_once, LAB_PORT, TOKEN,
                     notify=FaultAt("pre-restore", take_port, request="RESTORE")) as rx:
        until(lambda: lab.b.listening(LAB_PORT), what="the receiver to listen")
        said = lab.a.call(migrate_fails, (lab.b.peer_ip, LAB_PORT), TOKEN, tcp_established=True)
        got = rx.result(120)
    assert said["restored_locally"] and said["where"] == "destination", said
    assert "pages came back" in said["error"]
    assert not got.ok and "Address already in use" in got.error
    runs_on_a_only(lab, net, held, before)


@pytest.mark.parametrize("side", ["source", "destination"])
def test_criu_killed(moving, side):
    lab, net, held, before = moving
    rx_kw = {"notify": KillCriuAt("post-restore", request="RESTORE")} if side == "destination" else {}
    src_kw = {"notify": KillCriuAt("post-dump", request="DUMP")} if side == "source" else {}
    with lab.b.spawn(lab_ops.receive_once, LAB_PORT, TOKEN, **rx_kw) as rx:
        until(lambda: lab.b.listening(LAB_PORT), what="the receiver to listen")
        said = lab.a.call(migrate_fails, (lab.b.peer_ip, LAB_PORT), TOKEN, tcp_established=True, **src_kw)
        got = rx.result(120)
    assert said["restored_locally"], said
    assert not got.ok
    # A CRIU killed while it dumps leaves established connections in TCP repair mode, and the tree
    # runs the moment CRIU dies (ptrace lets go): the application reads an error and drops them
    # before anyone can repair them. Only the source side loses them; the service itself runs on.
    runs_on_a_only(lab, net, held if side == "destination" else None, before)
