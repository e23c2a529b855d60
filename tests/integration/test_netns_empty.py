"""A container with a private netns holding only lo: CRIU leaves the netns out (empty_ns, as runc
does) and the restore brings lo up again, so a service on 127.0.0.1 answers its own client."""

from __future__ import annotations

import json
import os

import pytest

from runtime.errors import CheckpointError
from tests.integration.container_helpers import counter, until

pytestmark = pytest.mark.usefixtures("container_prereqs")

# A server on 127.0.0.1 and a client beside it: the counter goes on only while lo carries them.
LOOPBACK = ("httpd -p 127.0.0.1:8080 -h /www; i=0; while true; do "
            "if busybox wget -q -O /tmp/page http://127.0.0.1:8080/; then i=$((i+1)); "
            "echo $i > /tmp/count.new; busybox mv /tmp/count.new /tmp/count; fi; sleep 0.05; done")


def _bundle(busybox_bundle, *extra_caps: str) -> str:
    bundle = busybox_bundle(["sh", "-c", LOOPBACK], files={"/www/index.html": "hi\n"},
                            applets=("sh", "httpd", "wget", "mv", "echo", "sleep", "busybox"))
    with open(os.path.join(bundle, "config.json")) as f:
        spec = json.load(f)
    for caps in spec["process"]["capabilities"].values():
        caps.extend(extra_caps)
    with open(os.path.join(bundle, "config.json"), "w") as f:
        json.dump(spec, f)
    return bundle


def _checkpointed(ctr) -> tuple[str, int, bool]:
    """Checkpoint once the client reaches the server: (image dir, counter, netns_empty recorded)."""
    until(lambda: counter(ctr) >= 3, what="the client to reach the server over lo")
    for _ in range(20):
        try:
            res = ctr.checkpoint()
            break
        except CheckpointError as exc:
            # caught while the client's connection was open: refused, the container runs on; try again
            assert "--tcp-established" in str(exc) and ctr.refresh().status == "running", exc
    else:
        raise AssertionError("every checkpoint met an open connection over lo")
    with open(os.path.join(res.image_dir, "criu-cr.json")) as f:
        return res.image_dir, counter(ctr), json.load(f)["netns_empty"]


def test_private_netns_left_out_and_lo_up_again(busybox_bundle, container):
    ctr = container(_bundle(busybox_bundle))
    image_dir, at, empty = _checkpointed(ctr)
    assert empty is True
    names = os.listdir(image_dir)
    assert not [n for n in names if n.startswith(("ifaddr-", "route-", "iptables-"))], names

    ctr.restore()
    after = until(lambda: counter(ctr) if counter(ctr) > at else 0, what="the counter to go on over lo")
    assert at < after <= at + 80  # continued, not restarted


def test_a_container_with_cap_net_admin_has_its_netns_dumped_whole(busybox_bundle, container):
    # it could have changed its netns (addresses, routes, rules): kept as it is
    ctr = container(_bundle(busybox_bundle, "CAP_NET_ADMIN"))
    image_dir, at, empty = _checkpointed(ctr)
    assert empty is False
    assert [n for n in os.listdir(image_dir) if n.startswith("ifaddr-")]
    ctr.restore()
    until(lambda: counter(ctr) > at, what="the counter to go on")
