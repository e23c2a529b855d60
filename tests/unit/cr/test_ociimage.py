"""runtime.cr.ociimage / ocilayout: checkpoint images in the OCI image layout.

What is checked is what skopeo or CRI-O would read: index.json -> manifest
-> config and layer, each by size and sha256 digest; the media types; the
annotations; the layer's members (the export archive's, at its root). A
tampered blob is refused naming it, before anything is unpacked.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import stat
import tarfile

import pytest
import zstandard

from runtime.cr import archive, ociimage, ocilayout
from runtime.cr.manifest import write_manifest
from runtime.cr.ocilayout import ImageRef, parse_reference
from runtime.errors import ArchiveError

SPEC = {"ociVersion": "1.0.2", "root": {"path": "/somewhere/rootfs"}, "annotations": {}}
CONFIG = {"id": "web", "name": "web", "runtime": "criu-cr", "rootfsImageName": "localhost/bb:1",
          "createdTime": "2026-11-30T11:00:00Z"}
HOST = ociimage.HostFacts(arch="amd64", kernel="6.18.0", cgroup_version="v1", distribution_name="debian",
                          distribution_version="12")
MEDIA = {"zstd": "application/vnd.oci.image.layer.v1.tar+zstd", "gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
         "none": "application/vnd.oci.image.layer.v1.tar"}


@pytest.fixture
def image_dir(tmp_path):
    d = tmp_path / "images"
    d.mkdir()
    (d / "inventory.img").write_bytes(b"\x01" * 100)
    (d / "pages-1.img").write_bytes(os.urandom(64 * 4096))
    (d / "criu-cr.json").write_text('{"version": 1}')
    (d / "stats-dump").write_bytes(b"stats")
    write_manifest(str(d))
    return d


def _annotations():
    return ociimage.checkpoint_annotations(CONFIG, criu_version=(4, 2, 1), host=HOST, engine="criu-cr")


def _write(tmp_path, image_dir, ref_text, compression="zstd"):
    ref = parse_reference(ref_text.replace("TMP", str(tmp_path)))
    extra = {archive.SPEC_DUMP: json.dumps(SPEC).encode(), archive.CONFIG_DUMP: json.dumps(CONFIG).encode()}
    ociimage.write_image(ref, str(image_dir), annotations=_annotations(), extra=extra, compression=compression)
    return ref


def _blob(layout, digest):
    algo, hexd = digest.split(":")
    data = (layout / "blobs" / algo / hexd).read_bytes()
    assert hashlib.sha256(data).hexdigest() == hexd
    return data


def test_parse_reference():
    assert parse_reference("/tmp/ck.tar") is None
    assert parse_reference("oci:/x/dir:v1") == ImageRef(transport="oci", path="/x/dir", tag="v1")
    assert parse_reference("oci:/x/dir") == ImageRef(transport="oci", path="/x/dir", tag="")
    # containers-transports: the path ends at the first colon, the tag may hold more
    assert parse_reference("oci-archive:/x/a.tar:localhost/web:v2").tag == "localhost/web:v2"
    assert str(parse_reference("oci:/x/dir:v1")) == "oci:/x/dir:v1"
    for bad in ("oci:", "oci::v1", "oci:/x:-bad", "oci:/x:a b"):
        with pytest.raises(ValueError):
            parse_reference(bad)


def test_annotations_name_the_checkpoint_for_crio_and_checkpointctl():
    a = _annotations()
    assert a["io.kubernetes.cri-o.annotations.checkpoint.name"] == "web"
    assert a["io.kubernetes.cri-o.annotations.checkpoint.rootfsImageName"] == "localhost/bb:1"
    assert a["io.kubernetes.cri-o.annotations.checkpoint.criu.version"] == "40201"
    assert a["org.criu.checkpoint.container.name"] == "web"
    assert a["org.criu.checkpoint.engine.name"] == "criu-cr"
    assert a["org.criu.checkpoint.rootfsImageName"] == "localhost/bb:1"
    assert a["org.criu.checkpoint.host.arch"] == "amd64" and a["org.criu.checkpoint.criu.version"] == "40201"
    assert "io.kubernetes.cri-o.annotations.checkpoint.rootfsImageID" not in a  # empty: left out


@pytest.mark.parametrize("compression", ["zstd", "gzip", "none"])
def test_layout_written(tmp_path, image_dir, compression):
    _write(tmp_path, image_dir, "oci:TMP/img:v1", compression)
    layout = tmp_path / "img"
    assert json.loads((layout / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    index = json.loads((layout / "index.json").read_text())
    assert index["schemaVersion"] == 2 and index["mediaType"] == "application/vnd.oci.image.index.v1+json"
    [entry] = index["manifests"]
    assert entry["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert entry["annotations"] == {"org.opencontainers.image.ref.name": "v1"}
    raw = _blob(layout, entry["digest"])
    assert len(raw) == entry["size"]
    manifest = json.loads(raw)
    assert manifest["schemaVersion"] == 2 and manifest["annotations"] == _annotations()
    assert manifest["config"]["mediaType"] == "application/vnd.oci.image.config.v1+json"
    config = json.loads(_blob(layout, manifest["config"]["digest"]))
    assert config["os"] == "linux" and config["rootfs"]["type"] == "layers"
    assert config["config"]["Labels"] == _annotations()  # what `skopeo inspect` shows
    [layer] = manifest["layers"]
    assert layer["mediaType"] == MEDIA[compression]
    packed = _blob(layout, layer["digest"])
    assert len(packed) == layer["size"]
    plain = {"zstd": lambda b: zstandard.ZstdDecompressor().stream_reader(io.BytesIO(b)).read(),
             "gzip": gzip.decompress, "none": lambda b: b}[compression](packed)
    assert config["rootfs"]["diff_ids"] == [f"sha256:{hashlib.sha256(plain).hexdigest()}"]
    with tarfile.open(fileobj=io.BytesIO(plain)) as tar:
        names = set(tar.getnames())
    # the export archive's members, at the layer's root
    assert {"checkpoint", "checkpoint/inventory.img", "checkpoint/pages-1.img", "spec.dump", "config.dump",
            "criu-cr.json", "criu-cr.manifest", "stats-dump"} <= names
    blobs = layout / "blobs" / "sha256"
    assert sorted(os.listdir(blobs)) == sorted(d.split(":")[1] for d in (entry["digest"], layer["digest"],
                                                                         manifest["config"]["digest"]))
    for name in os.listdir(blobs):
        assert stat.S_IMODE(os.stat(blobs / name).st_mode) == 0o600  # the pages hold secrets


@pytest.mark.parametrize("transport", ["oci", "oci-archive"])
def test_round_trip(tmp_path, image_dir, transport):
    ref = _write(tmp_path, image_dir, f"{transport}:TMP/img:v1")
    got = ociimage.read_image(ref, str(tmp_path / "in"))
    assert got.spec == SPEC and got.config == CONFIG
    for name in os.listdir(image_dir):
        assert (tmp_path / "in" / "checkpoint" / name).read_bytes() == (image_dir / name).read_bytes()
    assert not [p for p in os.listdir(tmp_path) if ".tmp-" in p or p.endswith(".layer")]


def test_oci_archive_is_the_layout_as_a_tar(tmp_path, image_dir):
    _write(tmp_path, image_dir, "oci-archive:TMP/img.tar:v1")
    with tarfile.open(tmp_path / "img.tar") as tar:
        tar.extractall(tmp_path / "x", filter="data")
    index = json.loads((tmp_path / "x" / "index.json").read_text())
    manifest = json.loads(_blob(tmp_path / "x", index["manifests"][0]["digest"]))
    assert len(_blob(tmp_path / "x", manifest["layers"][0]["digest"])) == manifest["layers"][0]["size"]


def test_tag_selection(tmp_path, image_dir):
    _write(tmp_path, image_dir, "oci:TMP/img:one")
    (image_dir / "stats-dump").write_bytes(b"other")
    write_manifest(str(image_dir))
    _write(tmp_path, image_dir, "oci:TMP/img:two")
    index = json.loads((tmp_path / "img" / "index.json").read_text())
    assert sorted(m["annotations"]["org.opencontainers.image.ref.name"] for m in index["manifests"]) == ["one", "two"]
    ociimage.read_image(parse_reference(f"oci:{tmp_path}/img:one"), str(tmp_path / "a"))
    ociimage.read_image(parse_reference(f"oci:{tmp_path}/img:two"), str(tmp_path / "b"))
    assert (tmp_path / "a" / "checkpoint" / "stats-dump").read_bytes() == b"stats"
    assert (tmp_path / "b" / "checkpoint" / "stats-dump").read_bytes() == b"other"
    with pytest.raises(ArchiveError, match="no image tagged 'three'.*one, two") as exc:
        ociimage.read_image(parse_reference(f"oci:{tmp_path}/img:three"), str(tmp_path / "c"))
    assert exc.value.member == "index.json" and not (tmp_path / "c").exists()
    with pytest.raises(ArchiveError, match="2 images, and no tag"):
        ociimage.read_image(parse_reference(f"oci:{tmp_path}/img"), str(tmp_path / "c"))
    # writing a tag again moves it to the new image
    _write(tmp_path, image_dir, "oci:TMP/img:one")
    index = json.loads((tmp_path / "img" / "index.json").read_text())
    assert len(index["manifests"]) == 2


def _layer_path(layout):
    index = json.loads((layout / "index.json").read_text())
    manifest = json.loads(_blob(layout, index["manifests"][0]["digest"]))
    return layout / "blobs" / "sha256" / manifest["layers"][0]["digest"].split(":")[1]


def test_tampered_layer_refused_naming_the_blob(tmp_path, image_dir):
    ref = _write(tmp_path, image_dir, "oci:TMP/img:v1")
    layer = _layer_path(tmp_path / "img")
    data = bytearray(layer.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, other bytes
    layer.write_bytes(bytes(data))
    with pytest.raises(ArchiveError, match="does not match its digest") as exc:
        ociimage.read_image(ref, str(tmp_path / "in"))
    assert exc.value.member == f"blobs/sha256/{layer.name}"
    assert not (tmp_path / "in").exists()  # nothing unpacked is left


def test_a_layer_tampered_where_the_tar_reader_does_not_look_is_refused(tmp_path, image_dir):
    """Unpacked while its digest is checked: a change in the tar's end padding unpacks fine,
    yet the digest refuses it and what was unpacked goes."""
    ref = _write(tmp_path, image_dir, "oci:TMP/img:v1", compression="none")
    layer = _layer_path(tmp_path / "img")
    data = bytearray(layer.read_bytes())
    data[-1] ^= 0xFF
    layer.write_bytes(bytes(data))
    with pytest.raises(ArchiveError, match="does not match its digest") as exc:
        ociimage.read_image(ref, str(tmp_path / "in"))
    assert exc.value.member == f"blobs/sha256/{layer.name}"
    assert not (tmp_path / "in").exists()


def test_truncated_layer_refused_naming_the_blob(tmp_path, image_dir):
    ref = _write(tmp_path, image_dir, "oci-archive:TMP/img.tar:v1")
    # rewrite the archive with the layer cut short
    with tarfile.open(tmp_path / "img.tar") as tar:
        tar.extractall(tmp_path / "x", filter="data")
    layer = _layer_path(tmp_path / "x")
    layer.write_bytes(layer.read_bytes()[:-10])
    ref = parse_reference(f"oci:{tmp_path}/x:v1")
    with pytest.raises(ArchiveError, match="descriptor says") as exc:
        ociimage.read_image(ref, str(tmp_path / "in"))
    assert exc.value.member == f"blobs/sha256/{layer.name}"


def test_tampered_manifest_refused(tmp_path, image_dir):
    ref = _write(tmp_path, image_dir, "oci:TMP/img:v1")
    index = json.loads((tmp_path / "img" / "index.json").read_text())
    digest = index["manifests"][0]["digest"].split(":")[1]
    path = tmp_path / "img" / "blobs" / "sha256" / digest
    path.write_bytes(path.read_bytes().replace(b'"web"', b'"bad"'))
    with pytest.raises(ArchiveError, match="does not match its digest") as exc:
        ociimage.read_image(ref, str(tmp_path / "in"))
    assert exc.value.member == f"blobs/sha256/{digest}"


def test_a_hostile_layer_is_refused_by_the_archive_reader(tmp_path):
    """A layer with valid digests but a path escaping the target: archive.py's refusals apply."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        ti = tarfile.TarInfo("../evil")
        ti.size = 1
        tar.addfile(ti, io.BytesIO(b"x"))
    writer = ocilayout.open_writer(parse_reference(f"oci:{tmp_path}/img:v1"))
    layer = writer.put(MEDIA["none"], buf.getvalue())
    config = writer.put(ocilayout.MEDIA_CONFIG, b"{}")
    manifest = writer.put(ocilayout.MEDIA_MANIFEST, json.dumps(
        {"schemaVersion": 2, "config": config.to_dict(), "layers": [layer.to_dict()],
         "annotations": {"io.kubernetes.cri-o.annotations.checkpoint.name": "x"}}).encode())
    writer.finish(ocilayout.Descriptor(media_type=manifest.media_type, digest=manifest.digest,
                                       size=manifest.size, annotations={"org.opencontainers.image.ref.name": "v1"}))
    with pytest.raises(ArchiveError, match=r"\.\.") as exc:
        ociimage.read_image(parse_reference(f"oci:{tmp_path}/img:v1"), str(tmp_path / "in"))
    assert exc.value.member == "../evil" and not (tmp_path / "in").exists()
    assert not os.path.exists(tmp_path / "evil")


