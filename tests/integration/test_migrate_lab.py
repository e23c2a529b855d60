"""Stop-and-copy migration between the two hosts of the lab (issue 10), over TCP, no shared directory.

The service runs on host a in a netns of its own; a client namespace reaches
its IP through whichever host holds it. After ``migrate`` to host b: the
same IP answers the client, a TCP connection the client held echoes on, the
counter continued, and host a holds nothing (no process, state, mount, netns lock).
"""

from __future__ import annotations

import pytest

from tests.integration.lab_helpers import assert_moved, count_on, held_connection, lab_service, migrate_between

pytestmark = pytest.mark.usefixtures("container_prereqs")


def test_stop_and_copy_between_hosts(two_host_lab, busybox_bundle):
    lab = two_host_lab
    net = lab_service(lab, busybox_bundle)
    held = held_connection(lab, net)
    before = count_on(lab.a)
    moved, got, gap = migrate_between(lab, net, lab.a, lab.b, tcp_established=True)
    assert got.ok, got
    print(f"\nlab stop-and-copy: {moved.bytes} B, downtime {moved.downtime_s:.3f}s, longest gap seen by the "
          f"client {gap:.3f}s")
    assert_moved(lab, net, held, before, lab.a, lab.b)
    held.close()
