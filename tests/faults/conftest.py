"""Fixtures of the fault suite: prerequisites, the service container, host canaries (tools: faultkit.py)."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator

import pytest

from runtime.testing.net import wait_tcp
from tests.conftest import require_criu
from tests.faults.faultkit import CGROUP_ROOT, SERVICE, Web
from tests.integration.container_helpers import need_container_prereqs, until


@pytest.fixture(autouse=True)
def _prereqs() -> None:
    need_container_prereqs()
    require_criu()


@pytest.fixture
def web(busybox_bundle, netns, container, state_root) -> Web:
    bundle = busybox_bundle(["sh", "-c", SERVICE], files={"/www/index.html": "hello\n"}, netns_path=netns.path)
    w = Web(ctr=container(bundle), ip=netns.ip, netns_path=netns.path, root=str(state_root))
    wait_tcp(w.ip, 80, timeout=10)
    until(lambda: w.count() >= 2, what="the counter to tick")
    return w


@pytest.fixture
def canary() -> Iterator[list[str]]:
    """An empty cgroup in every host hierarchy: a recursive delete through CRIU's cgroup yard would take it."""
    name = f"ccrt-canary-{secrets.token_hex(3)}"
    made = []
    for entry in sorted(os.listdir(CGROUP_ROOT)):
        top = os.path.join(CGROUP_ROOT, entry)
        if os.path.isdir(top) and not os.path.islink(top) and os.path.ismount(top):
            path = os.path.join(top, name)
            os.mkdir(path)
            made.append(path)
    if os.path.exists(os.path.join(CGROUP_ROOT, "cgroup.controllers")):  # pure v2
        path = os.path.join(CGROUP_ROOT, name)
        os.mkdir(path)
        made.append(path)
    yield made
    for path in made:
        try:
            os.rmdir(path)
        except OSError:
            pass


