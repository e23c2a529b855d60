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
