"""runtime.net.netlock: which nftables objects are CRIU's network lock (rulesets captured from real checkpoints)."""

from __future__ import annotations

import json
from pathlib import Path

from runtime.net.netlock import criu_lock_objects

DATA = Path(__file__).resolve().parents[1] / "data"


def _ruleset(name: str) -> dict:
    return json.loads((DATA / name).read_text())


def test_iptables_method_lock_is_its_chain_and_the_jumps_to_it():
    cmds = criu_lock_objects(_ruleset("nft-ruleset-criu-iptables-lock.json"))
    jumps = [c for c in cmds if c.startswith("delete rule")]
    assert {c.split(" handle")[0] for c in jumps} == {
        "delete rule ip filter INPUT", "delete rule ip filter OUTPUT",
        "delete rule ip6 filter INPUT", "delete rule ip6 filter OUTPUT"}
    assert cmds.index("flush chain ip filter CRIU") > max(cmds.index(c) for c in jumps)
    assert "delete chain ip filter CRIU" in cmds and "delete chain ip6 filter CRIU" in cmds
    assert not any(c.startswith("delete table") for c in cmds)  # the filter tables are not CRIU's


def test_nftables_method_lock_is_its_table():
    cmds = criu_lock_objects(_ruleset("nft-ruleset-criu-nftables-lock.json"))
    assert len(cmds) == 1 and cmds[0].startswith("delete table inet CRIU-")


def test_nothing_to_release():
    assert criu_lock_objects({"nftables": [{"metainfo": {"version": "1.0.6"}},
                                           {"table": {"family": "inet", "name": "mine", "handle": 1}}]}) == []
    assert criu_lock_objects({}) == []
