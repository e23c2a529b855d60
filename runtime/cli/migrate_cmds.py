"""``receive`` and ``migrate``: stop-and-copy migration between two criu-cr over TCP (runtime.cr.migrate).

``receive --listen ADDR:PORT --token-file FILE [--once]`` prints
``listening on HOST:PORT`` (port 0 picks one), then one line per migration
(``received ID PID`` or ``refused/failed: why``). ``migrate --token-file
FILE ID ADDR:PORT`` prints the container's pid on the destination and, on
stderr, where the downtime went.
"""

from __future__ import annotations

import argparse
import sys

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("receive", help="accept migrated containers (the destination of `migrate`)",
                              description="Accept stop-and-copy migrations over TCP and restore each "
                                          "container into this state root. The channel is authenticated "
                                          "but NOT encrypted: tunnel it (VPN, ssh -L) across untrusted networks.")
    p.add_argument("--listen", required=True, metavar="ADDR:PORT", help="address to listen on (port 0: any)")
    p.add_argument("--token-file", required=True, metavar="FILE", help="the shared token (both sides)")
    p.add_argument("--once", action="store_true", help="handle one migration, then exit (its status)")
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
    p.add_argument("id", help="container id")
    p.add_argument("address", metavar="ADDR:PORT", help="the receiver")
    p.set_defaults(func=_migrate)


def _receive(args: argparse.Namespace) -> int:
    from runtime.cr.migrate import Receiver, parse_address
    from runtime.cr.migrate_proto import read_token

    with Receiver(parse_address(args.listen), read_token(args.token_file), root=args.root,
                  criu_path=args.criu) as rx:
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

    res = migrate(args.id, parse_address(args.address), read_token(args.token_file), root=args.root,
                  criu_path=args.criu, compress=args.compress, tcp_established=args.tcp_established,
                  lazy=args.lazy)
    if args.lazy:
        print(f"criu-cr: migrated {res.bytes} bytes of images; downtime {res.downtime_s:.3f}s (images "
              f"{res.images_s:.3f}s, destination restore {res.restore_s}s); last page arrived after "
              f"{res.pages_s:.3f}s", file=sys.stderr)
        print(res.pid)
        return 0
    print(f"criu-cr: migrated {res.bytes} bytes; downtime {res.downtime_s:.3f}s (checkpoint "
          f"{res.checkpoint_s:.3f}s, send {res.send_s:.3f}s, restore {res.restore_s:.3f}s; CRIU frozen "
          f"{res.frozen_s}s, CRIU restore {res.criu_restore_s}s)", file=sys.stderr)
    print(res.pid)
    return 0
