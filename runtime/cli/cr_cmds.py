"""Container checkpoint and restore commands, with podman's flag names.

``checkpoint`` prints the image directory (or, with ``--print-stats``, JSON
statistics shaped like podman's). ``restore`` prints the restored init's pid
(or the statistics). ``restore --image-path DIR ID`` with an ID that does not
exist makes container ID from the checkpoint (from ``--bundle``, default the
checkpointed container's bundle) -- the way to make a copy of a container
checkpointed with ``--leave-running``, or to bring one back after delete.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

__all__ = ["register", "stats_json"]


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("checkpoint", help="checkpoint a running container",
                              description="Checkpoint a running container with CRIU (over RPC).")
    p.add_argument("id", help="container id")
    p.add_argument("-e", "--image-path", help="where to write the checkpoint (default: <state>/<id>/checkpoint)")
    p.add_argument("-R", "--leave-running", action="store_true", help="leave the container running")
    p.add_argument("--tcp-skip-in-flight", action="store_true", default=None,
                   help="drop connections the container has not accepted yet instead of failing "
                        "(the default with --leave-running, where the container keeps them)")
    _common(p, "checkpoint")
    p.set_defaults(func=_checkpoint)

    p = subparsers.add_parser("restore", help="restore a checkpointed container",
                              description="Restore a checkpointed container with CRIU (over RPC).")
    p.add_argument("id", help="container id")
    p.add_argument("-e", "--image-path", help="the checkpoint to restore (default: the container's last one)")
    p.add_argument("-b", "--bundle", help="bundle for a new container (default: the checkpointed one's)")
    p.add_argument("--tcp-close", action="store_true", help="restore established TCP connections closed")
    p.add_argument("--no-verify", dest="verify", action="store_false",
                   help="do not check the images against the checkpoint's manifest before CRIU reads them")
    _common(p, "restore")
    p.set_defaults(func=_restore)


def _common(p: argparse.ArgumentParser, verb: str) -> None:
    """The flags checkpoint and restore share (podman's names)."""
    p.add_argument("--tcp-established", action="store_true", help=f"{verb} established TCP connections")
    p.add_argument("--file-locks", action="store_true", help=f"{verb} file locks")
    p.add_argument("-k", "--keep", action="store_true", help="keep CRIU's log and statistics files")
    p.add_argument("--print-stats", action="store_true", help="print statistics as JSON")
    p.add_argument("--network-lock", choices=("iptables", "nftables", "skip"),
                   help="CRIU's network-lock method (default: nftables if CRIU supports it, else iptables; "
                        "a restore uses the checkpoint's)")


def stats_json(kind: str, result: Any) -> dict[str, Any]:
    """Statistics in podman's shape: total duration, and per container CRIU's figures."""
    return {
        f"criu_cr_{kind}_duration": result.duration_us,
        "container_statistics": [{
            "id": result.container_id,
            f"runtime_{kind}_duration": result.duration_us,
            "criu_statistics": dict(result.stats),
        }],
    }


def _checkpoint(args: argparse.Namespace) -> int:
    from runtime.cr.options import CheckpointOptions
    from runtime.container import Container

    ctr = Container.load(args.id, args.root)
    res = ctr.checkpoint(CheckpointOptions(
        image_path=args.image_path, leave_running=args.leave_running, tcp_established=args.tcp_established,
        tcp_skip_in_flight=args.tcp_skip_in_flight,
        file_locks=args.file_locks, keep=args.keep, network_lock=args.network_lock), criu_path=args.criu)
    return _print_result(args, "checkpoint", res, res.image_dir)


def _restore(args: argparse.Namespace) -> int:
    from runtime.cr.options import RestoreOptions
    from runtime.container import Container

    from runtime.container.state import StateStore

    fields = dict(tcp_established=args.tcp_established, tcp_close=args.tcp_close, file_locks=args.file_locks,
                  keep=args.keep, network_lock=args.network_lock, verify=args.verify)
    if not StateStore(args.root).exists(args.id) and args.image_path:
        res = Container.restore_new(args.id, args.image_path, bundle=args.bundle, root=args.root,
                                    criu_path=args.criu, **fields)
    else:
        ctr = Container.load(args.id, args.root)
        res = ctr.restore(RestoreOptions(image_path=args.image_path, bundle=args.bundle, **fields),
                          criu_path=args.criu)
    return _print_result(args, "restore", res, res.pid)


def _print_result(args: argparse.Namespace, kind: str, res: Any, plain: object) -> int:
    """--print-stats: podman-shaped JSON; else one line (the image dir, or the restored pid)."""
    if args.print_stats:
        json.dump(stats_json(kind, res), sys.stdout, indent=2)
        print()
    else:
        print(plain)
    return 0
