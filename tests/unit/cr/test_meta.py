"""runtime.cr.meta: criu-cr.json round trip and refusals, the image directory's life, stats, lock choice."""

from __future__ import annotations

import json
import os

import pytest

from runtime.cr.criu_options import MountRecord
from runtime.cr.layout import METADATA_FILE
from runtime.cr.meta import (META_VERSION, CheckpointMeta, ImageDirError, ImageOwnerError, fresh_image_dir,
                             install_image_dir, pick_network_lock, read_meta, remove_logs, stats_dict)
from runtime.errors import RestoreError


def meta(**kw) -> CheckpointMeta:
    base = dict(container_id="web", bundle="/b", rootfs="/s/web/rootfs",
                namespaces={"network": "/run/netns/n1"},
                mounts=(MountRecord(mountpoint="/data", kind="bind", detail="/srv/data"),),
                stdio={"stdout": "pipe:[11]"}, cgroups_path="/criu-cr/web", upper_dir="/s/web/overlay/upper",
                rootfs_diff=True, leave_running=True, tcp_established=True, network_lock="nftables",
                created=1700000000.5)
    base.update(kw)
    return CheckpointMeta(**base)


def test_metadata_round_trips_and_is_private(tmp_path):
    os.umask(0)
    try:
        meta().write(str(tmp_path))
    finally:
        os.umask(0o022)
    assert (tmp_path / METADATA_FILE).stat().st_mode & 0o777 == 0o600
    assert read_meta(str(tmp_path)) == meta()
    assert json.loads((tmp_path / METADATA_FILE).read_text())["version"] == META_VERSION


@pytest.mark.parametrize("content,says", [
    (None, "is missing: these images were not written by criu-cr"),
    ("{not json", "cannot read"),
    ("[1, 2]", "not a JSON object"),
    (json.dumps({"version": 99, "container_id": "web"}), "has version 99"),
    (json.dumps({"version": META_VERSION, "container_id": "web"}), "is not a valid criu-cr.json"),
])
def test_a_bad_metadata_file_names_the_container_being_restored(tmp_path, content, says):
    if content is not None:
        (tmp_path / METADATA_FILE).write_text(content)
    with pytest.raises(RestoreError) as info:
        read_meta(str(tmp_path), container_id="copy")
    assert says in str(info.value) and "'copy'" in str(info.value)


def test_a_fresh_image_dir_sits_beside_the_final_one_and_replaces_only_a_checkpoint(tmp_path):
    final = tmp_path / "ck"
    work = fresh_image_dir(str(final), container_id="web")
    assert os.path.dirname(work) == str(tmp_path) and os.listdir(work) == []
    assert os.stat(work).st_mode & 0o777 == 0o700
    meta().write(work)
    (tmp_path / "ck.new-x").mkdir()  # unrelated neighbour: untouched
    install_image_dir(work, str(final))
    assert read_meta(str(final)).container_id == "web" and not os.path.exists(work)
    # the same container's earlier checkpoint is replaced ...
    again = fresh_image_dir(str(final), container_id="web")
    install_image_dir(again, str(final))
    assert os.listdir(final) == [] and (tmp_path / "ck.new-x").is_dir()


def test_image_dirs_that_are_not_ours_to_replace_are_refused(tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    meta(container_id="big").write(str(other))
    with pytest.raises(ImageOwnerError, match="big"):
        fresh_image_dir(str(other), container_id="web")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("mine")
    with pytest.raises(ImageDirError, match="not a checkpoint"):
        fresh_image_dir(str(tmp_path / "notes"), container_id="web")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ImageDirError, match="not a directory"):
        fresh_image_dir(str(tmp_path / "file"), container_id="web")
    assert (tmp_path / "notes" / "todo.txt").read_text() == "mine"


def test_logs_go_and_missing_stats_read_as_none(tmp_path):
    for name in ("dump.log", "stats-dump", "inventory.img"):
        (tmp_path / name).write_text("x")
    remove_logs(str(tmp_path), "dump")
    assert sorted(os.listdir(tmp_path)) == ["inventory.img"]
    remove_logs(str(tmp_path), "dump")  # already gone: fine
    assert stats_dict(str(tmp_path), "dump") == {}


@pytest.mark.parametrize("iptables,nftables,chosen", [
    (True, True, "nftables"), (False, True, "nftables"), (True, False, "iptables"), (False, False, None)])
def test_the_network_lock_prefers_nftables(iptables, nftables, chosen):
    assert pick_network_lock(iptables, nftables) == chosen
