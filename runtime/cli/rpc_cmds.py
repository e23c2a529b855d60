"""CRIU commands: check, version, and a raw process-tree dump / restore-tree.

``check`` reports what works on this machine and why (``--json`` for
scripts) and exits non-zero when checkpointing cannot work here.  ``dump``
and ``restore-tree`` drive CRIU over RPC for one process tree, for
debugging; ``restore-tree`` prints the restored root pid.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from typing import Any

from runtime.cli.exitcodes import Exit
from runtime.cli.output import Result

__all__ = ["register", "Finding", "findings"]

ERROR, WARNING, INFO = "error", "warning", "info"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("check", help="what checkpoint/restore can do on this machine",
                              description="Report CRIU, kernel features, network locking and privileges; "
                                          "exit non-zero (6) when checkpointing cannot work here; "
                                          "--json: one JSON object.")
    p.set_defaults(func=_check, needs_root=False)  # it says itself what root would change

    p = subparsers.add_parser("version", help="criu-cr's and CRIU's versions")
    p.set_defaults(func=_version, needs_root=False)

    p = subparsers.add_parser("dump", help="dump a process tree (debugging)",
                              description="Dump the process tree rooted at PID into DIR over CRIU's RPC.")
    p.add_argument("--pid", "-t", type=int, required=True, help="root of the tree")
    p.add_argument("-D", "--images-dir", required=True, metavar="DIR", help="images directory (created 0700)")
    p.add_argument("--leave-running", action="store_true", help="keep the tree running after the dump")
    p.add_argument("--shell-job", action="store_true", help="the tree belongs to a shell session/tty")
    p.add_argument("--tcp-established", action="store_true", help="dump established TCP connections")
    p.add_argument("--network-lock", choices=("iptables", "nftables", "skip"), default=None,
                   help="how CRIU locks the network (CRIU's default: iptables)")
    p.add_argument("-v", dest="log_level", type=int, default=None, metavar="N", help="CRIU log level 0-4")
    p.set_defaults(func=_dump)

    p = subparsers.add_parser("restore-tree", help="restore a dumped process tree (debugging); prints its pid",
                              description="Restore the process tree in DIR over CRIU's RPC; print its root pid.")
    p.add_argument("-D", "--images-dir", required=True, metavar="DIR", help="images directory")
    p.add_argument("--shell-job", action="store_true", help="the tree belonged to a shell session/tty")
    p.add_argument("--tcp-established", action="store_true", help="restore established TCP connections")
    p.add_argument("-v", dest="log_level", type=int, default=None, metavar="N", help="CRIU log level 0-4")
    p.set_defaults(func=_restore_tree)


# ---------------------------------------------------------------------------
# check


@dataclass(frozen=True, slots=True, kw_only=True)
class Finding:
    """One fact about this machine and what it means for checkpointing."""

    severity: str  # ERROR: checkpointing cannot work; WARNING: part of it cannot; INFO
    finding: str
    meaning: str


def findings(facts: dict[str, Any]) -> list[Finding]:
    """Turn gathered facts (see ``_gather``) into findings; pure, for testing."""
    from criu_rpc.locate import version_gate

    out: list[Finding] = []
    if not facts["root"]:
        out.append(Finding(severity=ERROR, finding="not running as root",
                           meaning="nothing works: CRIU needs root (CAP_SYS_ADMIN, ptrace, namespaces)"))
    criu = facts["criu"]
    if criu.get("error"):
        out.append(Finding(severity=ERROR, finding=criu["error"], meaning="no checkpoint/restore without CRIU"))
        return out
    version = tuple(criu["version_numbers"])
    kernel = tuple(facts["kernel_numbers"])
    needed, why = version_gate(kernel)
    if version < needed:
        out.append(Finding(severity=ERROR, finding=f"CRIU {criu['version']} < {_dotted(needed)}",
                           meaning=f"too old for {why}; run scripts/install-criu"))
    if facts["criu_check"].get("error"):
        out.append(Finding(severity=ERROR, finding=f"criu check failed: {facts['criu_check']['error']}",
                           meaning="CRIU says this kernel cannot checkpoint/restore"))
    features = facts.get("features") or {}
    if features.get("mem_track") is False:
        out.append(Finding(severity=WARNING, finding="no memory dirty tracking (CONFIG_MEM_SOFT_DIRTY off)",
                           meaning="pre-copy (iterative pre-dump) unavailable; plain dumps work"))
    if features.get("lazy_pages") is False:
        out.append(Finding(severity=WARNING, finding="no non-cooperative userfaultfd",
                           meaning="post-copy (lazy pages) unavailable"))
    if features.get("pidfd_store") is False:
        out.append(Finding(severity=INFO, finding="no pidfd_open/pidfd_getfd",
                           meaning="pid reuse across pre-dumps is detected by start time only"))
    unmanaged = [h["label"] for h in (facts.get("cgroups") or {}).get("hierarchies", []) if not h["managed"]]
    if unmanaged:
        out.append(Finding(severity=INFO, finding="cgroup hierarchies criu-cr does not manage: " + ", ".join(unmanaged),
                           meaning="left out of checkpoints; a restored container is in the restoring "
                                   "process's cgroup there"))
    lock = facts["network_lock"]
    if not lock["iptables"] and not lock["nftables"]:
        out.append(Finding(severity=WARNING, finding="neither iptables-restore nor nftables locking usable",
                           meaning="dumps that lock a network namespace fail; install iptables or nftables"))
    elif not lock["iptables"]:
        out.append(Finding(severity=INFO, finding="iptables-restore not in PATH",
                           meaning="CRIU's default network lock fails; use network_lock=nftables"))
    return out


def _dotted(numbers: tuple[int, ...]) -> str:
    return ".".join(map(str, numbers))


def _gather(criu_arg: str | None) -> dict[str, Any]:
    from criu_rpc import CriuClient, CriuError, CriuOptions, locate
    from criu_rpc.locate import kernel_release

    facts: dict[str, Any] = {
        "root": os.geteuid() == 0,
        "kernel": os.uname().release,
        "kernel_numbers": list(kernel_release()),
        "criu": {},
        "criu_check": {},
        "features": None,
        "network_lock": {"iptables": shutil.which("iptables-restore") is not None, "nftables": False},
        "cgroups": _cgroup_facts(),
    }
    try:
        path = locate(criu_arg)
        client = CriuClient(path)
        version = client.version()
    except (CriuError, OSError) as exc:
        facts["criu"] = {"error": str(exc)}
        return facts
    facts["criu"] = {"path": path, "version": str(version), "version_numbers": list(version.numbers[:3])}
    with tempfile.TemporaryDirectory(prefix="criu-cr-check-") as tmp:
        try:
            client.check(CriuOptions(images_dir=tmp, log_file="check.log"))
            facts["criu_check"] = {"ok": True}
        except CriuError as exc:
            facts["criu_check"] = {"ok": False, "error": str(exc)}
    try:
        facts["features"] = {k: v for k, v in asdict(client.feature_check()).items()}
    except CriuError as exc:
        facts["features_error"] = str(exc)
    from runtime.cr import kdat
    from runtime.cr.lazy import page_server_problem
    from runtime.cr.meta import criu_facts, pick_network_lock

    facts["lazy_page_server"] = page_server_problem()
    # Before CRIU is asked once more below: that run then finds the cache (made now if missing).
    facts["kdat_cache"] = kdat.ensure(path)

    # Asked afresh (no cache): `check` reports what CRIU says now.
    facts["network_lock"]["nftables"] = bool(criu_facts(path).get("network_lock_nftables"))
    facts["network_lock"]["chosen"] = pick_network_lock(facts["network_lock"]["iptables"],
                                                        facts["network_lock"]["nftables"])
    return facts


def _cgroup_facts() -> dict[str, Any]:
    """The host's cgroup layout and hierarchies, each marked managed by criu-cr or not."""
    from runtime.errors import CgroupError
    from runtime.linux.cghier import host_hierarchies
    from runtime.linux.cgroups import detect_layout

    try:
        layout: str | None = detect_layout()
    except CgroupError:
        layout = None
    try:
        return {"layout": layout, "hierarchies": [h.to_dict() for h in host_hierarchies()]}
    except OSError as exc:
        return {"layout": layout, "hierarchies": [], "error": str(exc)}


