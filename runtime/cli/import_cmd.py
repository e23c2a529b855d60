"""``criu-cr restore --import``'s handler: a new container from a checkpoint archive or OCI image.

Its own module so that a plain restore never loads the archive and OCI
readers (tarfile, zstandard, ...): runtime.cr.portable, without the facade.
"""

from __future__ import annotations

import argparse

from runtime.cli.cr_cmds import progress
from runtime.cli.errormap import UsageError
from runtime.cli.output import Result
from runtime.cli.restore_cmd import lazy_source, print_restored, restore_fields
from runtime.container.state import StateStore
from runtime.cr.archive import DEFAULT_IMPORT_LIMIT
from runtime.cr.options import RestoreOptions
from runtime.cr.portable import restore_import

__all__ = ["run"]


def run(args: argparse.Namespace) -> Result:
    if args.image_path or args.bundle:
        raise UsageError("restore: --import takes its images and bundle from the archive "
                         "(not with --image-path or --bundle)")
    if args.name and args.id and args.name != args.id:
        raise UsageError(f"restore: --name {args.name} and ID {args.id} disagree: give one")
    with progress(args, "import", True) as line:
        opts = RestoreOptions(netns=args.netns, progress=line, lazy=lazy_source(args), **restore_fields(args))
        res = restore_import(StateStore(args.root), args.import_, opts, name=args.name or args.id,
                             rootfs=args.rootfs, limit=args.import_limit or DEFAULT_IMPORT_LIMIT,
                             criu_path=args.criu)
    return print_restored(args, res)
