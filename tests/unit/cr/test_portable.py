"""runtime.cr.portable's pure parts (spec.dump, config.dump, the bundle an import restores with)
and the CLI's export/import flags (podman's names)."""

from __future__ import annotations

import pytest

from runtime.cli import build_parser
from runtime.container.state import ContainerState
from runtime.cr import portable
from runtime.errors import RestoreError

RAW = {"ociVersion": "1.0.2", "root": {"path": "rootfs", "readonly": False},
       "linux": {"namespaces": [{"type": "pid"}, {"type": "network", "path": "/run/netns/a"}]},
       "annotations": {"keep": "me"}}


def test_spec_dump_makes_the_root_absolute_and_names_the_engine():
    spec = portable.spec_dump(RAW, "/b/web")
    assert spec["root"]["path"] == "/b/web/rootfs"
    assert spec["annotations"] == {"keep": "me", "io.container.manager": "criu-cr"}
    assert RAW["root"]["path"] == "rootfs"  # the bundle's own config is not changed


def test_config_dump_has_what_checkpointctl_reads():
    st = ContainerState(id="web", status="running", bundle="/b/web", rootfs="/r", created="2026-11-30T10:00:00Z")
    cfg = portable.config_dump(st, portable.spec_dump(RAW, "/b/web"), 0.0)
    assert cfg == {"id": "web", "name": "web", "rootfsImageName": "/b/web/rootfs", "runtime": "criu-cr",
                   "createdTime": "2026-11-30T10:00:00Z", "checkpointedTime": "1970-01-01T00:00:00Z"}


def test_bundle_spec_applies_rootfs_and_netns(tmp_path):
    spec = portable.spec_dump(RAW, "/nonexistent/bundle")
    with pytest.raises(RestoreError, match="--rootfs"):
        portable.bundle_spec(spec, rootfs=None, netns=None, container_id="web")
    out = portable.bundle_spec(spec, rootfs=str(tmp_path), netns="/run/netns/b", container_id="web")
    assert out["root"]["path"] == str(tmp_path)
    assert out["linux"]["namespaces"][1] == {"type": "network", "path": "/run/netns/b"}
    assert spec["linux"]["namespaces"][1]["path"] == "/run/netns/a"


def test_bundle_spec_refuses_netns_for_a_host_network_container(tmp_path):
    spec = {"root": {"path": str(tmp_path)}, "linux": {"namespaces": [{"type": "pid"}]}}
    with pytest.raises(RestoreError, match="host's network"):
        portable.bundle_spec(spec, rootfs=None, netns="/run/netns/b", container_id="web")


def test_cli_flags_follow_podman():
    p = build_parser()
    a = p.parse_args(["checkpoint", "-e", "/tmp/x.tar.zst", "web"])
    assert a.export == "/tmp/x.tar.zst" and a.compress == "zstd" and a.image_path is None
    a = p.parse_args(["checkpoint", "--export", "x", "-c", "gzip", "--image-path", "/d", "web"])
    assert (a.compress, a.image_path) == ("gzip", "/d")
    with pytest.raises(SystemExit):
        p.parse_args(["checkpoint", "-c", "bzip2", "web"])
    a = p.parse_args(["restore", "--import", "x.tar", "-n", "copy", "--netns", "/run/netns/b",
                      "--rootfs", "/r", "--import-limit", "2G"])
    assert (a.import_, a.name, a.netns, a.rootfs, a.import_limit, a.id) == \
        ("x.tar", "copy", "/run/netns/b", "/r", 2 << 30, None)
