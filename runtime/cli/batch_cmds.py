"""``checkpoint``/``restore`` of many containers: ``--all`` or several ids (runtime.cr.batch).

Each container's outcome is one line: ``ID<TAB>image dir`` (checkpoint) or
``ID<TAB>pid`` (restore) on stdout for a success, ``criu-cr: error: ID: ...`` on
stderr for a failure; a summary line on stderr. The exit status is 1 when any
container failed, 128 + N when signal N stopped the batch (those not begun are
reported as such). ``--print-stats``: one JSON document in podman's shape, every
container in ``container_statistics`` (failed ones with their ``error``).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

__all__ = ["add_flags", "wanted", "checkpoint", "restore"]


def add_flags(p: argparse.ArgumentParser) -> None:
    """--all, --parallel and further ids for a checkpoint/restore parser."""
    p.add_argument("more_ids", nargs="*", metavar="ID...", help="further containers (done in parallel)")
    p.add_argument("-a", "--all", action="store_true",
                   help="every running container (checkpoint) / every checkpointed one (restore)")
    p.add_argument("--parallel", type=_positive, metavar="N",
                   help="with --all or several ids: at most N at a time (default: twice the number of cores)")


def _positive(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"not a positive number: {text!r}")
    return n


def wanted(args: argparse.Namespace) -> bool:
    """Whether the command line asks for a batch (``--all`` or more than one id)."""
    return bool(args.all or args.more_ids)


def _ids(args: argparse.Namespace, verb: str) -> list[str] | None:
    named = [i for i in (args.id, *args.more_ids) if i]
    if args.all and named:
        raise SystemExit(f"criu-cr {verb}: give --all or container ids, not both")
    return None if args.all else named


def checkpoint(args: argparse.Namespace) -> int:
    from runtime.container.state import StateStore
    from runtime.cr.batch import checkpoint_all
    from runtime.cr.options import CheckpointOptions

    if args.image_path or args.export or args.create_image:
        raise SystemExit("criu-cr checkpoint: --image-path, --export and --create-image name one place: "
                         "not with --all or several ids")
    opts = CheckpointOptions(leave_running=args.leave_running, tcp_established=args.tcp_established,
                             tcp_skip_in_flight=args.tcp_skip_in_flight, file_locks=args.file_locks,
                             keep=args.keep, network_lock=args.network_lock)
    res = checkpoint_all(StateStore(args.root), opts, ids=_ids(args, "checkpoint"), parallel=args.parallel,
                         criu_path=args.criu)
    return _report(args, "checkpoint", res, lambda r: r.image_dir)


def restore(args: argparse.Namespace) -> int:
    from runtime.container.state import StateStore
    from runtime.cr.batch import restore_all
    from runtime.cr.options import RestoreOptions

    if args.image_path or args.import_ or args.bundle or args.netns or args.name or args.rootfs:
        raise SystemExit("criu-cr restore: --image-path, --import, --bundle, --netns, --name and --rootfs "
                         "name one container: not with --all or several ids")
    opts = RestoreOptions(tcp_established=args.tcp_established, tcp_close=args.tcp_close,
                          file_locks=args.file_locks, keep=args.keep, network_lock=args.network_lock,
                          verify=args.verify)
    res = restore_all(StateStore(args.root), opts, ids=_ids(args, "restore"), parallel=args.parallel,
                      criu_path=args.criu)
    return _report(args, "restore", res, lambda r: r.pid)


def _report(args: argparse.Namespace, kind: str, res: Any, plain: Any) -> int:
    if args.print_stats:
        json.dump(_stats(kind, res), sys.stdout, indent=2)
        print()
    for o in res.outcomes:
        if o.ok:
            if not args.print_stats:
                print(f"{o.container_id}\t{plain(o.result)}")
        else:
            print(f"criu-cr: error: {o.container_id}: {o.error}", file=sys.stderr)
    if res.outcomes:
        print(f"criu-cr: {kind}: {res.summary()}", file=sys.stderr)
    else:
        print(f"criu-cr: {kind}: no container to {kind}", file=sys.stderr)
    if res.signal:
        import signal

        skipped = sum(o.skipped for o in res.outcomes)
        print(f"criu-cr: {kind}: interrupted by {signal.Signals(res.signal).name}; {skipped} not begun",
              file=sys.stderr)
        return 128 + res.signal
    return 0 if res.ok else 1


def _stats(kind: str, res: Any) -> dict[str, Any]:
    """podman's shape (``criu_cr_<kind>_duration`` in µs, one entry per container)."""
    entries = []
    for o in res.outcomes:
        entry: dict[str, Any] = {"id": o.container_id, f"runtime_{kind}_duration": int(o.seconds * 1e6)}
        if o.ok:
            entry["criu_statistics"] = dict(o.result.stats)
        else:
            entry["error"] = str(o.error)
        entries.append(entry)
    return {f"criu_cr_{kind}_duration": int(res.seconds * 1e6), "container_statistics": entries}
