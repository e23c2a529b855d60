"""SOURCE resolution: every form gives the same files, read in place (plain tar) or streamed (compressed)."""

from __future__ import annotations

import os
import shutil

import pytest

from criu_image import MissingImage
from runtime.container.state import ContainerState, StateStore
from runtime.cr import archive
from runtime.cr.ociimage import CHECKPOINT_MARKS, write_image
from runtime.cr.ocilayout import parse_reference
from runtime.errors import ArchiveError, InspectError
from runtime.inspect.sources import open_source

DATA = os.path.join(os.path.dirname(__file__), "..", "data")
PAGES = bytes(range(256)) * 4096 * 5  # 5 MiB: past the compression's chunk, so seeks cross chunks
SPEC = b'{"annotations": {"io.container.manager": "criu-cr"}}\n'
CONFIG = b'{"id": "web", "createdTime": "2026-11-30T10:00:00Z"}\n'


@pytest.fixture
def images(tmp_path):
    d = tmp_path / "images"
    d.mkdir()
    shutil.copy(os.path.join(DATA, "inventory.img"), d / "inventory.img")
    (d / "pages-1.img").write_bytes(PAGES)
    (d / "pstree.img").write_bytes(b"\x01\x02")
    (d / "network.status").write_bytes(b'{"version": 1, "netns": "/run/netns/x", "interfaces": []}')
    return str(d)


def _check(src, images_dir: str) -> None:
    assert set(src.names()) == set(os.listdir(images_dir))
    assert src.exists("pages-1.img") and not src.exists("nothing.img")
    assert src.size("pages-1.img") == len(PAGES)
    with src.open("pages-1.img") as f:
        f.seek(3 << 20)
        assert f.read(10) == PAGES[3 << 20:(3 << 20) + 10]
        f.seek(100)  # backwards: a streamed member starts over
        assert f.read(5) == PAGES[100:105]
        f.seek(len(PAGES) - (1 << 20) - 7)  # across the start of the tail a compressed archive keeps
        assert f.read(20) == PAGES[-(1 << 20) - 7:-(1 << 20) + 13]
        f.seek(-10, 2)
        assert f.read() == PAGES[-10:]
    with src.open("network.status") as f:  # a top-level member of an archive, an image file here
        assert b"/run/netns/x" in f.read()
    with pytest.raises(MissingImage):
        src.open("core-1.img")


def test_directory(images):
    with open_source(images) as src:
        assert (src.kind, src.streamed) == ("directory", False)
        _check(src, images)
        assert src.beside(archive.SPEC_DUMP) is None


@pytest.mark.parametrize("compression", ["none", "zstd", "gzip"])
def test_archive(images, tmp_path, compression):
    path = str(tmp_path / "ck.tar")
    archive.write_archive(path, images, extra={archive.SPEC_DUMP: SPEC, archive.CONFIG_DUMP: CONFIG},
                          compression=compression)
    with open_source(path) as src:
        assert src.kind == "archive" and src.streamed == (compression != "none")
        _check(src, images)
        assert src.beside(archive.CONFIG_DUMP) == CONFIG


def test_unpacked_archive(images, tmp_path):
    path = str(tmp_path / "ck.tar")
    archive.write_archive(path, images, extra={archive.SPEC_DUMP: SPEC, archive.CONFIG_DUMP: CONFIG})
    archive.read_archive(path, str(tmp_path / "unpacked"))
    with open_source(str(tmp_path / "unpacked")) as src:
        _check(src, images)
        assert src.beside(archive.SPEC_DUMP) == SPEC


@pytest.mark.parametrize("transport", ["oci", "oci-archive"])
def test_oci(images, tmp_path, transport):
    name = f"{transport}:{tmp_path / 'img'}:ck-1"
    write_image(parse_reference(name), images, annotations={CHECKPOINT_MARKS[0]: "web"},
                extra={archive.SPEC_DUMP: SPEC, archive.CONFIG_DUMP: CONFIG})
    with open_source(name) as src:
        assert src.kind == "oci"
        _check(src, images)


def test_oci_layer_digest_checked(images, tmp_path):
    name = f"oci:{tmp_path / 'img'}:ck-1"
    desc = write_image(parse_reference(name), images, annotations={CHECKPOINT_MARKS[0]: "web"},
                       extra={archive.SPEC_DUMP: SPEC, archive.CONFIG_DUMP: CONFIG})
    blobs = tmp_path / "img" / "blobs" / "sha256"
    layer = max(blobs.iterdir(), key=lambda p: p.stat().st_size)
    data = bytearray(layer.read_bytes())
    data[-1] ^= 0xFF  # the zstd frame's checksum, or what follows the tar
    layer.write_bytes(bytes(data))
    with pytest.raises(ArchiveError):
        open_source(name).close()
    assert desc.digest


def test_container_id(images, tmp_path):
    root = str(tmp_path / "root")
    store = StateStore(root)
    store.create_dir("web")
    store.write(ContainerState(id="web", status="checkpointed", bundle="/b",
                               extra={"checkpoint": {"image_dir": images}}))
    with open_source("web", root=root) as src:
        assert src.kind == "container"
        _check(src, images)
    store.create_dir("new")
    store.write(ContainerState(id="new", status="running", bundle="/b"))
    with pytest.raises(InspectError, match="has no checkpoint"):
        open_source("new", root=root)
    with pytest.raises(InspectError, match="is no image directory, archive"):
        open_source("nothing-here", root=root)


def test_not_a_checkpoint(tmp_path):
    with pytest.raises(InspectError, match="no inventory.img"):
        open_source(str(tmp_path))


def test_truncated_archive(images, tmp_path):
    path = tmp_path / "ck.tar"
    archive.write_archive(str(path), images, extra={archive.SPEC_DUMP: SPEC, archive.CONFIG_DUMP: CONFIG},
                          compression="none")
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    with pytest.raises(ArchiveError, match="truncated|corrupt|missing"):
        open_source(str(path))


def test_hostile_member_refused(tmp_path):
    import io
    import tarfile

    path = tmp_path / "evil.tar"
    with tarfile.open(path, "w") as tar:
        ti = tarfile.TarInfo("../etc/passwd")
        ti.size = 1
        tar.addfile(ti, io.BytesIO(b"x"))
    with pytest.raises(ArchiveError, match="outside the archive"):
        open_source(str(path))
