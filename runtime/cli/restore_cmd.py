"""``criu-cr restore``'s handler (its parser is in cr_cmds): runtime.cr.restore, without the facade.

``restore --image-path DIR ID`` with an ID that does not exist makes the
container from the checkpoint (runtime.cr.restore_new, loaded then);
``restore --import`` has its own handler (import_cmd).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from runtime import lazy
from runtime.cli.cr_cmds import print_result
from runtime.cli.errormap import UsageError
from runtime.cli.output import Result
from runtime.container.state import StateStore, validate_id
from runtime.cr.options import LazyPages, RestoreOptions
from runtime.cr.restore import restore

__all__ = ["run", "restore_fields", "lazy_source", "print_restored"]

# A new container from a checkpoint (a copy, or one brought back after delete): loaded only
# then, as it brings tarfile (the filesystem changes) and the spec checks of container creation.
_RESTORE_NEW = "runtime.cr.restore_new:restore_new"


def restore_fields(args: argparse.Namespace) -> dict[str, Any]:
    """The RestoreOptions fields every restore takes from the command line."""
    return dict(tcp_established=args.tcp_established, tcp_close=args.tcp_close, file_locks=args.file_locks,
                keep=args.keep, network_lock=args.network_lock, verify=args.verify)


def lazy_source(args: argparse.Namespace) -> LazyPages | None:
    """``--lazy``: the memory from the checkpoint's own pages files, through CRIU's lazy-pages daemon."""
    return LazyPages() if getattr(args, "lazy", False) else None


def print_restored(args: argparse.Namespace, res: Any) -> Result:
    """A lazy restore waits until all its memory is in (the container runs meanwhile), and says when."""
    if res.lazy is not None:
        with res.lazy:
            took = res.lazy.wait()
        print(f"criu-cr: running after {res.duration_us / 1e6:.3f}s; all its memory in place after {took:.3f}s",
              file=sys.stderr)
    return print_result(args, "restore", res, res.pid)


def run(args: argparse.Namespace) -> Result:
    if not args.id:
        raise UsageError("restore: give the container's ID (or --import FILE, or --all)")
    if args.name or args.rootfs or args.import_limit:
        raise UsageError("restore: --name, --rootfs and --import-limit go with --import")
    store = StateStore(args.root)
    opts = RestoreOptions(image_path=args.image_path, bundle=args.bundle, netns=args.netns, lazy=lazy_source(args),
                          **restore_fields(args))
    if not store.exists(validate_id(args.id)) and args.image_path:
        res = lazy.load(_RESTORE_NEW)(store, args.id, opts, criu_path=args.criu)
    else:
        res = restore(store, args.id, opts, criu_path=args.criu)  # ContainerNotFoundError from its lock
    return print_restored(args, res)
