"""The seed scenario, step by step (run by scripts/demo).

A busybox container serves HTTP and counts in a pre-created network
namespace; criu-cr checkpoints it over CRIU's RPC (no runc), the service
goes silent, criu-cr restores it, and it answers again at the same IP with
its counter continued from where it stopped. Everything is removed at the end.
"""

from __future__ import annotations

import os
import socket
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from runtime.container import Container  # noqa: E402
from runtime.net import netns  # noqa: E402
from runtime.testing.bundle import build_busybox_bundle  # noqa: E402
from runtime.testing.net import http_get, wait_tcp  # noqa: E402

NETNS = "criu-cr-demo"
HOST_IF = "ccrdemo0"
HOST_IP, CTR_IP = "10.231.250.1", "10.231.250.2"  # the tests' range, a block of its own
CTR_ID = "criu-cr-demo"
SERVICE = ("httpd -p 80 -h /www; "
           "i=0; while true; do i=$((i+1)); echo $i > /tmp/count; sleep 0.1; done")


def step(text: str) -> None:
    print(f"\n==> {text}", flush=True)


def count(ctr: Container) -> int:
    try:
        with open(os.path.join(ctr.refresh().rootfs, "tmp", "count")) as f:
            return int(f.read().strip() or 0)
    except (OSError, ValueError):
        return 0


def answers(ip: str) -> bool:
    try:
        with socket.create_connection((ip, 80), timeout=1):
            return True
    except OSError:
        return False


def main() -> int:
    root = tempfile.mkdtemp(prefix="criu-cr-demo-state-")
    work = tempfile.mkdtemp(prefix="criu-cr-demo-")
    ctr = None
    try:
        step(f"pre-create network namespace {NETNS}: veth {HOST_IF} {HOST_IP} <-> eth0 {CTR_IP}")
        netns.teardown(netns=NETNS, host_ifname=HOST_IF)  # a leftover of an interrupted demo
        netns.create_netns(NETNS)
        netns.setup_veth(netns=NETNS, host_ifname=HOST_IF, ns_ifname="eth0",
                         host_addr=f"{HOST_IP}/30", ns_addr=f"{CTR_IP}/30")

        step("start a busybox container in it (httpd + a counter), without runc")
        bundle = build_busybox_bundle(os.path.join(work, "bundle"), ["sh", "-c", SERVICE],
                                      netns_path=netns.netns_path(NETNS),
                                      files={"/www/index.html": "hello from inside the container\n"})
        ctr = Container.run(CTR_ID, bundle, root)
        wait_tcp(CTR_IP, 80, timeout=10)
        print(f"    container {CTR_ID} runs, init pid {ctr.init_pid}")
        status, body = http_get(CTR_IP, 80)
        print(f"    GET http://{CTR_IP}/ -> {status} {body.decode().strip()!r}")
        time.sleep(1)
        print(f"    counter: {count(ctr)}")

        step("checkpoint it (CRIU over RPC, external netns)")
        res = ctr.checkpoint()
        frozen = count(ctr)
        print(f"    images in {res.image_dir}, took {res.duration_us / 1e3:.0f} ms; status: {ctr.status}")
        print(f"    counter at checkpoint: {frozen}")

        step("the service is silent, its processes are gone")
        print(f"    {CTR_IP}:80 answers: {answers(CTR_IP)}; processes: {ctr.ps() or 'none'}")
        time.sleep(1)
        print(f"    counter one second later: {count(ctr)}")

        step("restore it into the same network namespace")
        rres = ctr.restore()
        print(f"    restored init pid {rres.pid}, took {rres.duration_us / 1e3:.0f} ms; status: {ctr.status}")

        step("it answers again at the same IP, and the counter went on")
        wait_tcp(CTR_IP, 80, timeout=10)
        status, body = http_get(CTR_IP, 80)
        print(f"    GET http://{CTR_IP}/ -> {status} {body.decode().strip()!r}")
        time.sleep(1)
        now = count(ctr)
        print(f"    counter: {now} (was {frozen} at checkpoint; a restart would be near 10)")
        ok = status == 200 and now > frozen
        print("\nDEMO OK" if ok else "\nDEMO FAILED", flush=True)
        return 0 if ok else 1
    finally:
        step("clean up")
        if ctr is not None:
            ctr.delete(force=True)
        netns.teardown(netns=NETNS, host_ifname=HOST_IF)
        import shutil

        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(root, ignore_errors=True)
        print("    container, netns, veth and state removed")


if __name__ == "__main__":
    sys.exit(main())
