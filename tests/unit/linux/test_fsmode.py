"""Files and directories criu-cr writes are 0600/0700 whatever the umask (runtime.linux.fsmode and its users)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from runtime.container.state import ContainerState, StateStore
from runtime.cr.manifest import write_manifest
from runtime.cr.meta import CheckpointMeta, fresh_image_dir
from runtime.linux.fsmode import makedirs_private, open_private
from runtime.linux.mounts import archive_upper
from runtime.net import snapshot


@pytest.fixture(params=[0o000, 0o777, 0o022])
def umask(request: pytest.FixtureRequest):
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def mode(path: Path | str) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_open_private_creates_and_truncates_0600(tmp_path: Path, umask: int) -> None:
    with open_private(tmp_path / "f", "w", encoding="utf-8") as f:
        f.write("secret")
    assert mode(tmp_path / "f") == 0o600
    os.chmod(tmp_path / "f", 0o666)
    with open_private(tmp_path / "f", "ab") as f:
        f.write(b"!")
    assert mode(tmp_path / "f") == 0o600 and (tmp_path / "f").read_text() == "secret!"
    with pytest.raises(ValueError):
        open_private(tmp_path / "f", "r")


def test_makedirs_private_sets_every_new_directory_and_leaves_old_ones(tmp_path: Path, umask: int) -> None:
    os.chmod(tmp_path, 0o755)
    makedirs_private(tmp_path / "a" / "b" / "c")
    assert [mode(tmp_path / p) for p in ("a", "a/b", "a/b/c")] == [0o700] * 3
    makedirs_private(tmp_path / "a" / "d", 0o711)
    assert mode(tmp_path / "a") == 0o700 and mode(tmp_path / "a" / "d") == 0o711
    makedirs_private(tmp_path / "e" / "f", 0o755)
    assert mode(tmp_path / "e") == 0o700 and mode(tmp_path / "e" / "f") == 0o755
    assert mode(tmp_path) == 0o755


def test_state_root_container_dir_and_state_file(tmp_path: Path, umask: int) -> None:
    store = StateStore(tmp_path / "root")
    store.create_dir("c1")
    store.write(ContainerState(id="c1", status="created", bundle="/b"))
    assert mode(store.root) == 0o711 and mode(store.dir("c1")) == 0o700
    assert mode(store.path("c1", "state.json")) == 0o600


def test_checkpoint_files(tmp_path: Path, umask: int) -> None:
    work = fresh_image_dir(str(tmp_path / "new" / "parent" / "ck"), container_id="c1")
    assert mode(work) == 0o700 and mode(tmp_path / "new") == 0o700
    CheckpointMeta(container_id="c1", bundle="/b", rootfs="/r").write(work)
    snapshot.write_network_status(work, "/run/netns/x", [])
    upper = tmp_path / "upper"
    upper.mkdir()
    (upper / "file").write_text("x")
    archive_upper(str(upper), os.path.join(work, "rootfs-diff.tar"))
    write_manifest(work)
    assert {n: mode(os.path.join(work, n)) for n in os.listdir(work)} == {
        n: 0o600 for n in ("criu-cr.json", "network.status", "rootfs-diff.tar", "criu-cr.manifest")}
