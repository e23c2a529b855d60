"""Shared test configuration.

Integration tests need root, a real kernel and CRIU 4.2. Outside CI they are
skipped when those are missing; in CI (CI=true) a missing prerequisite fails
the test instead, so a green CI really ran them.
"""

from __future__ import annotations

import os
import re

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


CRIU_DEFAULT = "/opt/criu-cr/criu/bin/criu"  # where scripts/install-criu puts it


def criu_binary() -> str:
    """The CRIU the tests run: ``$CRIU_CR_CRIU`` (scripts/test sets it), else the installer's."""
    return os.environ.get("CRIU_CR_CRIU") or CRIU_DEFAULT


def require_criu() -> str:
    """:func:`criu_binary`, required to be there (skip locally, fail in CI)."""
    path = criu_binary()
    require(os.access(path, os.X_OK), f"needs CRIU 4.2 at {path} (scripts/install-criu, or set CRIU_CR_CRIU)")
    return path


def require(condition: bool, why: str) -> None:
    """Skip (locally) or fail (in CI) when a prerequisite is missing."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"prerequisite missing in CI: {why}")
    pytest.skip(why)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The integration marker comes from the directory: everything outside tests/unit needs root and CRIU."""
    unit = os.path.join(os.path.dirname(os.path.abspath(__file__)), "unit") + os.sep
    for item in items:
        if not str(item.fspath).startswith(unit):
            item.add_marker(pytest.mark.integration)


@pytest.fixture
def need_root() -> None:
    require(os.geteuid() == 0, "needs root")


def _plugin_autoloaded() -> bool:
    """Whether the installed package already registered runtime.testing.plugin (pytest11 entry point)."""
    if os.environ.get("PYTEST_DISABLE_PLUGIN_AUTOLOAD"):
        return False
    from importlib.metadata import entry_points

    return any(ep.value == "runtime.testing.plugin" for ep in entry_points(group="pytest11"))


# The container harness (state_root, busybox_bundle, netns, container fixtures):
# loaded here when the package's entry point did not already load it.
if not _plugin_autoloaded():
    pytest_plugins = ["runtime.testing.plugin"]


# -- nothing left behind ---------------------------------------------------------
# Every test cleans up in its fixtures; this checks it at the end of the run:
# network namespaces and veths the harness names, mounts under pytest's
# temporary directories or our state roots, and the tests' cgroups. In CI a
# leftover fails the run.

def _leftovers() -> list[str]:
    found = []
    try:
        found += [f"netns {n}" for n in os.listdir("/run/netns") if n.startswith(("ccr-test-", "ccrt-"))]
    except FileNotFoundError:
        pass
    try:
        found += [f"link {n}" for n in os.listdir("/sys/class/net") if n.startswith("ccrh")]
    except FileNotFoundError:
        pass
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        found += [f"mount {line.split()[4]}" for line in f
                  if "/pytest-of-" in line.split()[4] or "/criu-cr-state-" in line.split()[4]]
    with open("/proc/self/cgroup", encoding="utf-8") as f:
        found += [f"cgroup hierarchy {line.split(':')[1]}" for line in f
                  if line.split(":")[1].startswith("name=ccrt-")]  # runtime.testing.foreign_cgroup's
    for hierarchy in ("/sys/fs/cgroup/pids", "/sys/fs/cgroup/unified", "/sys/fs/cgroup"):
        if not os.path.isdir(hierarchy):
            continue
        for name in os.listdir(hierarchy):
            path = os.path.join(hierarchy, name)
            if name.startswith("criu-cr-test-") and os.path.isdir(path):
                found.append(f"cgroup {path}")
            elif re.fullmatch(r"criu-cr-[0-9a-f]{8}", name) and os.path.isdir(path):
                found += [f"cgroup {path}/{d}" for d in os.listdir(path)  # a private state root's containers
                          if os.path.isdir(os.path.join(path, d))]
            elif name in ("criu-cr-runc-test", "criu-cr-adopt-test") and os.path.isdir(path):
                found += [f"cgroup {path}/{d}" for d in os.listdir(path)
                          if os.path.isdir(os.path.join(path, d))]
        break
    return found


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if os.geteuid() != 0:
        return
    left = _leftovers()
    if not left:
        return
    print("\nleft behind by the tests:\n  " + "\n  ".join(left))
    if IN_CI and exitstatus == 0:
        session.exitstatus = 1
