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
from tests.integration.container_helpers import echo, until
from tests.integration.lab_helpers import CID, TOKEN, assert_moved, count_on, lab_service

pytestmark = pytest.mark.usefixtures("container_prereqs")


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