def _check(args: argparse.Namespace) -> Result:
    facts = _gather(args.criu)
    found = findings(facts)
    ok = not any(f.severity == ERROR for f in found)
    from runtime.cli.migrate_cmds import migration_modes

    return Result(data={**facts, "findings": [asdict(f) for f in found], "migration": migration_modes(facts), "ok": ok},
                  text=_check_text, exit=Exit.OK if ok else Exit.ENVIRONMENT)


def _check_text(report: dict[str, Any]) -> str:
    criu = report["criu"]
    lines = [f"CRIU:        {criu.get('path', '-')} ({criu.get('version', 'unusable')})",
             f"kernel:      Linux {report['kernel']}, {'root' if report['root'] else 'NOT root'}"]
    if report["criu_check"]:
        lines.append(f"criu check:  {'ok' if report['criu_check']['ok'] else 'FAILED'}")
    if report["features"] is not None:
        lines.append("features:    " + ", ".join(f"{k}={_yes(v)}" for k, v in report["features"].items()))
    if "kdat_cache" in report:
        lines.append(f"kdat cache:  {report['kdat_cache']} ({_KDAT_MEANING.get(report['kdat_cache'], 'CRIU probes the kernel on every run')})")
    lock = report["network_lock"]
    usable = [m for m in ("iptables", "nftables") if lock[m]]
    chosen = lock.get("chosen")
    lines.append(f"net lock:    {', '.join(usable) if usable else 'none usable'}"
                 + (f"; containers are checkpointed with {chosen}" if chosen else ""))
    cgroups = report["cgroups"]
    hs = sorted(cgroups["hierarchies"], key=lambda h: h["hid"])
    lines.append(f"cgroups:     {cgroups['layout'] or 'none mounted'}; managed: "
                 + (", ".join(h["label"] for h in hs if h["managed"]) or "none"))
    for h in hs:
        if not h["managed"]:
            lines.append(f"             not managed: {h['label']} ({', '.join(h['mountpoints']) or 'not mounted'})")
    for m in report["migration"]:
        state = {True: "available", False: "NOT available", None: "unknown"}[m["available"]]
        lines.append(f"migration:   {m['mode']}: {state} ({m['why']})")
    lines += [f"{f['severity']}: {f['finding']} -> {f['meaning']}" for f in report["findings"]]
    lines.append("checkpoint/restore: " + ("works" if report["ok"] else "CANNOT work here"))
    return "\n".join(lines)


