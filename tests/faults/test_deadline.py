"""A CRIU that never finishes (bug 4: a truncated pages image makes CRIU 4.2.1's restore loop) is ended."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from runtime.errors import RestoreError
from tests.faults.faultkit import check_invariants


def test_a_looping_restore_is_ended_at_its_deadline_and_the_checkpoint_stays(web, canary, tmp_path):
    images = Path(web.ctr.checkpoint().image_dir)
    pages = max(images.glob("pages-*.img"), key=lambda p: p.stat().st_size)
    shutil.copy2(pages, tmp_path / "saved")
    os.truncate(pages, pages.stat().st_size // 2)
    started = time.monotonic()
    with pytest.raises(RestoreError) as info:
        web.ctr.restore(verify=False, timeout=4)  # past the manifest: CRIU itself meets the damage
    took = time.monotonic() - started
    assert "4 s" in str(info.value) and "killed" in str(info.value), info.value
    assert took < 30, f"the deadline did not end the restore ({took:.0f} s)"
    assert web.ctr.refresh().status == "checkpointed" and web.ctr.ps() == []
    log = images / "restore.log"
    assert not log.exists() or log.stat().st_size < 2 << 30  # the loop's log was cut off with CRIU
    shutil.copy2(tmp_path / "saved", pages)
    assert check_invariants(web, canary) == "checkpointed"  # restored once repaired
