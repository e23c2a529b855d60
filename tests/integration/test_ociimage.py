"""Checkpoints as OCI images (issue 9, the Kubernetes part) -- against real CRIU, containers and skopeo.

A busybox service (httpd + counter) is checkpointed with ``--create-image
oci:DIR:TAG``, deleted, and restored with ``--import oci:DIR:TAG`` under a
state root that never saw it: it answers at the same IP and its counter
goes on. skopeo (what a registry push would use) reads the image and its
annotations; a copy restores from an oci-archive next to the original.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from runtime.container import Container
from runtime.cr import ociimage, ocilayout
from runtime.testing.net import http_get, wait_tcp
from tests.conftest import require
from tests.integration.container_helpers import cli, count_in, counter, until

pytestmark = pytest.mark.usefixtures("container_prereqs")


def test_image_checkpoint_delete_restore_on_a_fresh_root(own_net_service, tmp_path, state_root, elsewhere):
    ctr, net = own_net_service
    ref = f"oci:{tmp_path}/images:web-ck1"
    res = cli(state_root, "checkpoint", "--create-image", ref, ctr.id)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == ref
    at_checkpoint = counter(ctr)
    ctr.delete()

    res = cli(elsewhere, "restore", "--import", ref)
    assert res.returncode == 0, res.stderr
    moved = Container.load(ctr.id, elsewhere)  # the id came from the image's config.dump
    assert moved.status == "running" and int(res.stdout) == moved.init_pid
    wait_tcp(net.ip, 80, timeout=10)
    assert http_get(net.ip, 80) == (200, b"hello from the container\n")
    after = until(lambda: count_in(elsewhere, ctr.id) if count_in(elsewhere, ctr.id) > at_checkpoint else 0,
                  what="the counter to go on")
    assert at_checkpoint < after <= at_checkpoint + 40  # continued, not restarted
    assert not [n for n in os.listdir(elsewhere) if n.startswith(".import-")]
    moved.delete(force=True)
    assert not os.path.exists(os.path.join(elsewhere, ctr.id))


def test_skopeo_reads_the_image_and_its_annotations(own_net_service, tmp_path, state_root):
    skopeo = shutil.which("skopeo")
    require(skopeo is not None, "needs skopeo (Debian package; scripts/install installs it)")
    ctr, _ = own_net_service
    for ref in (f"oci:{tmp_path}/images:web-ck1", f"oci-archive:{tmp_path}/web.tar:web-ck1"):
        res = cli(state_root, "checkpoint", "--leave-running", "--create-image", ref, ctr.id)
        assert res.returncode == 0, res.stderr
        out = subprocess.run([skopeo, "inspect", ref], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        info = json.loads(out.stdout)
        assert info["Labels"]["io.kubernetes.cri-o.annotations.checkpoint.name"] == ctr.id
        # the manifest's annotations (what CRI-O reads) are in the raw manifest
        raw = subprocess.run([skopeo, "inspect", "--raw", ref], capture_output=True, text=True, timeout=60)
        assert raw.returncode == 0, raw.stderr
        annotations = json.loads(raw.stdout)["annotations"]
        assert annotations["io.kubernetes.cri-o.annotations.checkpoint.name"] == ctr.id
        assert annotations["org.criu.checkpoint.container.name"] == ctr.id
        assert annotations["org.criu.checkpoint.engine.name"] == "criu-cr"
        assert info["Os"] == "linux" and len(info["Layers"]) == 1
    # What skopeo writes (as after a trip through a registry), criu-cr reads: same manifest digest.
    copied = f"oci:{tmp_path}/copied:again"
    cp = subprocess.run([skopeo, "copy", "-q", ref, copied], capture_output=True, text=True, timeout=60)
    assert cp.returncode == 0, cp.stderr
    got = ociimage.read_image(ocilayout.parse_reference(copied), str(tmp_path / "unpacked"))
    assert got.config["id"] == ctr.id and "checkpoint/pages-1.img" in got.members


def test_a_copy_restored_from_an_oci_archive(own_net_service, tmp_path, state_root, elsewhere, netns_factory):
    ctr, _ = own_net_service
    ref = f"oci-archive:{tmp_path}/web.tar:web-ck1"
    res = cli(state_root, "checkpoint", "--leave-running", "-c", "gzip", "--create-image", ref, ctr.id)
    assert res.returncode == 0, res.stderr
    at_checkpoint = counter(ctr)
    net = netns_factory()
    res = cli(elsewhere, "restore", "--import", ref, "--name", "copy", "--netns", net.path)
    assert res.returncode == 0, res.stderr
    wait_tcp(net.ip, 80, timeout=10)
    assert http_get(net.ip, 80) == (200, b"hello from the container\n")
    until(lambda: count_in(elsewhere, "copy") > at_checkpoint, what="the copy's counter to go on")
    assert not [n for n in os.listdir(elsewhere) if n.startswith(".import-")]  # nor the layer's copy
