"""Fixtures of the container integration tests: prerequisites, a running service, extra containers."""

from __future__ import annotations

import pytest

from runtime.container import Container
from runtime.testing.net import wait_tcp
from tests.conftest import require_criu
from tests.integration.container_helpers import SERVICE, counter, need_container_prereqs, until


@pytest.fixture
def container_prereqs() -> None:
    """Root, busybox, cgroups and CRIU 4.2 (fails under CI when missing)."""
    need_container_prereqs()
    require_criu()


@pytest.fixture
def service_in(busybox_bundle, container):
    """Factory: a running busybox service container (httpd + counter) in the given test netns: (container, net)."""

    def make(net):
        bundle = busybox_bundle(["sh", "-c", SERVICE], files={"/www/index.html": "hello from the container\n"},
                                netns_path=net.path)
        ctr = container(bundle)
        wait_tcp(net.ip, 80, timeout=10)
        until(lambda: counter(ctr) >= 3, what="the counter to tick")
        return ctr, net

    return make


@pytest.fixture
def service(service_in, netns):
    """A running busybox service container in a pre-created netns: (container, netns)."""
    return service_in(netns)


@pytest.fixture
def cleanup_ids(state_root):
    """Ids of containers a test makes outside the ``container`` fixture; deleted at teardown."""
    ids: list[str] = []
    yield ids
    for cid in ids:
        try:
            Container.load(cid, state_root).delete(force=True)
        except Exception:  # noqa: BLE001 - already gone
            pass


@pytest.fixture
def own_net_service(service_in, netns_factory):
    """A running service container in a pre-created netns of its own: (container, netns)."""
    return service_in(netns_factory())


@pytest.fixture
def elsewhere(tmp_path_factory):
    """A second, fresh state root (another machine, as far as criu-cr can tell); emptied at teardown."""
    root = str(tmp_path_factory.mktemp("elsewhere"))
    yield root
    for ctr in Container.list(root):
        try:
            ctr.delete(force=True)
        except Exception:  # noqa: BLE001 - teardown keeps going
            pass
