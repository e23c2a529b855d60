"""pytest fixtures for tests that run containers with criu-cr (see docs/harness.md).

Fixtures: ``state_root`` (a private criu-cr state root per test),
``busybox_bundle`` (bundle factory), ``netns`` / ``netns_factory`` (a named
netns with a veth and addresses, torn down after the test), ``container``
(factory: create+start, always force-deleted at teardown), ``foreign_cgroup``
(a v1 named hierarchy criu-cr does not manage, removed afterwards; with
``$CRIU_CR_TEST_FOREIGN_CGROUP=1`` one is mounted for the whole session). Network addresses
are /30 blocks from ``criu_cr_net_pool`` (default ``$CRIU_CR_TEST_NET`` or
``10.231.2.0/24``); a block whose host address is already on a host interface is
skipped, and allocation is serialized across processes by a lock file.
"""

from __future__ import annotations

import fcntl
import ipaddress
import itertools
import os
import secrets
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from runtime.testing.bundle import build_busybox_bundle
from runtime.testing.net import http_get, wait_tcp

__all__ = ["TestNet", "allocate_subnet", "reserve_test_net", "wait_tcp", "http_get"]

NET_ENV = "CRIU_CR_TEST_NET"
FOREIGN_CGROUP_ENV = "CRIU_CR_TEST_FOREIGN_CGROUP"
DEFAULT_NET_POOL = "10.231.2.0/24"
_ALLOC_LOCK = "/run/criu-cr-testnet.lock"


@dataclass(frozen=True, kw_only=True)
class TestNet:
    """A pre-created netns joined to the host by a veth (``host_ip`` <-> ``ip``)."""

    __test__ = False  # not a test class, whatever pytest thinks of the name

    name: str
    path: str  # /run/netns/<name>: put it in the bundle's network namespace path
    host_ifname: str
    ns_ifname: str
    host_ip: str  # address of the host end
    ip: str  # address of the end inside the netns (the container's IP)
    prefixlen: int


def allocate_subnet(pool: list[str], in_use: set[str], prefixlen: int = 30) -> ipaddress.IPv4Network:
    """The first subnet of ``pool`` (of ``prefixlen``) with no address in ``in_use``. Raises RuntimeError."""
    for cidr in pool:
        for sub in ipaddress.ip_network(cidr).subnets(new_prefix=prefixlen):
            hosts = [str(h) for h in sub.hosts()]
            if not in_use.intersection(hosts):
                return sub
    raise RuntimeError(f"no free /{prefixlen} left in {pool}")


def reserve_test_net(pool: list[str], prefixlen: int = 30) -> tuple[str, str, ipaddress.IPv4Network]:
    """For a test that makes its own netns: (netns name, host veth name, a free subnet of ``pool``).

    The one allocator of test networks: the names carry the prefixes the
    end-of-run leftover check looks for (``ccrt-``, ``ccrh``). Nothing is
    created; the subnet is free now.
    """
    tag = secrets.token_hex(3)
    return f"ccrt-{tag}", f"ccrh{tag}", allocate_subnet(pool, _addresses_in_use(), prefixlen)


def _addresses_in_use() -> set[str]:
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        return {msg.get_attr("IFA_ADDRESS") for msg in ipr.get_addr(family=2)}


@pytest.fixture
def criu_cr_net_pool() -> list[str]:
    """CIDRs the ``netns`` fixtures take addresses from; override to use another range."""
    return [c.strip() for c in os.environ.get(NET_ENV, DEFAULT_NET_POOL).split(",") if c.strip()]


