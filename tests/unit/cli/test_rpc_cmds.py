"""`criu-cr check` findings (pure) and the CLI's argument wiring."""

from __future__ import annotations

from typing import Any

from runtime.cli import build_parser
from runtime.cli.rpc_cmds import ERROR, findings


def facts(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "root": True, "kernel_numbers": [6, 18, 44],
        "criu": {"path": "/x/criu", "version": "4.2.1", "version_numbers": [4, 2, 1]},
        "criu_check": {"ok": True},
        "features": {"mem_track": True, "lazy_pages": True, "pidfd_store": True},
        "network_lock": {"iptables": True, "nftables": True},
    }
    base.update(over)
    return base


def errors(found: list) -> list[str]:
    return [f.finding for f in found if f.severity == ERROR]


def test_all_good_has_no_findings() -> None:
    assert findings(facts()) == []


def test_not_root_means_nothing_works() -> None:
    found = findings(facts(root=False))
    assert errors(found) == ["not running as root"] and "nothing works" in found[0].meaning


def test_no_soft_dirty_means_no_pre_copy_but_dumps_work() -> None:
    found = findings(facts(features={"mem_track": False, "lazy_pages": True, "pidfd_store": True}))
    assert errors(found) == [] and "pre-copy" in found[0].meaning


def test_old_criu_on_new_kernel_cannot_dump_inet_sockets() -> None:
    old = {"path": "/usr/sbin/criu", "version": "4.1.1", "version_numbers": [4, 1, 1]}
    found = findings(facts(criu=old))
    assert len(errors(found)) == 1 and "INET sockets" in found[0].meaning
    assert "INET" not in " ".join(f.meaning for f in findings(facts(criu=old, kernel_numbers=[6, 1, 0])))
    assert errors(findings(facts(criu=old, kernel_numbers=[6, 1, 0])))  # still below MIN_VERSION


def test_missing_criu_and_failed_check_are_errors() -> None:
    assert errors(findings(facts(criu={"error": "CRIU not found"}))) == ["CRIU not found"]
    assert errors(findings(facts(criu_check={"ok": False, "error": "boom"})))


def test_network_lock_findings() -> None:
    none = findings(facts(network_lock={"iptables": False, "nftables": False}))
    assert "install iptables or nftables" in none[0].meaning
    nft_only = findings(facts(network_lock={"iptables": False, "nftables": True}))
    assert "nftables" in nft_only[0].meaning and not errors(nft_only)


def test_cli_wiring() -> None:
    parser = build_parser()
    args = parser.parse_args(["--criu", "/c", "dump", "--pid", "5", "-D", "/d", "--leave-running",
                              "--shell-job", "--tcp-established", "-v", "4"])
    assert (args.criu, args.pid, args.images_dir, args.leave_running, args.shell_job,
            args.tcp_established, args.log_level) == ("/c", 5, "/d", True, True, True, 4)
    args = parser.parse_args(["restore-tree", "-D", "/d", "--shell-job"])
    assert args.images_dir == "/d" and args.shell_job and callable(args.func)
    assert parser.parse_args(["check", "--json"]).format == "json"
    assert callable(parser.parse_args(["version"]).func)


def test_unmanaged_cgroup_hierarchies_are_named_but_harmless() -> None:
    hs = [{"hid": 0, "label": "v2", "managed": True}, {"hid": 13, "label": "name=x", "managed": False},
          {"hid": 11, "label": "net_cls,net_prio", "managed": False}]
    found = findings(facts(cgroups={"layout": "hybrid", "hierarchies": hs}))
    assert not errors(found)
    assert [f.finding for f in found] == ["cgroup hierarchies criu-cr does not manage: name=x, net_cls,net_prio"]
    assert "left out of checkpoints" in found[0].meaning
    assert findings(facts(cgroups={"layout": "v2", "hierarchies": hs[:1]})) == []
