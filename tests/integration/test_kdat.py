"""CRIU's kernel-facts cache made where /run is not a tmpfs, and used by CRIU."""

from __future__ import annotations

import os
import subprocess

import pytest

from runtime.cr import kdat
from tests.conftest import require, require_criu


@pytest.fixture
def fresh_cache():
    """No cache to start with; whatever the test leaves is put back to a valid one after."""
    criu = require_criu()
    require(os.geteuid() == 0, "needs root")
    kdat.remove()
    yield criu
    os.environ.pop(kdat.OPT_OUT_ENV, None)
    kdat.ensure(criu)


def test_the_cache_is_made_for_this_boot_and_criu_loads_it(fresh_cache, tmp_path):
    criu = fresh_cache
    if kdat._is_tmpfs("/run"):
        assert kdat.ensure(criu) == "tmpfs"
        return
    assert kdat.ensure(criu) == "made"
    assert kdat.ensure(criu) == "present"
    log = tmp_path / "check.log"
    subprocess.run([criu, "check", "-v4", "-o", str(log)], capture_output=True, timeout=60, check=False)
    assert f"Loaded kdat cache from {kdat.KDAT_FILE}" in log.read_text()
    # Nothing of the tmpfs the cache was made on is left in our mount namespace.
    with open("/proc/self/mountinfo") as f:
        assert not [line for line in f if line.split()[4] == "/run" and " tmpfs " in line]


def test_opting_out_removes_it(fresh_cache, monkeypatch):
    criu = fresh_cache
    made = kdat.ensure(criu) == "made"
    monkeypatch.setenv(kdat.OPT_OUT_ENV, "0")
    assert kdat.ensure(criu) == "disabled"
    assert not os.path.exists(kdat.STAMP_FILE)
    if made:  # (on a tmpfs /run the cache is CRIU's own and stays)
        assert not os.path.exists(kdat.KDAT_FILE)
