"""runtime.cr.archive: the export layout round-trips, and every kind of hostile archive is refused.

The malicious archives are made by hand with tarfile in memory; each test
checks the refusal names the member and that nothing is left behind.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import stat
import tarfile

import pytest
import zstandard

from runtime.cr import archive
from runtime.cr.manifest import write_manifest
from runtime.errors import ArchiveError

SPEC = {"ociVersion": "1.0.2", "root": {"path": "/somewhere/rootfs"}, "annotations": {}}
CONFIG = {"id": "web", "name": "web", "runtime": "criu-cr", "createdTime": "2026-11-30T11:00:00Z"}


@pytest.fixture
def image_dir(tmp_path):
    d = tmp_path / "images"
    d.mkdir()
    (d / "inventory.img").write_bytes(b"\x01" * 100)
    (d / "pages-1.img").write_bytes(os.urandom(256 * 4096))
    (d / "criu-cr.json").write_text('{"version": 1}')
    (d / "network.status").write_text('{"netns": "/run/netns/x", "interfaces": []}')
    (d / "stats-dump").write_bytes(b"stats")
    (d / "dump.log").write_text("log\n")
    write_manifest(str(d))
    return d


def _extras():
    return {archive.SPEC_DUMP: json.dumps(SPEC).encode(), archive.CONFIG_DUMP: json.dumps(CONFIG).encode()}


@pytest.mark.parametrize("compression", archive.COMPRESSIONS)
def test_round_trip_keeps_every_file(tmp_path, image_dir, compression):
    log = tmp_path / "ctr.log"
    log.write_text("hello\n")
    out = tmp_path / "ck.tar"
    info = archive.write_archive(str(out), str(image_dir), extra=_extras(),
                                 extra_files={archive.CTR_LOG: str(log)}, compression=compression)
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600 and info.size == os.stat(out).st_size
    assert not [p for p in os.listdir(tmp_path) if ".tmp-" in p]
    with open(out, "rb") as f:
        assert archive.detect_compression(f.read(4)) == compression
    got = archive.read_archive(str(out), str(tmp_path / "in"))
    assert stat.S_IMODE(os.stat(got.directory).st_mode) == 0o700
    assert got.spec == SPEC and got.config == CONFIG
    for name in os.listdir(image_dir):
        assert (tmp_path / "in" / "checkpoint" / name).read_bytes() == (image_dir / name).read_bytes()
    assert (tmp_path / "in" / "ctr.log").read_text() == "hello\n"


def test_layout_is_podmans(tmp_path, image_dir):
    out = tmp_path / "ck.tar"
    archive.write_archive(str(out), str(image_dir), extra=_extras(), compression="none")
    with tarfile.open(out) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert members["checkpoint"].isdir()  # checkpointctl needs the directory entry
    for name in ("spec.dump", "config.dump", "network.status", "stats-dump", "criu-cr.json", "criu-cr.manifest",
                 "checkpoint/inventory.img", "checkpoint/pages-1.img", "checkpoint/dump.log"):
        assert members[name].isreg(), name


def test_failed_export_leaves_no_file(tmp_path, image_dir, monkeypatch):
    out = tmp_path / "ck.tar.zst"
    real = archive._add_file
    calls = []

    def failing(tar, path, name, src, *meter):
        calls.append(name)
        if len(calls) == 3:
            raise ArchiveError(path, name, "cannot read it (injected)")
        real(tar, path, name, src, *meter)

    monkeypatch.setattr(archive, "_add_file", failing)
    with pytest.raises(ArchiveError):
        archive.write_archive(str(out), str(image_dir), extra=_extras())
    with pytest.raises(ArchiveError):
        archive.write_archive(str(out), str(image_dir), extra=_extras(), compression="bogus")
    assert os.listdir(tmp_path) == ["images"]


# -- hostile archives ------------------------------------------------------------------

def _tar(members, compression="none"):
    """An archive from (TarInfo fields, data) pairs: a minimal valid one unless overridden."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for fields, data in members:
            ti = tarfile.TarInfo(fields.pop("name"))
            ti.mode = 0o600
            for k, v in fields.items():
                setattr(ti, k, v)
            if data is not None:
                ti.size = len(data)
                tar.addfile(ti, io.BytesIO(data))
            else:
                tar.addfile(ti)
    raw = buf.getvalue()
    if compression == "zstd":
        return zstandard.ZstdCompressor().compress(raw)
    if compression == "gzip":
        return gzip.compress(raw)
    return raw


