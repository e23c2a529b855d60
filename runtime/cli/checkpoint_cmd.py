"""``criu-cr checkpoint``'s handler (its parser is in cr_cmds): runtime.cr.checkpoint, without the facade.

``--export`` / ``--create-image`` load their writers only when given (runtime.cr.checkpoint).
"""

from __future__ import annotations

import argparse

from runtime.cli.cr_cmds import print_result, progress
from runtime.cli.errormap import UsageError
from runtime.cli.output import Result
from runtime.container.state import StateStore, validate_id
from runtime.cr.checkpoint import checkpoint
from runtime.cr.options import CheckpointOptions

__all__ = ["run"]


def run(args: argparse.Namespace) -> Result:
    if not args.id:
        raise UsageError("checkpoint: give the container's ID (or --all)")
    with progress(args, "export", args.export) as line:
        res = checkpoint(StateStore(args.root), validate_id(args.id), CheckpointOptions(
            image_path=args.image_path, leave_running=args.leave_running, tcp_established=args.tcp_established,
            tcp_skip_in_flight=args.tcp_skip_in_flight, export=args.export, compress=args.compress,
            create_image=args.create_image, file_locks=args.file_locks, keep=args.keep,
            network_lock=args.network_lock, progress=line), criu_path=args.criu)
    return print_result(args, "checkpoint", res, res.archive or res.image or res.image_dir)
