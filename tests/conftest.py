"""Shared test configuration.

Integration tests need root, a real kernel and CRIU 4.2. Outside CI they are
skipped when those are missing; in CI (CI=true) a missing prerequisite fails
the test instead, so a green CI really ran them.
"""

from __future__ import annotations

import os

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require(condition: bool, why: str) -> None:
    """Skip (locally) or fail (in CI) when a prerequisite is missing."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"prerequisite missing in CI: {why}")
    pytest.skip(why)


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