def test_not_a_checkpoint_image_refused(tmp_path):
    writer = ocilayout.open_writer(parse_reference(f"oci:{tmp_path}/img"))
    config = writer.put(ocilayout.MEDIA_CONFIG, b"{}")
    manifest = writer.put(ocilayout.MEDIA_MANIFEST, json.dumps(
        {"schemaVersion": 2, "config": config.to_dict(), "layers": []}).encode())
    writer.finish(manifest)
    with pytest.raises(ArchiveError, match="not a checkpoint image"):
        ociimage.read_image(parse_reference(f"oci:{tmp_path}/img"), str(tmp_path / "in"))


def test_refuses_to_write_into_a_directory_that_is_no_layout(tmp_path, image_dir):
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "precious").write_text("x")
    with pytest.raises(ArchiveError, match="not an OCI image layout"):
        _write(tmp_path, image_dir, "oci:TMP/img:v1")
    assert os.listdir(tmp_path / "img") == ["precious"]


def test_failed_oci_archive_leaves_no_file(tmp_path, image_dir, monkeypatch):
    def failing(*a, **k):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(archive, "_write_tar", failing)
    with pytest.raises(OSError):
        _write(tmp_path, image_dir, "oci-archive:TMP/img.tar:v1")
    assert not [p for p in os.listdir(tmp_path) if p.startswith("img.tar")]


def test_checkpoint_options_take_an_image_reference():
    from runtime.cr.options import CheckpointOptions

    opts = CheckpointOptions(create_image="oci:rel/dir:v1")
    assert opts.create_image == f"oci:{os.path.abspath('rel/dir')}:v1" and opts.portable
    assert not CheckpointOptions().portable
    for bad in ("/plain/path", "oci:", "docker://x"):
        with pytest.raises(ValueError):
            CheckpointOptions(create_image=bad)


@pytest.mark.parametrize("text", ["oci:/nonexistent/dir:v1", "oci-archive:/nonexistent/a.tar:v1"])
def test_a_missing_image_is_an_archive_error(tmp_path, text):
    with pytest.raises(ArchiveError, match="not a directory|cannot be read"):
        ociimage.read_image(parse_reference(text), str(tmp_path / "in"))
    assert not (tmp_path / "in").exists()