@pytest.fixture
def state_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A fresh criu-cr state root; containers left in it are force-deleted afterwards."""
    root = str(tmp_path_factory.mktemp("criu-cr-root"))
    yield root
    from runtime.container.facade import Container

    for ctr in Container.list(root):
        try:
            ctr.delete(force=True)
        except Exception:  # noqa: BLE001 - teardown keeps going; the test already reported
            pass
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def busybox_bundle(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., str]:
    """Factory: ``busybox_bundle(args, **kw)`` -> a new bundle directory (see build_busybox_bundle)."""
    counter = itertools.count()

    def make(args: list[str] | tuple[str, ...] = ("sh",), **kwargs: object) -> str:
        d = tmp_path_factory.mktemp(f"bundle{next(counter)}")
        return build_busybox_bundle(str(d), args, **kwargs)  # type: ignore[arg-type]

    return make


@pytest.fixture
def netns_factory(criu_cr_net_pool: list[str]) -> Iterator[Callable[[], TestNet]]:
    """Factory: each call makes a named netns + veth + a /30 of addresses; all torn down afterwards."""
    from runtime.net import netns as netns_mod

    made: list[TestNet] = []
    counter = itertools.count()

    def make() -> TestNet:
        n = next(counter)
        tag = f"{os.getpid() % 100000:05d}{n:02d}"
        name = f"ccr-test-{tag}"
        host_if, ns_if = f"ccrh{tag}", "eth0"
        os.makedirs(os.path.dirname(_ALLOC_LOCK), exist_ok=True)
        with open(_ALLOC_LOCK, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            sub = allocate_subnet(criu_cr_net_pool, _addresses_in_use())
            host_ip, ip = (str(h) for h in sub.hosts())
            path = netns_mod.create_netns(name)
            try:
                netns_mod.setup_veth(netns=name, host_ifname=host_if, ns_ifname=ns_if,
                                     host_addr=f"{host_ip}/30", ns_addr=f"{ip}/30")
            except BaseException:
                netns_mod.teardown(netns=name, host_ifname=host_if)
                raise
        net = TestNet(name=name, path=path, host_ifname=host_if, ns_ifname=ns_if, host_ip=host_ip, ip=ip,
                      prefixlen=30)
        made.append(net)
        return net

    yield make
    for net in reversed(made):
        try:
            netns_mod.teardown(netns=net.name, host_ifname=net.host_ifname)
        except Exception:  # noqa: BLE001
            pass


@pytest.fixture
def netns(netns_factory: Callable[[], TestNet]) -> TestNet:
    """One pre-created netns with a veth; ``.path`` for the bundle, ``.ip`` is the container's address."""
    return netns_factory()


@pytest.fixture
def container(state_root: str) -> Iterator[Callable[..., object]]:
    """Factory: ``container(bundle, id=None, start=True)`` -> a created (and started) Container.

    Every container made is deleted with force at teardown, even when the test failed.
    """
    from runtime.container.facade import Container

    made: list[Container] = []
    counter = itertools.count()

    def make(bundle: str, id: str | None = None, start: bool = True) -> Container:  # noqa: A002
        cid = id or f"ctr{os.getpid()}-{next(counter)}"
        ctr = Container.create(cid, bundle, state_root)
        made.append(ctr)
        if start:
            ctr.start()
        return ctr

    yield make
    for ctr in reversed(made):
        try:
            ctr.delete(force=True)
        except Exception:  # noqa: BLE001 - already deleted by the test, or teardown of a broken one
            pass


@pytest.fixture
def foreign_cgroup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """A cgroup v1 named hierarchy criu-cr does not manage (:mod:`.foreign_cgroup`), removed afterwards."""
    from runtime.testing.foreign_cgroup import foreign_hierarchy

    with foreign_hierarchy(str(tmp_path_factory.mktemp("cghier"))) as h:
        yield h


@pytest.fixture(scope="session", autouse=True)
def _foreign_cgroup_for_the_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """With ``$CRIU_CR_TEST_FOREIGN_CGROUP=1``: a foreign named hierarchy for the whole session.

    Runs every test as on a host where another tool mounts its own v1
    hierarchy: checkpoints must not carry it, nor slow down because of it.
    """
    if os.environ.get(FOREIGN_CGROUP_ENV, "") not in ("1", "true", "yes"):
        yield
        return
    from runtime.testing.foreign_cgroup import foreign_hierarchy

    with foreign_hierarchy(str(tmp_path_factory.mktemp("cghier-session"))):
        yield


@pytest.fixture
def tcp_waiter() -> Callable[..., None]:
    """``wait_tcp`` as a fixture, for tests that prefer injection to imports."""
    return wait_tcp


@pytest.fixture
def two_host_lab(criu_cr_net_pool: list[str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """Two "hosts" and a client namespace on this machine (:class:`runtime.testing.lab.Lab`): each host
    with its own netns, mount namespace (private /run/netns and /run/criu-cr) and cgroup namespace;
    everything removed afterwards, also when the test failed."""
    from runtime.testing.lab import Lab

    with Lab.create(pool=criu_cr_net_pool, workdir=str(tmp_path_factory.mktemp("lab"))) as lab:
        yield lab
