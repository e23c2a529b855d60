"""The checkpoint manifest (runtime.cr.manifest) and the checks before a restore (runtime.cr.imagecheck)."""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

import pytest
import xxhash

from runtime.cr import imagehash
from runtime.cr import manifest as mf
from runtime.cr.imagecheck import require_checkpoint
from runtime.errors import CheckpointError, ImageIntegrityError, RestoreError

DATA = Path(__file__).resolve().parents[1] / "data"


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(imagehash, "CHUNK", 64 << 10)  # several chunks without writing 128 MiB per test


@pytest.fixture
def images(tmp_path: Path) -> Path:
    """A checkpoint-like directory: a real inventory, pages over several chunks, small images, logs."""
    d = tmp_path / "ck"
    d.mkdir()
    shutil.copy(DATA / "inventory.img", d / "inventory.img")
    (d / "pages-1.img").write_bytes(os.urandom(2 * imagehash.CHUNK + 12345))
    (d / "core-1.img").write_bytes(b"core" * 100)
    (d / "empty.img").write_bytes(b"")
    (d / "criu-cr.json").write_text('{"container_id": "web"}')
    (d / "dump.log").write_text("log\n")
    (d / "stats-dump").write_bytes(b"stats")
    return d


def damage(path: Path, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0x01]))


def test_manifest_lists_each_file_with_size_and_hash_but_not_logs(images: Path) -> None:
    m = mf.write_manifest(str(images))
    assert sorted(m.files) == ["core-1.img", "criu-cr.json", "empty.img", "inventory.img", "pages-1.img"]
    assert m.files["pages-1.img"].size == 2 * imagehash.CHUNK + 12345
    data = json.loads((images / mf.MANIFEST_FILE).read_text())
    assert data["version"] == mf.MANIFEST_VERSION and data["algorithm"] == mf.ALGORITHM
    assert data["files"]["core-1.img"]["size"] == 400
    assert stat.S_IMODE((images / mf.MANIFEST_FILE).stat().st_mode) == 0o600
    assert mf.verify_manifest(str(images)) == m


def test_file_hash_is_xxh3_of_its_chunk_hashes_whatever_the_threads(images: Path) -> None:
    data = (images / "pages-1.img").read_bytes()
    chunks = [xxhash.xxh3_128(data[o:o + imagehash.CHUNK]).digest() for o in range(0, len(data), imagehash.CHUNK)]
    expected = xxhash.xxh3_128(b"".join(chunks)).hexdigest()
    assert mf.file_digests(str(images), ["pages-1.img"], threads=1)["pages-1.img"] == expected
    assert mf.file_digests(str(images), ["pages-1.img"], threads=3)["pages-1.img"] == expected
    assert mf.file_digests(str(images), ["empty.img"])["empty.img"] == xxhash.xxh3_128(b"").hexdigest()


@pytest.mark.parametrize("where", ["first byte", "second chunk", "last byte"])
def test_a_flipped_byte_anywhere_is_named(images: Path, where: str) -> None:
    mf.write_manifest(str(images))
    offset = {"first byte": 0, "second chunk": imagehash.CHUNK + 7, "last byte": 2 * imagehash.CHUNK + 12344}[where]
    damage(images / "pages-1.img", offset)
    with pytest.raises(ImageIntegrityError) as err:
        mf.verify_manifest(str(images), container_id="web")
    assert err.value.file == "pages-1.img" and "hash differs" in err.value.reason
    assert isinstance(err.value, RestoreError) and err.value.container_id == "web"
    assert "pages-1.img" in str(err.value) and "--no-verify" in str(err.value)


def test_a_truncated_file_is_named_with_both_sizes(images: Path) -> None:
    mf.write_manifest(str(images))
    os.truncate(images / "pages-1.img", 4096)
    with pytest.raises(ImageIntegrityError) as err:
        mf.verify_manifest(str(images))
    assert err.value.file == "pages-1.img"
    assert "4096" in str(err.value) and str(2 * imagehash.CHUNK + 12345) in str(err.value) and "truncated" in str(err.value)
    assert str(err.value).startswith(f"the checkpoint at {images} is damaged")  # no container: no "cannot restore '?'"


def test_a_missing_file_is_named(images: Path) -> None:
    mf.write_manifest(str(images))
    (images / "core-1.img").unlink()
    with pytest.raises(ImageIntegrityError) as err:
        mf.verify_manifest(str(images))
    assert err.value.file == "core-1.img" and err.value.reason == "is missing"


def test_an_extra_image_file_is_named_but_logs_and_strays_are_not(images: Path) -> None:
    mf.write_manifest(str(images))
    for name in ("restore.log", "stats-restore", "notes.txt"):
        (images / name).write_text("x")
    (images / ".criu.cgyard.abc").mkdir()  # what a killed CRIU leaves: never descended into
    assert mf.verify_manifest(str(images)) is not None
    (images / "pages-2.img").write_bytes(b"\0" * 4096)
    with pytest.raises(ImageIntegrityError) as err:
        mf.verify_manifest(str(images))
    assert err.value.file == "pages-2.img" and "not written by the checkpoint" in err.value.reason


