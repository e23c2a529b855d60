"""Checkpoint archives (issue 9): export, move, import -- against real CRIU, containers and checkpointctl.

A busybox service (httpd + counter, see test_checkpoint.SERVICE) is
exported, deleted, and restored from the archive under a state root that
never saw it: it answers at the same IP and its counter goes on. Two
copies restore side by side into their own netns. checkpointctl reads the
archive. Damaged and hostile archives leave nothing behind.
"""

from __future__ import annotations

import io
import os
import socket
import subprocess
import tarfile

import pytest

from runtime.container import Container
from runtime.testing.net import http_get, wait_tcp
from tests.conftest import require
from tests.integration.container_helpers import cli, counter, echo, read_count, until

pytestmark = pytest.mark.usefixtures("container_prereqs")


PEERS = os.environ.get("CRIU_CR_PEERS", "/opt/criu-cr/peers")


def _export(ctr: Container, tmp_path, state_root: str, *extra: str) -> str:
    path = str(tmp_path / "web.tar.zst")
    res = cli(state_root, "checkpoint", "--export", path, *extra, ctr.id)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == path
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"
    return path


def _count_in(root: str, cid: str) -> int:
    return read_count(os.path.join(Container.load(cid, root).refresh().rootfs, "tmp", "count"))


def test_export_delete_import_on_a_fresh_root(own_net_service, tmp_path, state_root, elsewhere):
    ctr, net = own_net_service
    archive = _export(ctr, tmp_path, state_root)
    at_checkpoint = counter(ctr)
    ctr.delete()
    assert not os.path.exists(os.path.join(state_root, ctr.id))

    res = cli(elsewhere, "restore", "--import", archive)
    assert res.returncode == 0, res.stderr
    moved = Container.load(ctr.id, elsewhere)  # the id came from the archive
    assert moved.status == "running" and int(res.stdout) == moved.init_pid
    wait_tcp(net.ip, 80, timeout=10)
    assert http_get(net.ip, 80) == (200, b"hello from the container\n")
    after = until(lambda: _count_in(elsewhere, ctr.id) if _count_in(elsewhere, ctr.id) > at_checkpoint else 0,
                  what="the counter to go on")
    assert at_checkpoint < after <= at_checkpoint + 40  # continued, not restarted
    # Nothing of the import is left beside the container; delete takes everything.
    assert not [n for n in os.listdir(elsewhere) if n.startswith(".import-")]
    assert os.path.isdir(os.path.join(elsewhere, ctr.id, "import", "checkpoint"))
    moved.delete(force=True)
    assert not os.path.exists(os.path.join(elsewhere, ctr.id))


def test_two_copies_side_by_side_with_name_and_netns(own_net_service, tmp_path, state_root, elsewhere, netns_factory):
    ctr, _ = own_net_service
    archive = _export(ctr, tmp_path, state_root, "--compress", "gzip")
    at_checkpoint = counter(ctr)
    nets = [netns_factory(), netns_factory()]
    for name, net in zip(("copy-a", "copy-b"), nets):
        res = cli(elsewhere, "restore", "--import", archive, "--name", name, "--netns", net.path)
        assert res.returncode == 0, res.stderr
    for name, net in zip(("copy-a", "copy-b"), nets):
        copy = Container.load(name, elsewhere)
        assert copy.status == "running"
        assert copy.state()["namespaces"]["network"] == net.path
        wait_tcp(net.ip, 80, timeout=10)
        assert http_get(net.ip, 80) == (200, b"hello from the container\n")
        until(lambda: _count_in(elsewhere, name) > at_checkpoint, what=f"{name}'s counter to go on")


