"""Benchmark (issue 12, targets 3-5): big containers, many containers, our own footprint.

``big``: a busybox container holding 1 GiB of random bytes in one heap block
(scripts/bench_manifest.py's), checkpointed and restored by runc (CLI, the
same CRIU) and by criu-cr (API), rounds interleaved, everything on /dev/shm.
Beside them, in the same run, the machine's limits: writing 1 GiB to tmpfs
(dd to /dev/shm) and copying 1 GiB in memory (memcpy through a memoryview).
Variants of criu-cr say what each choice costs (CRIU's log level, the manifest).

``many``: N small containers (busybox sleep) checkpointed and restored at
once: ``criu-cr checkpoint --all`` / ``restore --all`` (CLI, default
parallelism) against podman 4.3's ``container checkpoint -a`` / ``restore -a``.

``footprint``: the peak RSS (VmHWM) of the criu-cr process, and separately of
the CRIU it runs, during ``checkpoint --export``, ``restore --import`` and a
stop-and-copy ``migrate`` over loopback of the 1 GiB container.

Run as ``scripts/bench --scale [-n ROUNDS] [--podman]`` (or this file with
``--only big|many|footprint``); as root.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import bench  # noqa: E402 (scripts/, beside this file)
import bench_manifest  # noqa: E402

from runtime.container import Container  # noqa: E402
from runtime.cr import manifest  # noqa: E402
from runtime.cr.options import CheckpointOptions, RestoreOptions  # noqa: E402

MiB = 1 << 20
GiB = 1 << 30
SIZE = GiB
Rows = dict[str, list[float]]
# One table: (section, what, ours, the peer's, unit); ratio = ours / peer's.
Table = list[tuple[str, str, float | None, float | None, str]]


def _timed(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


# -- the machine's limits -------------------------------------------------------------

def tmpfs_write_gbs(size: int = SIZE) -> float:
    """GB/s of dd writing ``size`` bytes (1 MiB blocks, from /dev/zero) to a new file on /dev/shm."""
    path = tempfile.mktemp(prefix="bench-scale-dd-", dir="/dev/shm")
    try:
        t = _timed(lambda: subprocess.run(["dd", "if=/dev/zero", f"of={path}", "bs=1M", f"count={size // MiB}"],
                                          check=True, capture_output=True))
    finally:
        os.unlink(path)
    return size / t / 1e9


def memcpy_gbs(size: int = SIZE) -> float:
    """GB/s of copying ``size`` bytes between two buffers already touched (best of 3)."""
    src, dst = bytearray(os.urandom(MiB)) * (size // MiB), bytearray(size)
    dst[:] = src  # touch
    best = min(_timed(lambda: dst.__setitem__(slice(None), src)) for _ in range(3))
    del src, dst
    return size / best / 1e9


# -- big: the 1 GiB container ---------------------------------------------------------

class RuncBig:
    """runc's CLI on the holding container, the same CRIU; images and work path on /dev/shm."""

    def __init__(self, work: str, criu: str) -> None:
        self.bundle = bench_manifest.holding_bundle(os.path.join(work, "runc-bundle"), SIZE)
        self.root = os.path.join(work, "runc-root")
        self.images = os.path.join(work, "runc-images")
        self.criu, self.cid = criu, "bench-scale-runc"

    def _runc(self, *args: str) -> None:
        # stdio to /dev/null: the container inherits it (a pipe would keep us waiting, a file
        # outside the container's mounts cannot be dumped)
        subprocess.run(["runc", "--root", self.root, "--criu", self.criu, *args], check=True,
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def start(self) -> None:
        self._runc("run", "-d", "--bundle", self.bundle, self.cid)
        deadline = time.monotonic() + 120
        while self.rss() < SIZE * 0.99:
            if time.monotonic() > deadline:
                raise TimeoutError("runc's container did not fill its memory in 120 s")
            time.sleep(0.2)
        time.sleep(0.5)

    def rss(self) -> int:
        out = subprocess.run(["runc", "--root", self.root, "ps", "--format", "json", self.cid],
                             capture_output=True, text=True, check=True).stdout
        return sum(bench_manifest._rss(int(p)) for p in json.loads(out))

    def checkpoint(self) -> float:
        shutil.rmtree(self.images, ignore_errors=True)
        return _timed(lambda: self._runc("checkpoint", "--image-path", self.images, "--work-path", self.images,
                                         self.cid))

    def restore(self) -> float:
        return _timed(lambda: self._runc("restore", "-d", "--bundle", self.bundle, "--image-path", self.images,
                                         "--work-path", self.images, self.cid))

    def stop(self) -> None:
        subprocess.run(["runc", "--root", self.root, "delete", "-f", self.cid], capture_output=True)


class CriuCrBig:
    """criu-cr's API on the holding container (checkpoint then restore in place)."""

    def __init__(self, work: str, criu: str, name: str, **variant: object) -> None:
        self.root = os.path.join(work, "state")
        self.images = os.path.join(work, f"images-{name}")
        self.bundle = bench_manifest.holding_bundle(os.path.join(work, f"bundle-{name}"), SIZE)
        self.criu, self.cid, self.variant = criu, f"bench-scale-{name}", variant
        self.ctr: Container | None = None

    def start(self) -> None:
        self.ctr = Container.run(self.cid, self.bundle, self.root)
        bench_manifest.wait_filled(self.ctr)

    def checkpoint(self) -> float:
        level = self.variant.get("log_level", 4)
        opts = CheckpointOptions(image_path=self.images, log_level=level)
        with self._patch():
            return _timed(lambda: self.ctr.checkpoint(opts, criu_path=self.criu))

    def restore(self) -> float:
        opts = RestoreOptions(image_path=self.images, log_level=self.variant.get("log_level", 4))
        return _timed(lambda: self.ctr.restore(opts, criu_path=self.criu))

    def _patch(self):
        from unittest import mock
        import contextlib

        if self.variant.get("manifest") is False:
            return mock.patch.object(manifest, "seal")
        return contextlib.nullcontext()

    def stop(self) -> None:
        if self.ctr is not None:
            self.ctr.delete(force=True)


def big(work: str, criu: str, rounds: int, variants: bool) -> tuple[Table, Rows]:
    sides: dict[str, object] = {"runc": RuncBig(work, criu), "criu-cr": CriuCrBig(work, criu, "default")}
    if variants:
        sides["criu-cr, CRIU log level 2"] = CriuCrBig(work, criu, "log2", log_level=2)
        sides["criu-cr, no manifest"] = CriuCrBig(work, criu, "nomanifest", manifest=False)
    out: Rows = {}
    started = []
    try:
        for name, side in sides.items():
            side.start()
            started.append(side)
            out[f"{name} ckpt"], out[f"{name} restore"] = [], []
        limits: Rows = {"tmpfs write GB/s": [], "memcpy GB/s": []}
        for i in range(rounds + 1):  # round 0 warms up and is not counted
            line = []
            for name, side in sides.items():
                ck = side.checkpoint()
                rs = side.restore()
                line.append(f"{name} {ck:.2f}/{rs:.2f}")
                if i:
                    out[f"{name} ckpt"].append(ck)
                    out[f"{name} restore"].append(rs)
            if i:
                limits["tmpfs write GB/s"].append(tmpfs_write_gbs())
                limits["memcpy GB/s"].append(memcpy_gbs())
            print(f"  big round {i}: " + "; ".join(line), file=sys.stderr, flush=True)
        out.update(limits)
    finally:
        for side in started:
            side.stop()
    med = {k: statistics.median(v) for k, v in out.items()}
    gb = SIZE / 1e9
    table: Table = []
    for name in sides:
        if name == "runc":
            continue
        for op in ("ckpt", "restore"):
            table.append(("1 GiB", f"{name}: {op} s", med[f"{name} {op}"], med[f"runc {op}"], "s"))
    for op in ("ckpt", "restore"):
        table.append(("1 GiB", f"criu-cr {op} GB/s", gb / med[f"criu-cr {op}"], gb / med[f"runc {op}"], "GB/s"))
    table.append(("1 GiB", "limit: tmpfs write (dd) GB/s", med["tmpfs write GB/s"], None, "GB/s"))
    table.append(("1 GiB", "limit: memcpy GB/s", med["memcpy GB/s"], None, "GB/s"))
    return table, out


# -- the table ------------------------------------------------------------------------

def print_table(table: Table, title: str) -> None:
    print(f"\n{title}\nratio = criu-cr / peer (time: < 1 is faster; GB/s and c/s: > 1 is faster)")
    hdr = f"{'section':10} {'figure':44} {'criu-cr':>9} {'peer':>9} {'ratio':>6}"
    print(hdr)
    print("-" * len(hdr))
    for section, what, ours, peer, _unit in table:
        o = f"{ours:9.3f}" if ours is not None else f"{'-':>9}"
        p = f"{peer:9.3f}" if peer is not None else f"{'-':>9}"
        r = f"{ours / peer:6.2f}" if ours is not None and peer else f"{'':>6}"
        print(f"{section:10} {what:44} {o} {p} {r}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", "--rounds", type=int, default=8)
    ap.add_argument("--only", choices=("big", "many", "footprint"), action="append")
    ap.add_argument("--variants", action="store_true", help="big: also criu-cr's variants (log level, manifest)")
    ap.add_argument("--podman", action="store_true", help="many: podman 4.3's -a beside ours")
    args = ap.parse_args(argv)
    only = set(args.only or ("big", "many", "footprint"))
    criu = bench.locate()
    table: Table = []
    work = tempfile.mkdtemp(prefix="criu-cr-bench-scale-", dir="/dev/shm")
    try:
        if "big" in only:
            t, _ = big(work, criu, args.rounds, args.variants)
            table += t
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print_table(table, f"CRIU: {criu}; medians of {args.rounds} interleaved rounds; images on /dev/shm")
    return 0


if __name__ == "__main__":
    sys.exit(main())