_KDAT_MEANING = {
    "present": "CRIU skips its ~25 ms kernel probing; remade after a reboot or a new CRIU; CRIU_CR_KDAT=0 opts out",
    "made": "made now; CRIU skips its ~25 ms kernel probing from here on; CRIU_CR_KDAT=0 opts out",
    "tmpfs": "/run is a tmpfs: CRIU keeps its own cache",
    "disabled": "CRIU_CR_KDAT=0: CRIU probes the kernel on every run",
}


def _yes(value: bool | None) -> str:
    return {True: "yes", False: "no", None: "unknown"}[value]


# ---------------------------------------------------------------------------
# version, dump, restore-tree


def _version(args: argparse.Namespace) -> Result:
    from criu_rpc import CriuClient, locate
    from runtime._version import __version__ as ours

    path = locate(args.criu)
    criu = CriuClient(path).version()
    data = {"version": ours, "criu": {"version": str(criu), "path": path}}
    return Result(data=data, text=f"criu-cr {ours}\nCRIU {criu} at {path}")


def _dump(args: argparse.Namespace) -> Result:
    from criu_rpc import CriuClient, CriuOptions

    os.makedirs(args.images_dir, mode=0o700, exist_ok=True)
    opts = CriuOptions(images_dir=args.images_dir, pid=args.pid, leave_running=args.leave_running,
                       shell_job=args.shell_job, tcp_established=args.tcp_established,
                       network_lock=args.network_lock, log_level=args.log_level)
    result = CriuClient(args.criu).dump(opts)
    state = "left running" if args.leave_running else "killed"
    data = {"pid": args.pid, "images_dir": result.images_dir, "log_path": result.log_path,
            "left_running": args.leave_running}
    return Result(data=data, text=f"dumped tree {args.pid} into {result.images_dir} ({state}); "
                                  f"log: {result.log_path}")


def _restore_tree(args: argparse.Namespace) -> Result:
    from criu_rpc import CriuClient, CriuOptions

    opts = CriuOptions(images_dir=args.images_dir, shell_job=args.shell_job,
                       tcp_established=args.tcp_established, log_level=args.log_level)
    result = CriuClient(args.criu).restore(opts)
    return Result(data={"pid": result.pid}, text=str(result.pid))