def test_a_file_replaced_by_a_symlink_is_refused(images: Path) -> None:
    mf.write_manifest(str(images))
    (images / "core-1.img").unlink()
    (images / "core-1.img").symlink_to(images / "criu-cr.json")
    with pytest.raises(ImageIntegrityError, match="core-1.img is not a regular file"):
        mf.verify_manifest(str(images))


@pytest.mark.parametrize("text", ["{", "[]", '{"version": 99}', '{"version": 1, "algorithm": "md5", "files": {}}',
                                  '{"version": 1, "algorithm": "xxh3-128-chunks-64MiB", "files": {"a": 1}}'])
def test_a_bad_manifest_is_refused_naming_it(images: Path, text: str) -> None:
    (images / mf.MANIFEST_FILE).write_text(text)
    with pytest.raises(ImageIntegrityError) as err:
        mf.verify_manifest(str(images))
    assert err.value.file == mf.MANIFEST_FILE


def test_no_manifest_is_no_check(images: Path) -> None:
    assert mf.read_manifest(str(images)) is None
    assert mf.verify_manifest(str(images)) is None


def test_compare_order_is_missing_then_size_then_extra() -> None:
    m = mf.Manifest(files={"a.img": mf.FileEntry(size=3, digest="x"), "b.img": mf.FileEntry(size=5, digest="y")})
    reg = stat.S_IFREG | 0o600
    assert mf.compare(m, {"a.img": (reg, 3), "b.img": (reg, 5)}) is None
    assert mf.compare(m, {"b.img": (reg, 1), "c.img": (reg, 1)}) == ("a.img", "is missing")
    assert mf.compare(m, {"a.img": (reg, 3), "b.img": (reg, 9), "c.img": (reg, 1)})[0] == "b.img"
    assert mf.compare(m, {"a.img": (reg, 3), "b.img": (reg, 5), "c.img": (reg, 1)})[0] == "c.img"
    assert mf.compare(m, {"a.img": (reg, 3), "b.img": (reg, 5), "rootfs-diff.tar": (reg, 1)})[0] == "rootfs-diff.tar"


def test_seal_fails_a_checkpoint_that_left_the_container_running(tmp_path: Path, caplog) -> None:
    missing = str(tmp_path / "gone")
    with pytest.raises(CheckpointError, match="criu-cr.manifest"):
        mf.seal(missing, container_id="web", strict=True)
    mf.seal(missing, container_id="web", strict=False)
    assert "restore cannot check" in caplog.text


# -- runtime.cr.imagecheck: before CRIU runs ------------------------------------------

def test_restore_of_a_path_that_does_not_exist_says_so(tmp_path: Path) -> None:
    with pytest.raises(RestoreError, match="image path .*/nope does not exist") as err:
        require_checkpoint("web", str(tmp_path / "nope"))
    assert err.value.container_id == "web"


def test_an_empty_directory_holds_no_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(RestoreError, match="no checkpoint at .*checkpoint the container first"):
        require_checkpoint("web", str(tmp_path))


def test_garbage_inventory_is_called_corrupt_not_missing(images: Path) -> None:
    (images / "inventory.img").write_bytes(b"garbage!")
    with pytest.raises(RestoreError) as err:
        require_checkpoint("web", str(images))
    assert "corrupt" in str(err.value) and "inventory.img" in str(err.value)
    assert "checkpoint the container first" not in str(err.value)


def test_garbage_inventory_is_named_by_the_manifest(images: Path) -> None:
    mf.write_manifest(str(images))
    (images / "inventory.img").write_bytes(b"garbage!")
    with pytest.raises(ImageIntegrityError) as err:
        require_checkpoint("web", str(images))
    assert err.value.file == "inventory.img"


def test_no_verify_skips_the_manifest_but_not_the_inventory(images: Path) -> None:
    mf.write_manifest(str(images))
    damage(images / "pages-1.img", 5)
    require_checkpoint("web", str(images), verify=False)
    (images / "inventory.img").unlink()
    with pytest.raises(RestoreError, match="inventory.img is missing"):
        require_checkpoint("web", str(images), verify=False)


def test_a_checkpoint_without_manifest_restores_with_a_warning(images: Path, caplog) -> None:
    require_checkpoint("web", str(images))
    assert "no criu-cr.manifest" in caplog.text


# -- a restore's check split: all but the pages before CRIU, the pages beside it ----------

