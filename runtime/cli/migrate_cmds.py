"""``receive`` and ``migrate``: stop-and-copy migration between two criu-cr over TCP (runtime.cr.migrate).

``receive --listen ADDR:PORT --token-file FILE [--once]`` prints
``listening on HOST:PORT`` (port 0 picks one), then one line per migration
(``received ID PID`` or ``refused/failed: why``). ``migrate --token-file
FILE [--pre-copy N] ID ADDR:PORT`` draws a progress line on a terminal (phase,
bytes, rate: ``migrate pages``, ``migrate images``, ``migrate restore``), prints
the container's pid on the destination and, on stderr, where the downtime went.
:func:`migration_modes` is what ``criu-cr check`` reports per mode.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

__all__ = ["register", "migration_modes"]

# The modes `criu-cr check` reports, and the CRIU feature each needs (None: a plain dump/restore).
MODES = (("stop-and-copy", None), ("lazy", "lazy_pages"), ("pre-copy", "mem_track"))


def migration_modes(facts: dict[str, Any]) -> list[dict[str, Any]]:
    """Each migration mode: available (True/False/None: unknown) and why, from `check`'s facts
    (CRIU's FEATURE_CHECK answer under ``features``). Pure."""
    features = facts.get("features")
    plain = bool(facts.get("criu_check", {}).get("ok"))
    out = []
    for mode, feature in MODES:
        if not plain:
            out.append({"mode": mode, "available": False, "why": "CRIU cannot checkpoint/restore here"})
        elif feature is None:
            out.append({"mode": mode, "available": True, "why": "needs only a dump and a restore"})
        elif features is None or features.get(feature) is None:
            out.append({"mode": mode, "available": None, "why": f"CRIU's FEATURE_CHECK did not answer {feature}"})
        elif features[feature] and mode == "lazy" and facts.get("lazy_page_server"):
            out.append({"mode": mode, "available": False, "why": f"FEATURE_CHECK {feature}: yes, but "
                        + str(facts["lazy_page_server"])})
        elif features[feature]:
            out.append({"mode": mode, "available": True, "why": f"FEATURE_CHECK {feature}: yes"})
        else:
            why = {"mem_track": "no soft-dirty bits (CONFIG_MEM_SOFT_DIRTY off): use --lazy",
                   "lazy_pages": "no non-cooperative userfaultfd"}[feature]
            out.append({"mode": mode, "available": False, "why": f"FEATURE_CHECK {feature}: no; {why}"})
    return out


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("receive", help="accept migrated containers (the destination of `migrate`)",
                              description="Accept stop-and-copy migrations over TCP and restore each "
                                          "container into this state root. The channel is authenticated "
                                          "but NOT encrypted: run it inside a VPN (WireGuard, IPsec) across untrusted networks.")
    p.add_argument("--listen", required=True, metavar="ADDR:PORT", help="address to listen on (port 0: any)")
    p.add_argument("--token-file", required=True, metavar="FILE", help="the shared token (both sides)")
    p.add_argument("--once", action="store_true", help="handle one migration, then exit (its status)")
    p.add_argument("--page-port", type=int, default=0, metavar="PORT",
                   help="port of the one-time page connection, on the same address (default: any; "
                        "give one when a firewall must let it through)")
    p.set_defaults(func=_receive)

    p = subparsers.add_parser("migrate", help="move a running container to a `criu-cr receive` (stop-and-copy)",
                              description="Checkpoint a running container, send it to `criu-cr receive` "
                                          "and delete it here once the destination runs it.")
    p.add_argument("--token-file", required=True, metavar="FILE", help="the shared token (both sides)")
    p.add_argument("-c", "--compress", choices=("zstd", "gzip", "none"), default="none",
                   help="compression of the stream (default none: fastest on a fast link)")
    p.add_argument("--tcp-established", action="store_true", help="checkpoint established TCP connections")
    p.add_argument("--lazy", action="store_true",
                   help="post-copy: the container runs on the destination while its memory still moves "
                        "(no way back once it runs there: docs/migration.md)")
    p.add_argument("--pre-copy", type=int, default=0, metavar="N",
                   help="up to N pre-dump iterations first (needs CRIU's memory tracking; refused before "
                        "anything is frozen where it is missing)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress line on a terminal")
    p.add_argument("id", help="container id")
    p.add_argument("address", metavar="ADDR:PORT", help="the receiver")
    p.set_defaults(func=_migrate)


def _receive(args: argparse.Namespace) -> int:
    from runtime.cr.migrate import Receiver, parse_address
    from runtime.cr.migrate_proto import read_token

    with Receiver(parse_address(args.listen), read_token(args.token_file), root=args.root,
                  criu_path=args.criu, page_port=args.page_port) as rx:
        print(f"listening on {rx.address[0]}:{rx.address[1]}", flush=True)
        while True:
            got = rx.serve_once()
            if got.ok:
                print(f"received {got.container_id} {got.pid}", flush=True)
            else:
                print(f"criu-cr: migration from {got.peer} failed: {got.error}", file=sys.stderr, flush=True)
            if args.once:
                return 0 if got.ok else 1


def _migrate(args: argparse.Namespace) -> int:
    from runtime.cr.migrate import migrate, parse_address
    from runtime.cr.migrate_proto import read_token

    if args.lazy:
        if args.pre_copy:
            raise SystemExit("criu-cr migrate: --lazy and --pre-copy exclude each other")
        res = migrate(args.id, parse_address(args.address), read_token(args.token_file), root=args.root,
                      criu_path=args.criu, compress=args.compress, tcp_established=args.tcp_established,
                      lazy=True)
        print(f"criu-cr: migrated {res.bytes} bytes of images; downtime {res.downtime_s:.3f}s (images "
              f"{res.images_s:.3f}s, destination restore {res.restore_s}s); last page arrived after "
              f"{res.pages_s:.3f}s", file=sys.stderr)
        print(res.pid)
        return 0
    report, line = _progress(args.quiet)
    try:
        res = migrate(args.id, parse_address(args.address), read_token(args.token_file), root=args.root,
                      criu_path=args.criu, compress=args.compress, tcp_established=args.tcp_established,
                      pre_copy=args.pre_copy, progress=report)
    finally:
        if line is not None:
            line.close()
    print(f"criu-cr: migrated {res.page_bytes} bytes of pages and {res.bytes} of the rest; downtime {res.downtime_s:.3f}s (checkpoint "
          f"{res.checkpoint_s:.3f}s, of it the rest sent and staged {res.send_s:.3f}s, restore {res.restore_s:.3f}s; CRIU frozen "
          f"{res.frozen_s}s, CRIU restore {res.criu_restore_s}s)", file=sys.stderr)
    print(res.pid)
    return 0


def _progress(quiet: bool) -> tuple[Any, Any]:
    """A migration's progress line on a terminal (``migrate pages  812.0 MiB  640.2 MiB/s``, then
    ``migrate images``, ``migrate restore``); nothing when stderr is not a terminal or ``quiet``."""
    from runtime.cli.progress import progress_for

    line = progress_for("migrate", quiet=quiet)
    if line is None:
        return None, None
    current: list[str] = []

    def report(phase: str, done: int, total: int | None) -> None:
        if current != [phase]:
            current[:] = [phase]
            line.phase(f"migrate {phase}")
        line(done, total)

    return report, line
