"""``checkpoint``/``restore`` of many containers: ``--all`` or several ids (runtime.cr.batch).

Text: one line per container on stdout, ``ID<TAB>image dir`` (checkpoint) or
``ID<TAB>pid`` (restore) for a success, ``ID<TAB>error: ...`` for a failure, then
a summary line on stderr. ``--format json``: docs/schemas/batch.json, each
container's ``result`` shaped like the single command's. ``--print-stats``:
one document in podman's shape, every container in ``container_statistics``
(failed ones with their ``error``). The exit status (docs/cli-json.md): 0 when
all succeeded, 7 (PARTIAL) when some failed, a failure's own status when all
failed alike, 128 + N when signal N stopped the batch (those not begun are
reported as such).

cr_cmds' parsers name these handlers (``Handler(..., when=...)``): this module
is imported only when a batch is asked for.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from typing import Any

from runtime.cli.cr_cmds import result_json
from runtime.cli.errormap import UsageError
from runtime.cli.output import Result, chosen_format, outcomes_result
from runtime.container.state import StateStore
from runtime.cr.batch import BatchResult, checkpoint_all, restore_all
from runtime.cr.options import CheckpointOptions, RestoreOptions

__all__ = ["checkpoint", "restore", "report"]


def _ids(args: argparse.Namespace, verb: str) -> list[str] | None:
    named = [i for i in (args.id, *args.more_ids) if i]
    if args.all and named:
        raise UsageError(f"{verb}: give --all or container ids, not both")
    return None if args.all else named


def checkpoint(args: argparse.Namespace) -> Result:
    if args.image_path or args.export or args.create_image:
        raise UsageError("checkpoint: --image-path, --export and --create-image name one place: "
                         "not with --all or several ids")
    opts = CheckpointOptions(leave_running=args.leave_running, tcp_established=args.tcp_established,
                             tcp_skip_in_flight=args.tcp_skip_in_flight, file_locks=args.file_locks,
                             keep=args.keep, network_lock=args.network_lock)
    res = checkpoint_all(StateStore(args.root), opts, ids=_ids(args, "checkpoint"), parallel=args.parallel,
                         criu_path=args.criu)
    return report(args, "checkpoint", res, lambda r: r.image_dir)


def restore(args: argparse.Namespace) -> Result:
    if args.image_path or args.import_ or args.bundle or args.netns or args.name or args.rootfs:
        raise UsageError("restore: --image-path, --import, --bundle, --netns, --name and --rootfs "
                         "name one container: not with --all or several ids")
    if getattr(args, "lazy", False):
        raise UsageError("restore: --lazy runs one lazy-pages daemon for one container: not with --all or several "
                         "ids (restore them one by one with --lazy)")
    opts = RestoreOptions(tcp_established=args.tcp_established, tcp_close=args.tcp_close,
                          file_locks=args.file_locks, keep=args.keep, network_lock=args.network_lock,
                          verify=args.verify)
    res = restore_all(StateStore(args.root), opts, ids=_ids(args, "restore"), parallel=args.parallel,
                      criu_path=args.criu)
    return report(args, "restore", res, lambda r: r.pid)


def report(args: argparse.Namespace, kind: str, res: BatchResult, plain: Any) -> Result:
    """The batch's :class:`~runtime.cli.output.Result` (text, JSON or --print-stats) and exit status."""
    rows = [(o.container_id, result_json(kind, o.result) if o.ok else None, None if o.ok else o.error)
            for o in res.outcomes]
    out = outcomes_result(rows)
    notes = [f"{kind}: {res.summary()}" if res.outcomes else f"{kind}: no container to {kind}"]
    exit_status = int(out.exit)
    if res.signal:
        skipped = sum(o.skipped for o in res.outcomes)
        notes.append(f"{kind}: interrupted by {signal.Signals(res.signal).name}; {skipped} not begun")
        exit_status = 128 + res.signal
    if chosen_format(args) == "text":  # JSON mode: the document says it all, stderr stays JSON
        for note in notes:
            print(f"criu-cr: {note}", file=sys.stderr)
    by_id = {o.container_id: o for o in res.outcomes}

    def text(data: dict[str, Any]) -> str:
        if args.print_stats:
            return json.dumps(_stats(kind, res), indent=2)
        return "\n".join(f"{r['id']}\t{plain(by_id[r['id']].result)}" if r["ok"] else
                         f"{r['id']}\terror: {r['error']['message']}" for r in data["results"])

    return Result(data=out.data, text=text, exit=exit_status)


def _stats(kind: str, res: BatchResult) -> dict[str, Any]:
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