def test_before_criu_everything_but_the_pages_hashes_is_checked(images: Path) -> None:
    mf.write_manifest(str(images))
    damage(images / "pages-1.img", imagehash.CHUNK + 7)  # same size: only its hash tells
    unhashed = require_checkpoint("web", str(images), defer_pages=True)
    assert unhashed is not None and sorted(unhashed.digests) == ["pages-1.img"]
    damage(images / "core-1.img", 3)
    with pytest.raises(ImageIntegrityError) as err:
        require_checkpoint("web", str(images), defer_pages=True)
    assert err.value.file == "core-1.img"


@pytest.mark.parametrize("damaged", ["truncated", "missing"])
def test_a_pages_image_of_another_size_or_missing_is_refused_before_criu(images: Path, damaged: str) -> None:
    mf.write_manifest(str(images))
    if damaged == "truncated":
        os.truncate(images / "pages-1.img", 4096)
    else:
        (images / "pages-1.img").unlink()
    with pytest.raises(ImageIntegrityError, match=damaged if damaged == "truncated" else "is missing") as err:
        mf.verify_but_pages(str(images), container_id="web")
    assert err.value.file == "pages-1.img"


def test_the_pages_check_on_its_thread_names_the_file_when_awaited(images: Path) -> None:
    mf.write_manifest(str(images))
    unhashed = mf.verify_but_pages(str(images), container_id="web")
    assert unhashed is not None
    unhashed.start().wait()  # intact: no verdict against it
    damage(images / "pages-1.img", 2 * imagehash.CHUNK + 12344)
    check = unhashed.start()
    with pytest.raises(ImageIntegrityError) as err:
        check.wait()
    assert err.value.file == "pages-1.img" and "hash differs" in err.value.reason
    assert err.value.container_id == "web" and err.value.image_dir == str(images)


def test_unhashed_pages_reads_the_manifest_only(images: Path) -> None:
    assert mf.unhashed_pages(str(images)) is None  # no manifest
    m = mf.write_manifest(str(images))
    unhashed = mf.unhashed_pages(str(images), container_id="copy")
    assert unhashed is not None and unhashed.container_id == "copy"
    assert unhashed.digests == {"pages-1.img": m.files["pages-1.img"].digest}


def test_no_verify_and_no_manifest_leave_nothing_to_hash_later(images: Path, caplog) -> None:
    assert require_checkpoint("web", str(images), defer_pages=True) is None
    assert "no criu-cr.manifest" in caplog.text
    mf.write_manifest(str(images))
    assert require_checkpoint("web", str(images), verify=False, defer_pages=True) is None


# -- pages hashed while they are written ----------------------------------------------

def grow(path: Path, data: bytes, pieces: int) -> None:
    step = max(1, len(data) // pieces)
    with open(path, "ab") as f:
        for off in range(0, len(data), step):
            f.write(data[off:off + step])
            f.flush()


def test_follower_gives_the_same_manifest_as_hashing_afterwards(tmp_path: Path) -> None:
    d = tmp_path / "ck"
    d.mkdir()
    followed = mf.follow(str(d))
    try:
        shutil.copy(DATA / "inventory.img", d / "inventory.img")
        grow(d / "pages-1.img", os.urandom(3 * imagehash.CHUNK + 999), pieces=37)  # across chunk edges
        grow(d / "pages-2.img", os.urandom(imagehash.CHUNK), pieces=4)  # exactly one chunk
        (d / "pages-3.img").write_bytes(b"")
        (d / "core-1.img").write_bytes(b"core")
    finally:
        followed.stop()
    assert mf.build_manifest(str(d), followed=followed) == mf.build_manifest(str(d))
    assert followed._streams == {}  # closed


def test_a_followed_file_that_was_replaced_is_hashed_again(tmp_path: Path) -> None:
    d = tmp_path / "ck"
    d.mkdir()
    followed = mf.follow(str(d))
    grow(d / "pages-1.img", os.urandom(2 * imagehash.CHUNK), pieces=8)
    until_followed(followed, "pages-1.img", 2 * imagehash.CHUNK)
    followed.stop()
    (d / "pages-1.img").unlink()
    (d / "pages-1.img").write_bytes(b"other")
    assert mf.build_manifest(str(d), followed=followed) == mf.build_manifest(str(d))


def test_seal_with_a_follower_writes_a_manifest_that_verifies(images: Path) -> None:
    followed = mf.follow(str(images))
    grow(images / "pages-2.img", os.urandom(imagehash.CHUNK + 5), pieces=3)
    followed.stop()
    mf.seal(str(images), container_id="web", strict=True, followed=followed)
    assert "pages-2.img" in mf.verify_manifest(str(images)).files


def until_followed(followed: mf.Follower, name: str, size: int) -> None:
    import time

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        stream = followed._streams.get(name)
        if stream is not None and stream.offset == size:
            return
        time.sleep(0.01)
    pytest.fail(f"the follower did not catch up with {name}")
