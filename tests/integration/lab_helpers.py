"""Helpers of the two-host lab tests (test_migrate_lab.py, test_migrate_lazy.py): the service on host a,
and what a user checks after a migration."""

from __future__ import annotations

import time

from runtime.testing import lab_ops
from runtime.testing.lab import LAB_PORT
from tests.integration.container_helpers import SERVICE, echo, read_count, until

TOKEN = b"0123456789abcdef0123456789abcdef"
CID = "web"
PAGE = b"hello from the container\n"


def lab_service(lab, busybox_bundle):
    """The service container running on host a: its LabNet."""
    net = lab.container_net(lab.a)
    bundle = busybox_bundle(["sh", "-c", SERVICE], files={"/www/index.html": PAGE.decode()}, netns_path=net.path)
    lab.a.call(lab_ops.run_container, CID, bundle)
    lab.wait_http(net.ip)
    until(lambda: count_on(lab.a) >= 3, what="the counter to tick")
    return net


def held_connection(lab, net):
    """A TCP connection from the client to the service's echo port, answering."""
    held = lab.connect(net.ip, 7000)
    assert echo(held, b"before\n") == b"before\n"
    return held


def migrate_between(lab, net, source, destination, **kwargs):
    """``migrate`` from ``source`` to a receiver on ``destination`` while the client asks every 10 ms:
    (the source's result, the receiver's, the longest gap the client saw)."""
    with lab.poller(net.ip) as poll, destination.spawn(lab_ops.receive_once, LAB_PORT, TOKEN) as rx:
        until(lambda: destination.listening(LAB_PORT), what="the receiver to listen")
        moved = source.call(lab_ops.migrate_to, CID, (destination.peer_ip, LAB_PORT), TOKEN, **kwargs)
        got = rx.result(120)
        t_end = time.monotonic()
        until(lambda: poll.seen_after(t_end), what="the client to see the service again")
    return moved, got, poll.longest_gap()


def count_on(host) -> int:
    return read_count(host.path(f"/run/criu-cr/{CID}/rootfs/tmp/count"))


def assert_moved(lab, net, held, before: int, source, destination) -> None:
    """What a user checks after a migration from ``source`` to ``destination``."""
    assert lab.http_get(net.ip) == (200, PAGE)
    assert echo(held, b"still there\n") == b"still there\n"
    after = until(lambda: count_on(destination) if count_on(destination) > before else 0, what="the counter to go on")
    assert before < after <= before + 100  # continued, not restarted
    assert destination.call(lab_ops.status, CID) == "running"
    left = source.call(lab_ops.leftovers, net.path)
    assert left.empty(), left
    assert source.pids() == [source.anchor]  # no process of the container, no CRIU, no helper


def assert_runs_on(lab, net, host, before: int) -> None:
    """The container runs on ``host`` (a migration that failed left it there)."""
    assert host.call(lab_ops.status, CID) == "running"
    assert host.call(lab_ops.leftovers).state_entries == [CID]  # nothing of the attempt beside it
    lab.wait_http(net.ip)
    assert lab.http_get(net.ip) == (200, PAGE)
    until(lambda: count_on(host) > before, what="the counter to go on")


def vanishing_destination(port: int, token: bytes) -> None:
    """On a lab host: a destination that stages the images, hears that the pages are served (GO),
    and is gone (killed before it restored anything): no answer, no page fetched."""
    import os
    import secrets
    import socket

    from runtime.cr.migrate_proto import NONCE_BYTES, Kind, json_bytes, proof
    from runtime.cr.migrate_wire import Conn

    with socket.create_server(("0.0.0.0", port)) as srv:
        sock, _peer = srv.accept()
        conn = Conn(sock)
        conn.send(Kind.CHALLENGE, secrets.token_bytes(NONCE_BYTES))
        msg = conn.recv(Kind.PROOF)
        conn.send(Kind.PROVEN, proof(token, "destination", msg.payload[32:]))
        conn.recv(Kind.OFFER)
        conn.send(Kind.READY)
        conn.recv(Kind.ARCHIVE)
        while conn.recv(Kind.DATA, Kind.END).kind is Kind.DATA:
            pass
        conn.send(Kind.STAGED, json_bytes({}))
        conn.recv(Kind.GO)  # the pages are served
        os._exit(0)
