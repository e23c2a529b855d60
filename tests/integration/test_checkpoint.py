"""Container checkpoint/restore against real CRIU 4.2, real namespaces, a real busybox container.

The seed scenario: busybox httpd plus a counter loop in a pre-created
network namespace; checkpoint; the service goes silent and the processes
are gone; restore; the service answers at the same IP and the counter went
on from where it was.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import threading
import time

import pytest
from pyroute2 import IPRoute

from criu_rpc import CriuVersionError
from runtime.container import Container
from runtime.cr.meta import ImageDirError
from runtime.errors import CheckpointError, ContainerStateError, RestoreError
from runtime.linux import mounts
from runtime.net import netns as netns_mod
from runtime.testing.net import http_get, wait_tcp
from tests.conftest import require
from tests.integration.container_helpers import SERVICE, answers, cli, counter, echo, read_count, until

pytestmark = pytest.mark.usefixtures("container_prereqs")


def test_seed_scenario_service_answers_again_at_same_ip_counter_continues(service):
    ctr, net = service
    assert http_get(net.ip, 80) == (200, b"hello from the container\n")
    old_pids = ctr.ps()
    assert old_pids

    res = ctr.checkpoint()
    at_checkpoint = counter(ctr)
    assert ctr.status == "checkpointed"
    assert not answers(net.ip)
    assert all(not os.path.exists(f"/proc/{p}") or _is_zombie(p) for p in old_pids)
    assert os.path.isfile(os.path.join(res.image_dir, "inventory.img"))
    time.sleep(0.5)
    assert counter(ctr) == at_checkpoint  # nothing runs while checkpointed

    rres = ctr.restore()
    assert ctr.status == "running"
    assert rres.pid == ctr.state()["pid"]
    wait_tcp(net.ip, 80, timeout=10)
    assert http_get(net.ip, 80) == (200, b"hello from the container\n")
    after = until(lambda: counter(ctr) if counter(ctr) > at_checkpoint else 0, what="the counter to go on")
    # Continued from its checkpointed value: a restart would count from 1 again.
    assert at_checkpoint < after <= at_checkpoint + 40
    # The new monitor copies the output as it comes: wait for the line after the checkpoint.
    until(lambda: f"tick {at_checkpoint + 1}\n" in ctr.logs().decode(), what="the output after the restore")
    logs = ctr.logs().decode()
    assert f"tick {at_checkpoint}\n" in logs
    assert logs.count("tick 1\n") == 1  # one run, not a restart


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


def test_established_tcp_connection_survives(service):
    ctr, net = service
    wait_tcp(net.ip, 7000, timeout=10)
    with socket.create_connection((net.ip, 7000), timeout=5) as sock:
        assert echo(sock, b"before\n") == b"before\n"
        ctr.checkpoint(tcp_established=True)
        assert ctr.status == "checkpointed"
        ctr.restore(tcp_established=True)
        # The same connection carries a request and its reply.
        assert echo(sock, b"after restore\n") == b"after restore\n"
    wait_tcp(net.ip, 80)


def test_established_tcp_without_flag_is_refused_and_container_keeps_running(service):
    ctr, net = service
    wait_tcp(net.ip, 7000, timeout=10)
    with socket.create_connection((net.ip, 7000), timeout=5) as sock:
        assert echo(sock, b"ping\n") == b"ping\n"
        with pytest.raises(CheckpointError, match="--tcp-established") as info:
            ctr.checkpoint()
        assert info.value.log_path and os.path.exists(info.value.log_path)  # kept on failure
        # A failed checkpoint leaves it running and unfrozen.
        assert ctr.status == "running"
        before = counter(ctr)
        until(lambda: counter(ctr) > before + 2, what="the counter to keep going")
        assert echo(sock, b"still here\n") == b"still here\n"
    assert http_get(net.ip, 80)[0] == 200
    assert not os.path.exists(ctr.refresh().extra.get("checkpoint", {}).get("image_dir", "/nonexistent"))


def test_leave_running_then_restore_copy_after_delete(service, tmp_path, state_root, cleanup_ids):
    ctr, net = service
    images = str(tmp_path / "ckpt")
    # A client keeps asking while the checkpoint runs: every request is answered
    # (at worst delayed while the tree is frozen and the network locked).
    results: list[tuple[float, float, int | str]] = []
    stop = threading.Event()

    def ask() -> None:
        while not stop.is_set():
            t0 = time.monotonic()
            try:
                status = http_get(net.ip, 80, timeout=5)[0]
            except OSError as exc:
                status = repr(exc)
            results.append((t0, time.monotonic(), status))
            time.sleep(0.01)

    asker = threading.Thread(target=ask)
    asker.start()
    try:
        time.sleep(0.2)
        started = time.monotonic()
        # Under load: connections being served go into the images too.
        res = ctr.checkpoint(leave_running=True, tcp_established=True, image_path=images)
        ended = time.monotonic()
        # A request caught by the network lock waits for TCP's retransmission (~1 s): wait for
        # one that starts after the checkpoint to be answered, rather than a fixed time.
        until(lambda: any(t0 > ended for t0, _, _ in list(results)), timeout=15,
              what="a request after the checkpoint to be answered")
    finally:
        stop.set()
        asker.join()
    assert res.image_dir == images
    assert ctr.status == "running"
    assert all(status == 200 for _, _, status in results), results
    assert any(t0 < ended and t1 > started for t0, t1, _ in results), "no request overlapped the checkpoint"
    assert any(t0 > ended for t0, _, _ in results)
    assert http_get(net.ip, 80)[0] == 200
    before = counter(ctr)
    until(lambda: counter(ctr) > before + 2, what="the counter to keep going after the checkpoint")
    ctr.delete(force=True)
    assert not answers(net.ip)

    cleanup_ids.append("copy")
    rres = Container.restore_new("copy", images, root=state_root)
    copy = Container.load("copy", state_root)
    assert copy.status == "running" and rres.pid == copy.state()["pid"]
    wait_tcp(net.ip, 80, timeout=10)
    assert http_get(net.ip, 80) == (200, b"hello from the container\n")
    # The copy starts from the checkpoint's counter (its filesystem changes came along).
    assert until(lambda: counter(copy), what="the copy's counter") >= 1
    assert "tick 1\n" not in copy.logs().decode()


def test_restore_refusals(service, tmp_path):
    ctr, net = service
    with pytest.raises(ContainerStateError, match="is running"):
        ctr.restore()
    ctr.pause()
    try:
        with pytest.raises(ContainerStateError, match="is paused"):
            ctr.restore()
    finally:
        ctr.resume()
    empty = tmp_path / "empty"
    empty.mkdir()
    ctr.checkpoint()
    with pytest.raises(RestoreError, match=f"cannot restore container .{ctr.id}.: no checkpoint at {empty}"):
        ctr.restore(image_path=str(empty))
    assert ctr.status == "checkpointed"
    ctr.restore()
    wait_tcp(net.ip, 80)


def test_keep_print_stats_and_image_dir_mode(service, state_root):
    ctr, net = service
    r = cli(state_root, "checkpoint", "--keep", "--print-stats", ctr.id)
    assert r.returncode == 0, r.stderr
    stats = json.loads(r.stdout)
    crit = stats["container_statistics"][0]["criu_statistics"]
    for key in ("freezing_time", "frozen_time", "memdump_time", "memwrite_time", "pages_scanned",
                "pages_written"):
        assert key in crit
    assert crit["pages_written"] > 0 and crit["pages_scanned"] >= crit["pages_written"]
    assert 0 < crit["frozen_time"] < 30_000_000
    assert stats["criu_cr_checkpoint_duration"] >= crit["frozen_time"]
    images = ctr.refresh().extra["checkpoint"]["image_dir"]
    assert stat.S_IMODE(os.stat(images).st_mode) == 0o700
    assert os.path.exists(os.path.join(images, "dump.log"))  # --keep

    r = cli(state_root, "restore", "--print-stats", ctr.id)
    assert r.returncode == 0, r.stderr
    rcrit = json.loads(r.stdout)["container_statistics"][0]["criu_statistics"]
    for key in ("forking_time", "restore_time", "pages_restored", "pages_compared", "pages_skipped_cow"):
        assert key in rcrit
    assert rcrit["pages_restored"] > 0 and 0 < rcrit["restore_time"] < 30_000_000
    assert not os.path.exists(os.path.join(images, "restore.log"))  # no --keep: removed
    assert os.path.exists(os.path.join(images, "inventory.img"))  # images stay
    wait_tcp(net.ip, 80)
    r = cli(state_root, "list", "--json")
    assert [c["status"] for c in json.loads(r.stdout) if c["id"] == ctr.id] == ["running"]

    r = cli(state_root, "checkpoint", ctr.id)
    assert r.returncode == 0
    assert not os.path.exists(os.path.join(images, "dump.log"))  # no --keep: removed
    r = cli(state_root, "list")
    assert "checkpointed" in r.stdout
    r = cli(state_root, "restore", ctr.id)
    assert r.returncode == 0, r.stderr
    assert int(r.stdout) == ctr.state()["pid"]


def test_netns_deleted_between_checkpoint_and_restore_is_recreated(service):
    ctr, net = service
    with IPRoute(netns=net.path, flags=0) as ipr:
        mac = ipr.get_links(ifname=net.ns_ifname)[0].get_attr("IFLA_ADDRESS")
    ctr.checkpoint()
    netns_mod.teardown(netns=net.name, host_ifname=net.host_ifname)
    assert not netns_mod.netns_exists(net.name)
    ctr.restore()
    assert netns_mod.netns_exists(net.name)
    wait_tcp(net.ip, 80, timeout=10)
    assert http_get(net.ip, 80) == (200, b"hello from the container\n")
    with IPRoute(netns=net.path, flags=0) as ipr:
        assert ipr.get_links(ifname=net.ns_ifname)[0].get_attr("IFLA_ADDRESS") == mac


@pytest.fixture
def runc_service(tmp_path, busybox_bundle, netns):
    """A counter+httpd container created by runc (private runc root) in a pre-created netns."""
    import shutil
    import subprocess

    require(shutil.which("runc") is not None, "needs runc (apt-get install runc)")
    runc_root = str(tmp_path / "runc-root")
    cid = f"runc{os.getpid()}"
    bundle = busybox_bundle(["sh", "-c", SERVICE], files={"/www/index.html": "served by a runc container\n"},
                            netns_path=netns.path, cgroups_path=f"/criu-cr-runc-test/{cid}")
    base = ["runc", "--root", runc_root]
    log = tmp_path / "runc.log"
    # The container inherits runc's stdio: /dev/null, so it holds nothing of ours.
    r = subprocess.run([*base, "--log", str(log), "run", "-d", "--bundle", bundle, cid], timeout=30,
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert r.returncode == 0, log.read_text() if log.exists() else "runc failed"
    yield cid, runc_root, bundle, netns
    subprocess.run([*base, "delete", "-f", cid], timeout=30, capture_output=True)
    for h in os.scandir("/sys/fs/cgroup"):
        for d in (os.path.join(h.path, "criu-cr-runc-test", cid), os.path.join(h.path, "criu-cr-runc-test")):
            try:
                os.rmdir(d)
            except OSError:
                pass


def test_adopted_runc_container_checkpoint_and_restore(runc_service, state_root, cleanup_ids):
    cid, runc_root, bundle, net = runc_service
    cleanup_ids.append(cid)
    ctr = Container.adopt_runc(cid, runc_root=runc_root, root=state_root)
    wait_tcp(net.ip, 80, timeout=10)
    count_file = os.path.join(bundle, "rootfs", "tmp", "count")
    until(lambda: read_count(count_file) > 2, what="runc counter")
    ctr.checkpoint()
    assert ctr.status == "checkpointed"
    assert not answers(net.ip)
    at_checkpoint = read_count(count_file)
    ctr.restore()
    assert ctr.status == "running"
    wait_tcp(net.ip, 80, timeout=10)
    assert http_get(net.ip, 80) == (200, b"served by a runc container\n")
    after = until(lambda: (v := read_count(count_file)) > at_checkpoint and v, what="the counter to go on")
    assert at_checkpoint < after <= at_checkpoint + 40
    # CRIU's root was a temporary bind mount: nothing is left mounted on the host.
    assert not os.path.ismount(os.path.join(bundle, "rootfs"))
    assert not os.path.exists(os.path.join(ctr.directory, "criu-root"))


def test_failed_restore_keeps_the_checkpoint_and_leaves_nothing_behind(service, busybox_bundle, container):
    ctr, net = service
    res = ctr.checkpoint()
    images_before = sorted(os.listdir(res.image_dir))
    # Another container takes port 80 in the same netns: CRIU cannot rebind the listener.
    # (The netns is still locked by the checkpoint, so the blocker cannot be reached: watch its log.)
    blocker = container(busybox_bundle(["sh", "-c", "httpd -p 80 -h /www && echo listening; sleep 1000"],
                                       files={"/www/index.html": "blocker\n"}, netns_path=net.path))
    until(lambda: b"listening" in blocker.logs(), what="the blocker to listen")
    with pytest.raises(RestoreError) as info:
        ctr.restore()
    err = info.value
    assert "is kept" in str(err) and err.log_path and os.path.exists(err.log_path)
    assert any("Address already in use" in line or "bind" in line.lower() for line in err.log_errors), err.log_errors
    # Nothing restored is left running, the status and the images are as they were.
    assert ctr.status == "checkpointed"
    assert ctr.ps() == []
    assert sorted(n for n in os.listdir(res.image_dir) if n != "restore.log") == images_before
    # Once the port is free, the same checkpoint restores.
    blocker.delete(force=True)
    ctr.restore()
    wait_tcp(net.ip, 80, timeout=10)
    assert http_get(net.ip, 80) == (200, b"hello from the container\n")


@pytest.mark.parametrize("method", ["nftables", "iptables"])
def test_deleting_a_checkpointed_container_unlocks_its_netns(method, service, busybox_bundle, container):
    ctr, net = service
    ctr.checkpoint(network_lock=method)
    # While checkpointed, CRIU's lock drops the netns' traffic (no reset reaches peers).
    assert not answers(net.ip)
    ctr.delete()
    # No restore will come: the pre-created netns works again for the next container.
    container(busybox_bundle(["httpd", "-f", "-p", "80", "-h", "/www"], files={"/www/index.html": "next\n"},
                             netns_path=net.path))
    wait_tcp(net.ip, 80, timeout=10)
    assert http_get(net.ip, 80) == (200, b"next\n")


def test_restore_keeps_the_checkpoints_tcp_mode_or_closes_on_request(service, state_root):
    ctr, net = service
    wait_tcp(net.ip, 7000, timeout=10)
    with socket.create_connection((net.ip, 7000), timeout=5) as sock:
        assert echo(sock, b"one\n") == b"one\n"
        assert cli(state_root, "checkpoint", "--tcp-established", ctr.id).returncode == 0
        # Restored without a flag: what was checkpointed with its connections comes back with them.
        r = cli(state_root, "restore", ctr.id)
        assert r.returncode == 0, r.stderr
        assert echo(sock, b"two\n") == b"two\n"
        assert cli(state_root, "checkpoint", "--tcp-established", ctr.id).returncode == 0
        r = cli(state_root, "restore", "--tcp-close", ctr.id)
        assert r.returncode == 0, r.stderr
        # --tcp-close: the old connection is gone (reset or closed, not silently hanging).
        try:
            got = echo(sock, b"three\n")
        except socket.timeout:
            pytest.fail("the closed connection hung instead of being reset")
        except OSError:
            got = b""
        assert got == b""
    wait_tcp(net.ip, 7000, timeout=10)
    with socket.create_connection((net.ip, 7000), timeout=5) as sock:
        assert echo(sock, b"four\n") == b"four\n"


def test_too_old_criu_is_refused_before_anything_happens(service, tmp_path):
    ctr, net = service
    old = tmp_path / "criu"
    old.write_text("#!/bin/sh\n[ \"$1\" = --version ] && echo 'Version: 4.1' && exit 0\nexit 1\n")
    old.chmod(0o755)
    with pytest.raises(CriuVersionError, match="4.1.0 .* needs CRIU >= 4.2.*install-criu"):
        ctr.checkpoint(criu_path=str(old))
    assert ctr.status == "running"
    before = counter(ctr)
    until(lambda: counter(ctr) > before + 2, what="the counter to keep going")
    assert http_get(net.ip, 80)[0] == 200


def test_image_path_holding_other_files_is_refused_and_kept(service, tmp_path):
    ctr, net = service
    precious = tmp_path / "documents"
    precious.mkdir()
    (precious / "thesis.txt").write_text("years of work\n")
    with pytest.raises(ImageDirError, match="not a checkpoint"):
        ctr.checkpoint(image_path=str(precious))
    assert (precious / "thesis.txt").read_text() == "years of work\n"
    assert ctr.status == "running" and http_get(net.ip, 80)[0] == 200
    # An earlier checkpoint there is replaced by the new one.
    images = tmp_path / "images"
    ctr.checkpoint(image_path=str(images), leave_running=True)
    first = (images / "criu-cr.json").stat().st_mtime_ns
    ctr.checkpoint(image_path=str(images), leave_running=True)
    assert (images / "criu-cr.json").stat().st_mtime_ns != first
    assert not list(tmp_path.glob("images.*"))  # no temporary or old directories left


def test_delete_never_removes_through_a_leftover_mount(runc_service, state_root, cleanup_ids):
    cid, runc_root, bundle, net = runc_service
    cleanup_ids.append(cid)
    ctr = Container.adopt_runc(cid, runc_root=runc_root, root=state_root)
    # As if a restore had been interrupted while runc's rootfs was bound for CRIU.
    target = os.path.join(ctr.directory, "criu-root")
    os.mkdir(target)
    mounts.bind_mount(os.path.join(bundle, "rootfs"), target)
    ctr.delete(force=True)
    assert not os.path.exists(ctr.directory)
    assert os.path.isfile(os.path.join(bundle, "rootfs", "bin", "busybox"))  # runc's rootfs is intact


def test_cli_copy_into_a_new_container(service, tmp_path, state_root, cleanup_ids):
    ctr, net = service
    images = str(tmp_path / "copy-images")
    r = cli(state_root, "checkpoint", "--leave-running", "--image-path", images, ctr.id)
    assert r.returncode == 0 and r.stdout.strip() == images, r.stderr
    assert cli(state_root, "delete", "--force", ctr.id).returncode == 0
    cleanup_ids.append("clicopy")
    r = cli(state_root, "restore", "--image-path", images, "clicopy")
    assert r.returncode == 0, r.stderr
    assert int(r.stdout) == Container.load("clicopy", state_root).state()["pid"]
    wait_tcp(net.ip, 80, timeout=10)
    assert http_get(net.ip, 80) == (200, b"hello from the container\n")
    # A restore that cannot be done is one clear line, and an exit status.
    r = cli(state_root, "restore", "--image-path", images, "clicopy")
    assert r.returncode == 4 and "is running" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_bind_mount_from_the_host_is_restored(busybox_bundle, netns, container, tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    bundle = busybox_bundle(["sh", "-c", "i=0; while true; do i=$((i+1)); echo $i > /data/n.new; "
                                         "busybox mv /data/n.new /data/n; sleep 0.05; done"],
                            netns_path=netns.path)
    with open(os.path.join(bundle, "config.json")) as f:
        config = json.load(f)
    config["mounts"].append({"destination": "/data", "type": "bind", "source": str(shared),
                             "options": ["rbind", "rw"]})
    with open(os.path.join(bundle, "config.json"), "w") as f:
        json.dump(config, f)
    ctr = container(bundle)
    until(lambda: read_count(str(shared / "n")) > 2, what="the container to write into the bind mount")
    ctr.checkpoint()
    at_checkpoint = read_count(str(shared / "n"))
    ctr.restore()
    # The restored process writes on into the same host directory, from where it was.
    after = until(lambda: (v := read_count(str(shared / "n"))) > at_checkpoint and v, what="writes to go on")
    assert at_checkpoint < after <= at_checkpoint + 40


def test_joined_uts_and_ipc_namespaces_are_joined_again_by_the_restore(busybox_bundle, netns, container):
    """As crun: CRIU gets join_ns for a spec's uts/ipc namespace paths, so the restored tree is back in them."""
    import subprocess

    holder = subprocess.Popen(["unshare", "--uts", "--ipc", "sleep", "600"])
    try:
        uts, ipc = (f"/proc/{holder.pid}/ns/{t}" for t in ("uts", "ipc"))
        until(lambda: os.stat(uts).st_ino != os.stat("/proc/self/ns/uts").st_ino, what="the holder's namespaces")
        bundle = busybox_bundle(["sleep", "600"], netns_path=netns.path, hostname=None)
        with open(os.path.join(bundle, "config.json")) as f:
            config = json.load(f)
        for ns in config["linux"]["namespaces"]:
            if ns["type"] in ("uts", "ipc"):
                ns["path"] = uts if ns["type"] == "uts" else ipc
        with open(os.path.join(bundle, "config.json"), "w") as f:
            json.dump(config, f)
        ctr = container(bundle)
        ctr.checkpoint()
        ctr.restore()
        pid = ctr.state()["pid"]
        for path in (uts, ipc):
            kind = os.path.basename(path)
            assert os.stat(f"/proc/{pid}/ns/{kind}").st_ino == os.stat(path).st_ino, kind
    finally:
        holder.kill()
        holder.wait()
