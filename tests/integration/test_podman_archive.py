"""A podman 4.3 checkpoint archive restores under criu-cr (issue 9).

podman (Debian's, driving runc with the same CRIU; all of its state in the
test's tmp dir, see runtime.testing.podman) runs the busybox service
(httpd + counter) in a pre-created netns, checkpoints it with ``--export``
and removes its container. criu-cr restores the archive on a fresh state
root with ``--rootfs`` at the image's root filesystem: HTTP answers at the
same IP, the counter goes on, podman's generated files are there.
"""

from __future__ import annotations

import os

import pytest

from runtime.container import Container
from runtime.testing.bundle import build_busybox_bundle
from runtime.testing.net import http_get, wait_tcp
from runtime.testing.podman import Podman, podman_available
from tests.conftest import require, require_criu
from tests.integration.container_helpers import SERVICE, cli, count_in, until

pytestmark = pytest.mark.usefixtures("container_prereqs")

IMAGE = "localhost/criu-cr-test-bb:1"


@pytest.fixture
def podman(tmp_path_factory):
    """A podman whose storage, run state and runc state live in a tmp dir; everything it made removed after."""
    require(podman_available(), "needs podman (scripts/install-peers installs it)")
    base = tmp_path_factory.mktemp("podman")
    p = Podman(str(base / "state"), require_criu())
    with p:
        src = build_busybox_bundle(str(base / "bundle"), ["sh"], files={"/www/index.html": "hello from podman\n",
                                                                   "/www/old.html": "deleted before the checkpoint\n"})
        p.import_rootfs(os.path.join(src, "rootfs"), IMAGE)
        yield p


def _podman_archive(podman, net, tmp_path) -> tuple[str, int]:
    """podman runs the service in ``net``, exports a checkpoint and removes its container: (archive, last tick)."""
    podman.run_detached("web", IMAGE, "sh", "-c", SERVICE, netns_path=net.path)
    wait_tcp(net.ip, 80, timeout=10)
    until(lambda: "tick 5" in podman.run("logs", "web"), what="the counter to tick")
    podman.run("exec", "web", "busybox", "rm", "/www/old.html")  # podman lists it in deleted.files
    archive = str(tmp_path / "web.tar.zst")
    podman.run("container", "checkpoint", "--export", archive, "web")
    logs = podman.run("logs", "web").split()
    podman.run("rm", "-f", "web")
    return archive, max(int(w) for w in logs if w.isdigit())


def test_podman_archive_restores_with_rootfs(podman, netns, tmp_path, elsewhere):
    archive, at_checkpoint = _podman_archive(podman, netns, tmp_path)
    rootfs = podman.image_mount(IMAGE)
    res = cli(elsewhere, "restore", "--import", archive, "--rootfs", rootfs, "--name", "web")
    assert res.returncode == 0, res.stderr
    assert "no criu-cr.json" in res.stderr  # imported with a warning, like an old checkpoint
    ctr = Container.load("web", elsewhere)
    assert ctr.status == "running" and int(res.stdout) == ctr.init_pid
    wait_tcp(netns.ip, 80, timeout=10)
    assert http_get(netns.ip, 80) == (200, b"hello from podman\n")
    assert http_get(netns.ip, 80, "/old.html")[0] == 404  # still deleted
    after = until(lambda: count_in(elsewhere, "web") if count_in(elsewhere, "web") > at_checkpoint else 0,
                  what="the counter to go on")
    assert at_checkpoint < after <= at_checkpoint + 40  # continued, not restarted
    # podman's generated files, recreated: /etc/hosts names localhost, /run/.containerenv is there,
    # /dev/shm is a tmpfs.
    res = cli(elsewhere, "exec", "web", "cat", "/etc/hosts", "/run/.containerenv", "/proc/mounts")
    assert res.returncode == 0, res.stderr
    assert "localhost" in res.stdout
    assert [ln for ln in res.stdout.splitlines() if ln.split()[1:3] == ["/dev/shm", "tmpfs"]], res.stdout
    # Its output went to conmon's pipes; now to new ones, which criu-cr's log reads.
    until(lambda: f"tick {after + 2}" in cli(elsewhere, "logs", "web").stdout, what="the restored output")
    res = cli(elsewhere, "delete", "-f", "web")
    assert res.returncode == 0, res.stderr


def test_podman_archive_restores_into_another_netns(podman, netns_factory, tmp_path, elsewhere):
    first, other = netns_factory(), netns_factory()
    archive, at_checkpoint = _podman_archive(podman, first, tmp_path)
    res = cli(elsewhere, "restore", "--import", archive, "--rootfs", podman.image_mount(IMAGE),
              "--netns", other.path, "--name", "copy")
    assert res.returncode == 0, res.stderr
    wait_tcp(other.ip, 80, timeout=10)
    assert http_get(other.ip, 80) == (200, b"hello from podman\n")
    until(lambda: count_in(elsewhere, "copy") > at_checkpoint, what="the counter to go on")
