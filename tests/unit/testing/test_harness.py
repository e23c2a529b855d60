"""runtime.testing: bundle builder, default spec, subnet allocation; CLI signal parsing; monitor status."""

from __future__ import annotations

import json
import os
import signal

import pytest

from runtime.cli.container_cmds import parse_signal
from runtime.linux.procfs import exit_status_of
from runtime.oci.spec import load_spec
from runtime.testing import build_busybox_bundle, default_spec
from runtime.testing.plugin import allocate_subnet
from tests.conftest import require


def test_default_spec_is_runc_like_and_parses(tmp_path):
    spec = default_spec()
    assert spec["process"]["args"] == ["sh"] and spec["process"]["terminal"] is True
    assert spec["root"] == {"path": "rootfs", "readonly": True}
    assert [ns["type"] for ns in spec["linux"]["namespaces"]] == ["pid", "network", "ipc", "uts", "mount"]
    spec["process"]["args"].append("changed")
    assert default_spec()["process"]["args"] == ["sh"]  # a fresh copy each time


def test_build_busybox_bundle(tmp_path):
    require(os.path.exists("/bin/busybox"), "needs /bin/busybox (apt-get install busybox-static)")
    bundle = build_busybox_bundle(str(tmp_path / "b"), ["httpd", "-f"], applets=("sh", "httpd"),
                                  netns_path="/run/netns/x", cgroups_path="/criu-cr/x", hostname="h",
                                  memory_limit=1 << 26, pids_limit=20, files={"/www/index.html": "hi"})
    rootfs = os.path.join(bundle, "rootfs")
    assert os.readlink(os.path.join(rootfs, "bin", "httpd")) == "busybox"
    assert open(os.path.join(rootfs, "www", "index.html")).read() == "hi"
    config = json.load(open(os.path.join(bundle, "config.json")))
    assert config["process"]["args"] == ["httpd", "-f"] and config["process"]["terminal"] is False
    assert {"type": "network", "path": "/run/netns/x"} in config["linux"]["namespaces"]
    assert config["linux"]["cgroupsPath"] == "/criu-cr/x"
    assert config["linux"]["resources"]["memory"] == {"limit": 1 << 26}
    config["linux"]["namespaces"] = [ns for ns in config["linux"]["namespaces"] if ns["type"] != "network"]
    json.dump(config, open(os.path.join(bundle, "config.json"), "w"))
    spec = load_spec(bundle)
    assert spec.hostname == "h" and spec.resources.pids_limit == 20


def test_allocate_subnet_skips_used_addresses():
    assert str(allocate_subnet(["10.231.2.0/24"], set())) == "10.231.2.0/30"
    assert str(allocate_subnet(["10.231.2.0/24"], {"10.231.2.1"})) == "10.231.2.4/30"
    with pytest.raises(RuntimeError, match="no free"):
        allocate_subnet(["10.231.2.0/30"], {"10.231.2.2"})


def test_parse_signal():
    assert parse_signal("9") == 9
    assert parse_signal("KILL") == signal.SIGKILL
    assert parse_signal("sigterm") == signal.SIGTERM
    with pytest.raises(ValueError, match="unknown signal"):
        parse_signal("NOPE")


def test_exit_status_shell_convention():
    assert exit_status_of(3 << 8) == 3
    assert exit_status_of(signal.SIGKILL) == 137


def test_capability_masks():
    from runtime.linux import caps

    assert caps.CAPABILITIES["CAP_CHOWN"] == 0 and caps.CAPABILITIES["CAP_CHECKPOINT_RESTORE"] == 40
    assert caps.mask(["CAP_KILL", "CAP_NET_BIND_SERVICE"]) == (1 << 5) | (1 << 10)
    assert caps.unknown_names({"bounding": ["CAP_KILL", "CAP_NOPE"], "ambient": ["CAP_BOGUS"]}) == \
        ["CAP_BOGUS", "CAP_NOPE"]
