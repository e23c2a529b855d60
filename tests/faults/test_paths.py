"""Bad image paths and a full disk: clear refusals, nothing lost, nothing left."""

from __future__ import annotations

import os
import subprocess
import tempfile

import pytest

from runtime.cr.meta import ImageDirError
from runtime.errors import CheckpointError
from tests.faults.faultkit import check_invariants
from tests.integration.container_helpers import cli


def test_a_trailing_slash_on_the_image_path_keeps_the_newest_checkpoint(web, canary, tmp_path):
    images = tmp_path / "images"
    first = cli(web.root, "checkpoint", "-R", "--image-path", f"{images}/", web.id)
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == str(images)
    second = cli(web.root, "checkpoint", "--image-path", f"{images}/", web.id)
    assert second.returncode == 0, second.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images"]  # no .new-PID left beside it
    st = web.ctr.refresh()
    assert st.status == "checkpointed" and st.extra["checkpoint"]["image_dir"] == str(images)
    assert check_invariants(web, canary) == "checkpointed"


def test_an_image_path_that_is_a_file_is_refused_before_anything_is_frozen(web, canary, tmp_path):
    target = tmp_path / "notes.txt"
    target.write_text("mine\n")
    with pytest.raises(ImageDirError) as info:
        web.ctr.checkpoint(image_path=str(target))
    assert str(target) in str(info.value) and "not a directory" in str(info.value)
    assert target.read_text() == "mine\n"
    assert check_invariants(web, canary) == "running"


@pytest.fixture
def tiny_fs():
    """A 256 KiB tmpfs: far too small for a checkpoint."""
    d = tempfile.mkdtemp(prefix="ccrt-full-")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k,mode=0700", "tmpfs", d], check=True)
    try:
        yield d
    finally:
        subprocess.run(["umount", "-l", d], check=False)
        os.rmdir(d)


def test_a_full_disk_fails_the_checkpoint_and_the_container_runs_on(web, canary, tiny_fs):
    images = os.path.join(tiny_fs, "ck")
    with pytest.raises(CheckpointError) as info:
        web.ctr.checkpoint(image_path=images)
    err = info.value
    assert f"the filesystem of {tiny_fs} is full" in str(err), err
    # The failed attempt keeps only its log, never its partial pages.
    left = [name for _, _, names in os.walk(tiny_fs) for name in names]
    assert set(left) <= {"dump.log"}, left
    assert check_invariants(web, canary) == "running"


def test_a_copy_restored_beside_its_running_original_is_warned_about_and_refused(web, canary, tmp_path, caplog):
    from runtime.container import Container
    from runtime.container.state import StateStore
    from runtime.errors import RestoreError

    images = str(tmp_path / "copy")
    web.ctr.checkpoint(image_path=images, leave_running=True)
    with pytest.raises(RestoreError) as info:
        Container.restore_new("copy", images, root=web.root)
    assert any("same network namespace" in r.getMessage() and r.levelname == "WARNING" for r in caplog.records)
    assert "Address already in use" in str(info.value) + "\n".join(info.value.log_errors)
    assert not StateStore(web.root).exists("copy")  # nothing of the copy is left
    assert os.path.isfile(os.path.join(images, "inventory.img"))  # the copy's images are kept
    assert check_invariants(web, canary) == "running"
