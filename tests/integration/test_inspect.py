"""``criu-cr inspect`` / ``inspect memory`` / ``diff`` on live checkpoints (issue 11).

A service container holding an established TCP connection is checkpointed
(left running) into a directory, an export archive and an OCI image; each is
inspected through the CLI and shows the connection's 4-tuple. A container
that computed a string into its memory has it found by ``inspect memory``;
two checkpoints of one container show the process that came in between.
podman's own archive is read too.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess

import pytest

from runtime.cr.options import CheckpointOptions
from tests.integration.container_helpers import cli, echo, until
from tests.integration.test_podman_archive import _podman_archive, podman  # noqa: F401 (a fixture)

pytestmark = pytest.mark.usefixtures("container_prereqs")

# The marker exists only in the shell's memory: its command line holds "$((6*7))", not "42".
MARKER_SCRIPT = ("M=criu-cr-marker-$((6*7))-in-memory; sleep 1000 & "
                 "while :; do if [ -e /tmp/go ]; then rm /tmp/go; sleep 999 & fi; sleep 0.1; done")


def _json(root: str, *args: str) -> dict:
    res = cli(root, "inspect", "--json", *args)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def _connection(doc: dict, port: int) -> dict:
    socks = [s for p in doc["processes"] for s in p["sockets"] or () if s["state"] == "ESTABLISHED"]
    return next(s for s in socks if s["remote"].endswith(f":{port}"))


def test_inspect_connection_in_directory_archive_and_image(service, state_root, tmp_path):
    ctr, net = service
    with socket.create_connection((net.ip, 7000), timeout=5) as conn:
        assert echo(conn, b"hello\n") == b"hello\n"
        client_ip, client_port = conn.getsockname()[:2]
        images = str(tmp_path / "ck")
        ctr.checkpoint(CheckpointOptions(image_path=images, leave_running=True, tcp_established=True,
                                         export=str(tmp_path / "ck.tar.zst")))
        ctr.checkpoint(CheckpointOptions(image_path=str(tmp_path / "ck2"), leave_running=True,
                                         tcp_established=True, create_image=f"oci:{tmp_path / 'oci'}:web-1"))
    for source in (images, str(tmp_path / "ck.tar.zst"), f"oci:{tmp_path / 'oci'}:web-1"):
        doc = _json(state_root, "--sockets", source)
        held = _connection(doc, client_port)
        assert (held["local"], held["remote"]) == (f"{net.ip}:7000", f"{client_ip}:{client_port}")
        assert held["proto"] == "tcp" and held["send_queue"] is not None
        assert doc["container"]["id"] == ctr.id and doc["checkpoint"]["tcp"] == "established"
        assert any(p["cmdline"][:1] == ["httpd"] for p in doc["processes"])
    text = cli(state_root, "inspect", "--all", images).stdout
    assert f"{net.ip}:7000 -> {client_ip}:{client_port}" in text
    assert "Network (network.status)" in text and f"{net.ip}/30" in text


def test_inspect_by_container_id_memory_search_and_diff(busybox_bundle, container, state_root, tmp_path):
    ctr = container(busybox_bundle(["sh", "-c", MARKER_SCRIPT]))
    until(lambda: len(ctr.ps()) >= 3, what="the container's processes")
    first = str(tmp_path / "first")
    ctr.checkpoint(CheckpointOptions(image_path=first, leave_running=True))
    go = os.path.join(ctr.refresh().rootfs, "tmp", "go")  # (refresh returns the container's state)
    with open(go, "w"):
        pass
    until(lambda: not os.path.exists(go), what="the new process")
    ctr.checkpoint()  # the newest checkpoint, in the container's directory: what `inspect ID` reads

    doc = _json(state_root, ctr.id)
    assert doc["source"]["kind"] == "container"
    assert any(p["cmdline"] == ["sleep", "999"] for p in doc["processes"])
    assert doc["network"] is None  # not asked for

    res = cli(state_root, "inspect", "memory", ctr.id, "--pid", "1", "--search", "criu-cr-marker-42-in-memory")
    assert res.returncode == 0, res.stderr
    assert "secrets" in res.stderr
    hits = res.stdout.splitlines()
    assert hits and all("[criu-cr-marker-42-in-memory]" in h for h in hits)
    addr = hits[0].split()[0]
    dump = cli(state_root, "inspect", "memory", ctr.id, "--pid", "1", "--dump", f"{addr}:32")
    assert dump.returncode == 0 and "|criu-cr-marker-4" in dump.stdout

    d = cli(state_root, "diff", "--json", first, ctr.id)
    assert d.returncode == 0, d.stderr
    came = [c for c in json.loads(d.stdout)["changes"] if c["section"] == "process" and c["change"] == "added"]
    assert any(c["after"].startswith("sleep 999") for c in came), came
    assert "+ process: sleep 999" in cli(state_root, "diff", first, ctr.id).stdout


def test_damaged_checkpoint_is_a_clean_error(busybox_bundle, container, state_root, tmp_path):
    ctr = container(busybox_bundle(["sh", "-c", "while :; do sleep 0.1; done"]))
    images = str(tmp_path / "ck")
    ctr.checkpoint(CheckpointOptions(image_path=images, leave_running=True))
    broken = str(tmp_path / "broken")
    shutil.copytree(images, broken)
    with open(os.path.join(broken, "pstree.img"), "r+b") as f:
        f.truncate(10)
    res = cli(state_root, "inspect", broken)
    assert res.returncode == 1
    assert res.stderr.startswith("criu-cr: error:") and "pstree.img" in res.stderr and "Traceback" not in res.stderr
    res = cli(state_root, "inspect", str(tmp_path / "nothing"))
    assert res.returncode == 1 and "criu-cr: error:" in res.stderr


def test_inspect_podman_archive(podman, netns, tmp_path, state_root):
    """podman's own export (no criu-cr.json, network.status null): engine, lock and TCP mode from CRIU's
    images, the same process tree checkpointctl shows."""
    archive, _ = _podman_archive(podman, netns, tmp_path)
    doc = _json(state_root, "--all", archive)
    assert doc["container"]["engine"] == "podman"
    assert doc["checkpoint"]["network_lock"] in ("iptables", "nftables")
    assert any("network.status is null" in n for n in doc["notes"])
    assert any(p["cmdline"][:1] == ["httpd"] for p in doc["processes"])
    assert doc["stats"]["frozen_time"] > 0
    peer = shutil.which("checkpointctl") or "/opt/criu-cr/peers/bin/checkpointctl"
    if os.path.exists(peer):
        shown = subprocess.run([peer, "inspect", "--ps-tree", archive], capture_output=True, text=True,
                               timeout=60, check=True).stdout
        for p in doc["processes"]:
            assert f"[{p['pid']}]" in shown