def _dir(name="checkpoint"):
    return {"name": name, "type": tarfile.DIRTYPE, "mode": 0o700}, None


def _file(name, data=b"x"):
    return {"name": name}, data


def _refused(tmp_path, blob, member, words):
    path = tmp_path / "bad.tar"
    path.write_bytes(blob)
    before = sorted(os.listdir(tmp_path))
    target = tmp_path / "unpacked"
    with pytest.raises(ArchiveError) as ei:
        archive.read_archive(str(path), str(target))
    assert ei.value.member == member, ei.value
    assert words in ei.value.problem, ei.value
    assert not target.exists()
    assert sorted(os.listdir(tmp_path)) == before
    return ei.value


def test_absolute_path_refused(tmp_path):
    _refused(tmp_path, _tar([_dir(), _file("/etc/evil")]), "/etc/evil", "absolute")


def test_dotdot_refused(tmp_path):
    _refused(tmp_path, _tar([_dir(), _file("checkpoint/../../evil")]), "checkpoint/../../evil", "outside")


def test_symlink_leading_outside_refused(tmp_path):
    m = {"name": "checkpoint/pages-1.img", "type": tarfile.SYMTYPE, "linkname": "../../../etc/shadow"}
    _refused(tmp_path, _tar([_dir(), (m, None)]), "checkpoint/pages-1.img", "leading outside")


def test_hardlink_leading_outside_refused(tmp_path):
    m = {"name": "spec.dump", "type": tarfile.LNKTYPE, "linkname": "/etc/passwd"}
    _refused(tmp_path, _tar([_dir(), (m, None)]), "spec.dump", "leading outside")


def test_link_inside_refused_too(tmp_path):
    m = {"name": "checkpoint/pages-2.img", "type": tarfile.SYMTYPE, "linkname": "pages-1.img"}
    _refused(tmp_path, _tar([_dir(), _file("checkpoint/pages-1.img"), (m, None)]),
             "checkpoint/pages-2.img", "only files")


def test_device_node_refused(tmp_path):
    m = {"name": "checkpoint/tty.img", "type": tarfile.CHRTYPE, "devmajor": 1, "devminor": 3}
    _refused(tmp_path, _tar([_dir(), (m, None)]), "checkpoint/tty.img", "device node")


def test_fifo_refused(tmp_path):
    m = {"name": "checkpoint/fifo.img", "type": tarfile.FIFOTYPE}
    _refused(tmp_path, _tar([_dir(), (m, None)]), "checkpoint/fifo.img", "FIFO")


def test_setuid_file_refused(tmp_path):
    m = {"name": "checkpoint/pages-1.img", "mode": 0o4755}
    _refused(tmp_path, _tar([_dir(), (m, b"x")]), "checkpoint/pages-1.img", "setuid")


def test_duplicate_member_refused(tmp_path):
    _refused(tmp_path, _tar([_dir(), _file("checkpoint/a.img"), _file("checkpoint/a.img")]),
             "checkpoint/a.img", "twice")


def test_unexpected_member_refused(tmp_path):
    _refused(tmp_path, _tar([_dir(), _file("etc-passwd")]), "etc-passwd", "unexpected")


def test_unexpected_subdirectory_refused(tmp_path):
    _refused(tmp_path, _tar([_dir(), _dir("checkpoint/sub")]), "checkpoint/sub", "unexpected")


def test_limit_refuses_a_large_member(tmp_path):
    blob = _tar([_dir(), _file("checkpoint/pages-1.img", b"\0" * 10000)], "zstd")
    path = tmp_path / "bad.tar"
    path.write_bytes(blob)
    with pytest.raises(ArchiveError) as ei:
        archive.read_archive(str(path), str(tmp_path / "u"), limit=4096)
    assert ei.value.member == "checkpoint/pages-1.img" and "--import-limit" in str(ei.value)
    assert sorted(os.listdir(tmp_path)) == ["bad.tar"]
    # the same archive passes the size check once the user raises the limit (then fails as incomplete)
    with pytest.raises(ArchiveError) as ei:
        archive.read_archive(str(path), str(tmp_path / "u"), limit=1 << 20)
    assert "missing" in ei.value.problem


