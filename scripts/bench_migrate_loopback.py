"""Benchmark: stop-and-copy migration's downtime over 127.0.0.1 (issue 10).

A busybox container holding SIZE MiB of random bytes in memory
(scripts/bench_manifest's ``holding_bundle``) hops N times between two state
roots on this machine, through a ``Receiver`` in a thread. Per hop:
downtime (freeze to the destination's answer), the checkpoint part (the dump,
pages sent to the destination's page server, the rest sent and staged), the
restore part, CRIU's own frozen and restore times, and the bytes.

Run as root: .venv/bin/python scripts/bench_migrate_loopback.py [--size MiB] [-n HOPS].
Another machine load skews it: compare runs taken side by side.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import threading

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_manifest import holding_bundle, wait_filled  # noqa: E402
from runtime.container import Container  # noqa: E402
from runtime.cr.migrate import Receiver, migrate  # noqa: E402

MiB = 1 << 20
TOKEN = b"bench-migrate-token-0123456789ab"
CID = "bench-migrate"


def hops(size: int, n: int, criu: str | None) -> list[dict[str, float]]:
    work = tempfile.mkdtemp(prefix="bench-migrate-")
    roots = [os.path.join(work, "a"), os.path.join(work, "b")]
    rows = []
    try:
        Container.run(CID, holding_bundle(os.path.join(work, "bundle"), size), roots[0])
        wait_filled(Container.load(CID, roots[0]))
        for i in range(n):
            src, dst = roots[i % 2], roots[(i + 1) % 2]
            with Receiver(("127.0.0.1", 0), TOKEN, root=dst, criu_path=criu) as rx:
                t = threading.Thread(target=rx.serve_once)
                t.start()
                m = migrate(CID, rx.address, TOKEN, root=src, criu_path=criu)
                t.join()
            rows.append({"downtime": m.downtime_s, "checkpoint": m.checkpoint_s, "rest sent+staged": m.send_s,
                         "restore": m.restore_s, "CRIU frozen": m.frozen_s or 0.0,
                         "CRIU restore": m.criu_restore_s or 0.0, "page MiB": m.page_bytes / MiB,
                         "rest KiB": m.bytes / 1024})
    finally:
        for root in roots:
            for ctr in Container.list(root):
                ctr.delete(force=True)
        shutil.rmtree(work, ignore_errors=True)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256, help="MiB the container holds (default 256)")
    parser.add_argument("-n", "--hops", type=int, default=5, help="migrations (default 5)")
    args = parser.parse_args()
    rows = hops(args.size * MiB, args.hops, os.environ.get("CRIU_CR_CRIU"))
    print(f"stop-and-copy over 127.0.0.1, {args.size} MiB, {args.hops} hops (seconds; median, min-max)")
    for key in rows[0]:
        values = [r[key] for r in rows]
        print(f"  {key:18s} {statistics.median(values):9.3f}  ({min(values):.3f}-{max(values):.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
