"""Helpers of the two-host lab tests (test_migrate_lab.py, test_migrate_lazy.py): the service on host a,
and what a user checks after a migration."""

from __future__ import annotations

from runtime.testing import lab_ops
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
    lab.wait_http(net.ip)
    assert lab.http_get(net.ip) == (200, PAGE)
    until(lambda: count_on(host) > before, what="the counter to go on")