def test_limit_refuses_a_header_bomb(tmp_path):
    # Many empty members cost no declared size; the decompressed stream itself is capped.
    members = [_dir()] + [_file(f"checkpoint/x{i}.img", b"") for i in range(3000)]
    blob = _tar(members, "zstd")
    path = tmp_path / "bad.tar"
    path.write_bytes(blob)
    old = archive.HEADER_SLACK
    archive.HEADER_SLACK = 64 << 10
    try:
        with pytest.raises(ArchiveError) as ei:
            archive.read_archive(str(path), str(tmp_path / "u"), limit=0)
    finally:
        archive.HEADER_SLACK = old
    assert "limit" in ei.value.problem
    assert sorted(os.listdir(tmp_path)) == ["bad.tar"]


@pytest.mark.parametrize("compression", archive.COMPRESSIONS)
def test_truncated_archive_names_the_member(tmp_path, image_dir, compression):
    good = tmp_path / "good"
    archive.write_archive(str(good), str(image_dir), extra=_extras(), compression=compression)
    blob = good.read_bytes()
    good.unlink()
    # cut the file itself, in the middle of the (incompressible, so largest) pages
    err = _refused(tmp_path, blob[:len(blob) // 2], "checkpoint/pages-1.img", "truncated")
    assert "pages-1.img" in str(err)


def test_corrupt_file_named_by_the_manifest(tmp_path, image_dir):
    good = tmp_path / "good"
    archive.write_archive(str(good), str(image_dir), extra=_extras(), compression="none")
    blob = bytearray(good.read_bytes())
    good.unlink()
    with tarfile.open(fileobj=io.BytesIO(bytes(blob))) as tar:
        off = tar.getmember("checkpoint/pages-1.img").offset_data
    blob[off + 10] ^= 0xFF
    _refused(tmp_path, bytes(blob), "checkpoint/pages-1.img", "content")


def test_missing_member_refused(tmp_path):
    _refused(tmp_path, _tar([_dir(), _file("checkpoint/inventory.img")]), "spec.dump", "missing")


def test_not_an_archive(tmp_path):
    _refused(tmp_path, zstandard.ZstdCompressor().compress(b"garbage" * 1000), "", "corrupt")




# -- podman's archives --------------------------------------------------------------------

def _podman_members():
    """podman 4.3's layout, in its order: top-level files first, artifacts/, checkpoint/ last; no criu-cr files."""
    return [_file("spec.dump", json.dumps(SPEC).encode()), _file("config.dump", json.dumps(CONFIG).encode()),
            _file("network.status", b"null"), _file("stats-dump", b"stats"), _file("rootfs-diff.tar", b""),
            _file("devshm-checkpoint.tar", b""), _file("ctr.log", b"tick 1\n"), _dir("artifacts"),
            _dir(), _file("checkpoint/inventory.img"), _file("checkpoint/descriptors.json", b"[]")]


def test_podman_archive_read_with_a_warning(tmp_path, caplog):
    path = tmp_path / "podman.tar.zst"
    path.write_bytes(_tar(_podman_members(), compression="zstd"))
    got = archive.read_archive(str(path), str(tmp_path / "in"))
    assert got.foreign and not got.verified
    assert "no criu-cr.manifest" in caplog.text
    assert (tmp_path / "in" / "devshm-checkpoint.tar").exists()
    assert (tmp_path / "in" / "checkpoint" / "network.status").read_bytes() == b"null"
    assert os.path.isdir(tmp_path / "in" / "artifacts")


def test_podman_artifacts_files_accepted(tmp_path):
    path = tmp_path / "podman.tar"
    path.write_bytes(_tar([*_podman_members(), _file("artifacts/hosts", b"127.0.0.1 localhost\n")]))
    archive.read_archive(str(path), str(tmp_path / "in"))
    assert (tmp_path / "in" / "artifacts" / "hosts").read_bytes() == b"127.0.0.1 localhost\n"


@pytest.mark.parametrize("member, words", [
    (_dir("artifacts/sub"), "unexpected"),
    (_file("artifacts/sub/file"), "unexpected"),
    (({"name": "artifacts/link", "type": tarfile.SYMTYPE, "linkname": "/etc/passwd"}, None), "outside"),
    (({"name": "artifacts/suid", "mode": 0o4755}, b"x"), "setuid"),
    (_file("artifacts/.."), "outside"),
    (_dir("other"), "unexpected"),
])
def test_podman_members_still_refuse_hostile_ones(tmp_path, member, words):
    name = member[0]["name"]
    _refused(tmp_path, _tar([*_podman_members(), member]), name, words)


def test_artifacts_file_before_its_directory_refused(tmp_path):
    _refused(tmp_path, _tar([_file("artifacts/hosts"), *_podman_members()]), "artifacts/hosts", "before")
