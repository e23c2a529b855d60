"""Helpers shared by the container integration tests."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import require

REPO = Path(__file__).resolve().parents[2]


def need_container_prereqs() -> None:
    require(os.geteuid() == 0, "needs root")
    require(os.path.exists("/bin/busybox"), "needs /bin/busybox (busybox-static)")
    require(os.path.isdir("/sys/fs/cgroup"), "needs cgroups")


def until(cond: Callable[[], object], timeout: float = 10.0, what: str = "condition") -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.05)
    pytest.fail(f"timed out after {timeout} s waiting for {what}")


def cli(root: str, *args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    """Run ``python -m runtime.cli`` with ``root`` as CRIU_CR_ROOT; capture output."""
    env = dict(os.environ, CRIU_CR_ROOT=root)
    return subprocess.run([sys.executable, "-m", "runtime.cli", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


def runc_available() -> bool:
    return shutil.which("runc") is not None
