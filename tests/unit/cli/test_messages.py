"""Messages that must be true and useful: state hints, the root check, image ownership, bad metadata."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runtime.cli import ROOT_MESSAGE, has_sys_admin
from runtime.cr.meta import ImageDirError, ImageOwnerError, fresh_image_dir, read_meta
from runtime.errors import ContainerStateError, RestoreError, state_hint


def test_pause_and_checkpoint_hints_agree() -> None:
    # A paused container must be resumed before anything else; a checkpointed one restored.
    assert str(ContainerStateError("web", "paused", "checkpoint")).endswith("(resume it first)")
    assert str(ContainerStateError("web", "checkpointed", "pause")).endswith("(restore it first)")
    assert state_hint("paused", "exec in") == "resume it first"
    assert state_hint("paused", "pause") == "nothing to do"
    assert state_hint("running", "resume") == "it is not paused"
    assert "restore it first" in state_hint("checkpointed", "checkpoint")
    assert ContainerStateError("web", "running", "delete", "stop it first, or force").detail == \
        "stop it first, or force"  # an explicit detail wins


@pytest.mark.parametrize(("capeff", "admin"), [("000001ffffffffff", True), ("0000000000000000", False),
                                               ("0000000000200000", True), ("00000000001fffff", False)])
def test_root_check_reads_cap_sys_admin(capeff: str, admin: bool) -> None:
    assert has_sys_admin(f"Name:\tx\nCapInh:\t0\nCapEff:\t{capeff}\n") is admin
    assert "sudo" in ROOT_MESSAGE and "CAP_SYS_ADMIN" in ROOT_MESSAGE


def checkpoint_of(tmp_path: Path, owner: str) -> Path:
    d = tmp_path / "ck"
    d.mkdir()
    (d / "inventory.img").write_bytes(b"x")
    (d / "criu-cr.json").write_text(json.dumps({"container_id": owner}))
    return d


def test_another_containers_checkpoint_is_not_replaced(tmp_path: Path) -> None:
    d = checkpoint_of(tmp_path, "web")
    with pytest.raises(ImageOwnerError) as err:
        fresh_image_dir(str(d), container_id="big")
    msg = str(err.value)
    assert "'web'" in msg and "'big'" in msg and "another --image-path" in msg
    assert (err.value.owner, err.value.container_id) == ("web", "big")
    assert not list(tmp_path.glob("ck.new-*"))


def test_own_checkpoint_is_replaced(tmp_path: Path) -> None:
    d = checkpoint_of(tmp_path, "web")
    work = fresh_image_dir(str(d), container_id="web")
    assert work.startswith(str(d) + ".new-")


def test_a_checkpoint_of_unknown_owner_is_not_replaced(tmp_path: Path) -> None:
    d = checkpoint_of(tmp_path, "web")
    (d / "criu-cr.json").write_text("{garbage")
    with pytest.raises(ImageDirError, match="whose it is is unknown"):
        fresh_image_dir(str(d), container_id="web")


@pytest.mark.parametrize("text", ["{garbage", "[]", '{"version": 1}'])
def test_bad_metadata_names_the_container_being_restored(tmp_path: Path, text: str) -> None:
    d = checkpoint_of(tmp_path, "web")
    (d / "criu-cr.json").write_text(text)
    with pytest.raises(RestoreError) as err:
        read_meta(str(d), container_id="copy")
    assert err.value.container_id == "copy" and "criu-cr.json" in str(err.value) and "'?'" not in str(err.value)
