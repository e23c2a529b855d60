"""Stop-and-copy migration between the two hosts of the lab (issue 10), over TCP, no shared directory.

The service runs on host a in a netns of its own; a client namespace reaches
its IP through whichever host holds it. After ``migrate`` to host b: the
same IP answers the client, a TCP connection the client held echoes on, the
counter continued, and host a holds nothing (no process, state, mount, netns lock).
"""

from __future__ import annotations

import time

import pytest

from runtime.testing import lab_ops
from runtime.testing.lab import LAB_PORT
from tests.integration.container_helpers import SERVICE, echo, read_count, until

pytestmark = pytest.mark.usefixtures("container_prereqs")

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


def test_stop_and_copy_between_hosts(two_host_lab, busybox_bundle):
    lab = two_host_lab
    net = lab_service(lab, busybox_bundle)
    held = lab.connect(net.ip, 7000)
    assert echo(held, b"before\n") == b"before\n"
    before = count_on(lab.a)
    with lab.poller(net.ip) as poll, lab.b.spawn(lab_ops.receive_once, LAB_PORT, TOKEN) as rx:
        until(lambda: lab.b.listening(LAB_PORT), what="the receiver to listen")
        moved = lab.a.call(lab_ops.migrate_to, CID, (lab.b.peer_ip, LAB_PORT), TOKEN, tcp_established=True)
        got = rx.result(120)
        t_end = time.monotonic()
        until(lambda: poll.seen_after(t_end), what="the client to see the service again")
    assert got.ok, got
    print(f"\nlab stop-and-copy: {moved.bytes} B, downtime {moved.downtime_s:.3f}s, longest gap seen by the "
          f"client {poll.longest_gap():.3f}s")
    assert_moved(lab, net, held, before, lab.a, lab.b)
    held.close()