def test_checkpointctl_reads_our_archive(own_net_service, tmp_path, state_root):
    tool = os.path.join(PEERS, "bin", "checkpointctl")
    require(os.access(tool, os.X_OK), f"needs checkpointctl at {tool} (scripts/install-peers)")
    ctr, _ = own_net_service
    archive = _export(ctr, tmp_path, state_root)
    show = subprocess.run([tool, "show", archive], capture_output=True, text=True, timeout=60)
    assert show.returncode == 0, show.stderr
    assert ctr.id in show.stdout and "criu-cr" in show.stdout
    inspect = subprocess.run([tool, "inspect", "--all", archive], capture_output=True, text=True, timeout=60)
    assert inspect.returncode == 0, inspect.stderr
    out = inspect.stdout
    assert f"ID: {ctr.id}" in out and "Runtime: criu-cr" in out
    assert "CRIU dump statistics" in out and "Open files" in out and ":80" in out  # stats, files, sockets
    assert "Destination: /proc" in out  # the mounts, from spec.dump
    # The process tree by name (--all shows command lines read from the pages instead;
    # checkpointctl 1.3 shows them blank for these CRIU 4.2 images).
    tree = subprocess.run([tool, "inspect", "--ps-tree", archive], capture_output=True, text=True, timeout=60)
    assert tree.returncode == 0, tree.stderr
    assert "[1]  sh" in tree.stdout and "httpd" in tree.stdout and "nc" in tree.stdout


def _leaves_nothing(root: str, archive: str, *words: str) -> None:
    before = sorted(os.listdir(root)) if os.path.isdir(root) else []
    res = cli(root, "restore", "--import", archive, "--name", "victim")
    assert res.returncode != 0
    for w in words:
        assert w in res.stderr, res.stderr
    assert (sorted(os.listdir(root)) if os.path.isdir(root) else []) == before
    assert not os.path.exists(os.path.join(root, "victim"))


def test_truncated_archive_leaves_nothing(own_net_service, tmp_path, state_root, elsewhere):
    ctr, _ = own_net_service
    archive = _export(ctr, tmp_path, state_root, "--compress", "none")
    with tarfile.open(archive) as tar:
        pages = max((m for m in tar.getmembers() if m.name.startswith("checkpoint/pages-")), key=lambda m: m.size)
    with open(archive, "rb") as f:
        data = f.read(pages.offset_data + pages.size // 2)
    cut = tmp_path / "cut.tar"
    cut.write_bytes(data)
    _leaves_nothing(elsewhere, str(cut), pages.name, "truncated")


def test_malicious_archive_leaves_nothing(tmp_path, elsewhere):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        d = tarfile.TarInfo("checkpoint")
        d.type, d.mode = tarfile.DIRTYPE, 0o700
        tar.addfile(d)
        evil = tarfile.TarInfo("checkpoint/../../../../tmp/criu-cr-evil")
        evil.size = 4
        tar.addfile(evil, io.BytesIO(b"evil"))
    bad = tmp_path / "evil.tar"
    bad.write_bytes(buf.getvalue())
    _leaves_nothing(elsewhere, str(bad), "outside")
    assert not os.path.exists("/tmp/criu-cr-evil")


def test_a_held_tcp_connection_goes_on_through_export_and_import(own_net_service, tmp_path, state_root, elsewhere):
    ctr, net = own_net_service
    wait_tcp(net.ip, 7000, timeout=10)
    with socket.create_connection((net.ip, 7000), timeout=5) as sock:
        assert echo(sock, b"before\n") == b"before\n"
        archive = _export(ctr, tmp_path, state_root, "--tcp-established")
        # The original stays checkpointed (its netns locked) while its archive is restored elsewhere.
        res = cli(elsewhere, "restore", "--import", archive, "--tcp-established")
        assert res.returncode == 0, res.stderr
        assert echo(sock, b"after import\n") == b"after import\n"


def test_rootfs_stands_in_for_a_root_filesystem_that_is_not_here(own_net_service, tmp_path, state_root, elsewhere):
    ctr, net = own_net_service
    archive = _export(ctr, tmp_path, state_root)
    lower = os.path.join(ctr.refresh().bundle, "rootfs")
    ctr.delete()
    moved_root = str(tmp_path / "image-root")
    os.rename(lower, moved_root)  # as on a machine where the image lives elsewhere
    res = cli(elsewhere, "restore", "--import", archive)
    assert res.returncode != 0 and "--rootfs" in res.stderr
    assert [n for n in os.listdir(elsewhere) if not n.startswith(".criu-features")] == []
    res = cli(elsewhere, "restore", "--import", archive, "--rootfs", moved_root)
    assert res.returncode == 0, res.stderr
    wait_tcp(net.ip, 80, timeout=10)
    assert http_get(net.ip, 80) == (200, b"hello from the container\n")
