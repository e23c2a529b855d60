"""``criu-cr restore --import``'s handler: a new container from a checkpoint archive or OCI image.

Its own module so that a plain restore never loads the archive and OCI
readers (tarfile, zstandard, ...).
"""

from __future__ import annotations

import argparse

from runtime.cli.cr_cmds import print_result, progress
from runtime.cli.restore_cmd import restore_fields
from runtime.container import Container

__all__ = ["run"]


def run(args: argparse.Namespace) -> int:
    if args.image_path or args.bundle:
        raise SystemExit("criu-cr restore: --import takes its images and bundle from the archive "
                         "(not with --image-path or --bundle)")
    if args.name and args.id and args.name != args.id:
        raise SystemExit(f"criu-cr restore: --name {args.name} and ID {args.id} disagree: give one")
    with progress(args, "import", True) as line:
        res = Container.restore_import(args.import_, name=args.name or args.id, netns=args.netns,
                                       rootfs=args.rootfs, root=args.root, limit=args.import_limit,
                                       criu_path=args.criu, progress=line, **restore_fields(args))
    return print_result(args, "restore", res, res.pid)
