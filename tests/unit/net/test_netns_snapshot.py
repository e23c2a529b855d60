"""runtime.net.snapshot: the network.status file format (pure JSON, no namespaces); netns names."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runtime.errors import NetnsError
from runtime.net.netns import VethPair, netns_path
from runtime.net.snapshot import InterfaceInfo, NetworkStatus, read_network_status, write_network_status

ETH0 = InterfaceInfo(name="eth0", kind="veth", mac="02:42:0a:e7:01:02", mtu=1500, up=True,
                     addresses=("10.231.1.2/24",), peer_ifname="vh-x", peer_mac="aa:bb:cc:dd:ee:ff",
                     peer_addresses=("10.231.1.1/24",))
LO = InterfaceInfo(name="lo", kind="loopback", mac="00:00:00:00:00:00", mtu=65536, up=True,
                   addresses=("127.0.0.1/8",))


def test_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "network.status"
    assert write_network_status(tmp_path, "/run/netns/x", [LO, ETH0]) == str(path)
    assert read_network_status(tmp_path) == NetworkStatus(netns="/run/netns/x", interfaces=(LO, ETH0))
    data = json.loads(path.read_text())
    assert data["version"] == 1 and data["interfaces"][1]["peer_ifname"] == "vh-x"
    assert not (tmp_path / "network.status.tmp").exists()


def test_reads_the_unversioned_file_of_older_checkpoints(tmp_path: Path) -> None:
    old = {"netns": "/run/netns/x", "interfaces": [LO.to_dict(), ETH0.to_dict()]}  # as checkpoint wrote it
    (tmp_path / "network.status").write_text(json.dumps(old, indent=2))
    assert read_network_status(tmp_path) == NetworkStatus(netns="/run/netns/x", interfaces=(LO, ETH0))


@pytest.mark.parametrize("content,words", [
    ("{", "cannot read"),
    (json.dumps({"version": 99, "interfaces": []}), "version 99"),
    (json.dumps({"version": 1}), "cannot read"),
    (json.dumps({"version": 1, "interfaces": [{"name": "x"}]}), "cannot read"),
])
def test_bad_files_name_the_file(tmp_path: Path, content: str, words: str) -> None:
    path = tmp_path / "network.status"
    path.write_text(content)
    with pytest.raises(NetnsError, match=words) as ei:
        read_network_status(tmp_path)
    assert ei.value.name == str(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_network_status(tmp_path)


def test_veth_pair_dict_round_trip() -> None:
    pair = VethPair(netns="n", host_ifname="vh", ns_ifname="eth0", host_addr="10.231.1.1/30",
                    ns_addr="10.231.1.2/30", host_mac="aa:bb:cc:dd:ee:ff", ns_mac="02:00:00:00:00:01")
    assert VethPair.from_dict(json.loads(json.dumps(pair.to_dict()))) == pair


@pytest.mark.parametrize("name", ["", "..", "x" * 256])
def test_netns_path_refuses_bad_names(name: str) -> None:
    with pytest.raises(NetnsError):
        netns_path(name)


def test_netns_path() -> None:
    assert netns_path("web") == "/run/netns/web"
    assert netns_path("/proc/1/ns/net") == "/proc/1/ns/net"
