"""A container with a private netns holding only lo: CRIU leaves the netns out (empty_ns, as runc
does) and the restore brings lo up again, so a service on 127.0.0.1 answers its own client."""

from __future__ import annotations

import json
import os

import pytest

from tests.integration.container_helpers import counter, until

pytestmark = pytest.mark.usefixtures("container_prereqs")

# A server on 127.0.0.1 and a client beside it: the counter goes on only while lo carries them.
LOOPBACK = ("httpd -p 127.0.0.1:8080 -h /www; i=0; while true; do "
            "if busybox wget -q -O /tmp/page http://127.0.0.1:8080/; then i=$((i+1)); "
            "echo $i > /tmp/count.new; busybox mv /tmp/count.new /tmp/count; fi; sleep 0.05; done")


def test_private_netns_left_out_and_lo_up_again(busybox_bundle, container):
    bundle = busybox_bundle(["sh", "-c", LOOPBACK], files={"/www/index.html": "hi\n"},
                            applets=("sh", "httpd", "wget", "mv", "echo", "sleep", "busybox"))
    ctr = container(bundle)
    until(lambda: counter(ctr) >= 3, what="the client to reach the server over lo")

    res = ctr.checkpoint()
    at = counter(ctr)
    with open(os.path.join(res.image_dir, "criu-cr.json")) as f:
        assert json.load(f)["netns_empty"] is True
    names = os.listdir(res.image_dir)
    assert not [n for n in names if n.startswith(("ifaddr-", "route-", "iptables-"))], names

    ctr.restore()
    after = until(lambda: counter(ctr) if counter(ctr) > at else 0, what="the counter to go on over lo")
    assert at < after <= at + 80  # continued, not restarted


def test_a_netns_with_more_than_lo_is_dumped_whole(busybox_bundle, container):
    # CAP_NET_ADMIN: the container could have changed its netns; it is kept as it is
    bundle = busybox_bundle(["sh", "-c", LOOPBACK], files={"/www/index.html": "hi\n"},
                            applets=("sh", "httpd", "wget", "mv", "echo", "sleep", "busybox"))
    with open(os.path.join(bundle, "config.json")) as f:
        spec = json.load(f)
    for caps in spec["process"]["capabilities"].values():
        caps.append("CAP_NET_ADMIN")
    with open(os.path.join(bundle, "config.json"), "w") as f:
        json.dump(spec, f)
    ctr = container(bundle)
    until(lambda: counter(ctr) >= 3, what="the client to reach the server over lo")
    res = ctr.checkpoint()
    at = counter(ctr)
    with open(os.path.join(res.image_dir, "criu-cr.json")) as f:
        assert json.load(f)["netns_empty"] is False
    assert [n for n in os.listdir(res.image_dir) if n.startswith("ifaddr-")]
    ctr.restore()
    until(lambda: counter(ctr) > at, what="the counter to go on")
