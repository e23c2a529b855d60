"""Benchmark (issue 9, "Performance"): export/import of a 1 GiB-RSS container against the plain
checkpoint/restore of the same container in the same run.

The container is scripts/bench_manifest.py's (a busybox ``tail -c 1G`` buffering a
never-ending pipe of random bytes: one 1 GiB heap block; random, so the worst
case for the compressor). Everything -- state root, images, archives -- lives on
/dev/shm, so the disk is not what is measured. Rounds interleave the variants:

  plain     checkpoint --image-path DIR            then restore
  export    checkpoint --image-path DIR2 --export F then restore --import F (a new id;
            the checkpointed original is deleted and the imported copy goes on)

zstd (the default, multi-threaded) in every round; gzip and none once each at
the end. Then zstd's level (1, 3, 6): time and size of writing and reading an
archive of the last checkpoint. With --podman, podman 4.3's own plain
checkpoint/restore against ``checkpoint --export`` / ``restore --import`` of the
same kind of container, interleaved the same way.

Run as ``scripts/bench --archive [-n ROUNDS] [--podman]``; as root.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from unittest import mock

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import bench  # noqa: E402 (scripts/, beside this file)
import bench_manifest  # noqa: E402

from runtime.container import Container  # noqa: E402
from runtime.cr import archive, compression  # noqa: E402
from runtime.cr.options import CheckpointOptions, RestoreOptions  # noqa: E402
from runtime.testing.podman import Podman as PodmanPeer  # noqa: E402

MiB = 1 << 20
SIZE = 1024 * MiB
LEVELS = (1, 3, 6)
Rows = dict[str, list[float]]


def _timed(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


class Spent:
    """Seconds spent inside ``archive.write_archive`` / ``read_archive`` (the export/import's own part)."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def wrap(self, fn: Callable[..., object]) -> Callable[..., object]:
        def timed(*a: object, **kw: object) -> object:
            t = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                self.seconds += time.perf_counter() - t
        return timed


class CriuCr:
    """criu-cr's API on the holding container; the container's id changes with every import."""

    def __init__(self, work: str, criu: str) -> None:
        self.work, self.criu = work, criu
        self.root = os.path.join(work, "state")
        self.images = os.path.join(work, "images")
        self.export_images = os.path.join(work, "images-export")
        self.archive = os.path.join(work, "ck.tar")
        bundle = bench_manifest.holding_bundle(os.path.join(work, "bundle"), SIZE)
        self.ctr = Container.run("bench-archive-0", bundle, self.root)
        self.n = 0

    def rss_mib(self) -> float:
        return sum(bench_manifest._rss(p) for p in self.ctr.ps()) / MiB

    def plain(self, fill: bool = False) -> tuple[float, float]:
        """Checkpoint, restore. ``fill``: 1 GiB written to tmpfs in between (untimed), as an import's
        unpacking does, so CRIU must restore into memory not just freed by the dump."""
        shutil.rmtree(self.images, ignore_errors=True)  # the previous round's (another container's id)
        ck = _timed(lambda: self.ctr.checkpoint(CheckpointOptions(image_path=self.images), criu_path=self.criu))
        filler = os.path.join(self.work, "filler")
        if fill:
            with open(filler, "wb") as f:
                block = os.urandom(MiB)
                for _ in range(SIZE // MiB):
                    f.write(block)
        res = []
        rs = _timed(lambda: res.append(self.ctr.restore(RestoreOptions(image_path=self.images),
                                                         criu_path=self.criu)))
        self.criu_restore = (res[0].criu_duration_us or 0) / 1e6
        if fill:
            os.unlink(filler)
        return ck, rs

    def exported(self, compress: str = "zstd") -> tuple[float, float, int]:
        shutil.rmtree(self.export_images, ignore_errors=True)
        opts = CheckpointOptions(image_path=self.export_images, export=self.archive, compress=compress)
        self.wrote, self.read = Spent(), Spent()
        with mock.patch.object(archive, "write_archive", self.wrote.wrap(archive.write_archive)):
            ck = _timed(lambda: self.ctr.checkpoint(opts, criu_path=self.criu))
        size = os.stat(self.archive).st_size
        self.n += 1
        new = f"bench-archive-{self.n}"
        res = []
        with mock.patch.object(archive, "read_archive", self.read.wrap(archive.read_archive)):
            rs = _timed(lambda: res.append(Container.restore_import(self.archive, name=new, root=self.root,
                                                                    criu_path=self.criu)))
        self.criu_restore = (res[0].criu_duration_us or 0) / 1e6
        self.ctr.delete(force=True)  # the checkpointed original; the imported copy goes on
        self.ctr = Container.load(new, self.root)
        os.unlink(self.archive)
        return ck, rs, size

    def stop(self) -> None:
        self.ctr.delete(force=True)


def criu_cr_rounds(work: str, criu: str, rounds: int) -> tuple[Rows, dict[str, tuple[float, float, int]], float]:
    side = CriuCr(work, criu)
    out: Rows = {k: [] for k in ("ckpt", "ckpt --export", "restore", "restore --import", "size",
                                 "write_archive", "read_archive", "restore after 1 GiB", "CRIU restore",
                                 "CRIU import")}
    once: dict[str, tuple[float, float, int]] = {}
    try:
        bench_manifest.wait_filled(side.ctr)
        rss = side.rss_mib()
        for i in range(rounds + 1):  # round 0 warms up and is not counted
            ck, rs = side.plain()
            criu_rs = side.criu_restore
            eck, ers, size = side.exported()
            criu_ers = side.criu_restore
            _, frs = side.plain(fill=True)
            print(f"  round {i}: ckpt {ck:.2f} / export {eck:.2f} s (archive {side.wrote.seconds:.2f}); "
                  f"restore {rs:.2f} / import {ers:.2f} s (unpack {side.read.seconds:.2f}) / "
                  f"restore after 1 GiB written {frs:.2f}; CRIU's restore_time {criu_rs:.2f} / "
                  f"import's {criu_ers:.2f}", file=sys.stderr, flush=True)
            if i:
                for k, v in zip(out, (ck, eck, rs, ers, size, side.wrote.seconds, side.read.seconds, frs,
                                      criu_rs, criu_ers)):
                    out[k].append(v)
        for comp in ("gzip", "none"):
            once[comp] = side.exported(comp)
    finally:
        side.stop()
    return out, once, rss


def levels(work: str) -> dict[int, tuple[float, float, int]]:
    """zstd levels on the last exported checkpoint's images: (write s, read s, bytes)."""
    images = os.path.join(work, "images-export")
    extra = {archive.SPEC_DUMP: b"{}\n", archive.CONFIG_DUMP: b'{"id": "x"}\n'}
    res = {}
    for level in LEVELS:
        path, into = os.path.join(work, f"level{level}.tar"), os.path.join(work, f"level{level}")
        with mock.patch.object(compression, "ZSTD_LEVEL", level):
            w = _timed(lambda: archive.write_archive(path, images, extra=extra))
        r = _timed(lambda: archive.read_archive(path, into))
        res[level] = (w, r, os.stat(path).st_size)
        os.unlink(path)
        shutil.rmtree(into)
    return res


class PodmanHolding:
    """podman (runtime.testing.podman, as scripts/bench's podman side) running the same holding
    container, without a network (none is needed)."""

    IMAGE = "localhost/criu-cr-bench-archive:1"

    def __init__(self, work: str, criu: str) -> None:
        self.archive = os.path.join(work, "podman-ck.tar")
        self.bundle = bench_manifest.holding_bundle(os.path.join(work, "podman-bundle"), SIZE)
        self.podman = PodmanPeer(os.path.join(work, "podman"), criu)
        self.cid = "bench-archive-podman"
        with open(os.path.join(self.bundle, "config.json")) as f:
            self.args = json.load(f)["process"]["args"]

    def start(self) -> None:
        try:
            self.podman.setup()
            self.podman.import_rootfs(os.path.join(self.bundle, "rootfs"), self.IMAGE)
            self.podman.containers.append(self.cid)
            self.podman.run("run", "-d", "--name", self.cid, "--network", "none", self.IMAGE, *self.args)
            deadline = time.monotonic() + 120
            while "ready" not in self._logs():
                if time.monotonic() > deadline:
                    raise TimeoutError("podman's container did not fill its memory in 120 s")
                time.sleep(0.2)
            time.sleep(0.5)
        except BaseException:
            self.stop()
            raise

    def _logs(self) -> str:
        res = subprocess.run([*self.podman.base, "logs", self.cid], env=self.podman.env(), capture_output=True,
                             text=True, check=False)
        return res.stdout + res.stderr

    def plain(self) -> tuple[float, float]:
        ck = _timed(lambda: self.podman.run("container", "checkpoint", self.cid))
        rs = _timed(lambda: self.podman.run("container", "restore", self.cid))
        return ck, rs

    def exported(self) -> tuple[float, float, int]:
        ck = _timed(lambda: self.podman.run("container", "checkpoint", "--export", self.archive, self.cid))
        size = os.stat(self.archive).st_size
        self.podman.run("rm", "-f", self.cid)
        rs = _timed(lambda: self.podman.run("container", "restore", "--import", self.archive))
        os.unlink(self.archive)
        return ck, rs, size

    def stop(self) -> None:
        for problem in self.podman.cleanup():
            print(problem, file=sys.stderr)


def podman_rounds(work: str, criu: str, rounds: int) -> Rows:
    side = PodmanHolding(work, criu)
    out: Rows = {k: [] for k in ("ckpt", "ckpt --export", "restore", "restore --import", "size")}
    side.start()
    try:
        for i in range(rounds + 1):
            ck, rs = side.plain()
            eck, ers, size = side.exported()
            print(f"  podman round {i}: ckpt {ck:.2f} / export {eck:.2f} s; restore {rs:.2f} / import {ers:.2f} s",
                  file=sys.stderr, flush=True)
            if i:
                for k, v in zip(out, (ck, eck, rs, ers, size)):
                    out[k].append(v)
    finally:
        side.stop()
    return out


def report(name: str, r: Rows) -> None:
    med = {k: statistics.median(v) for k, v in r.items()}
    print(f"{name:22} {med['ckpt']:6.2f} {med['ckpt --export']:8.2f} {med['ckpt --export'] / med['ckpt']:6.2f} | "
          f"{med['restore']:6.2f} {med['restore --import']:8.2f} {med['restore --import'] / med['restore']:6.2f} | "
          f"{med['size'] / MiB:7.0f}" + (f" | {med['write_archive']:6.2f} {med['read_archive']:6.2f} "
                                        f"{med['restore after 1 GiB']:8.2f} | {med['CRIU restore']:5.2f} "
                                        f"{med['CRIU import']:5.2f}" if "write_archive" in med else ""))


def main(rounds: int, podman: bool) -> int:
    criu = bench.locate()
    work = tempfile.mkdtemp(prefix="criu-cr-bench-archive-", dir="/dev/shm")
    load = os.getloadavg()[0]
    failures = []
    pod: Rows | None = None
    try:
        print(f"criu-cr: {rounds} rounds of plain and export/import, 1 GiB container...", file=sys.stderr)
        cr, once, rss = criu_cr_rounds(work, criu, rounds)
        print("zstd levels...", file=sys.stderr)
        lv = levels(work)
        if podman:
            print(f"podman: {rounds} rounds...", file=sys.stderr)
            try:
                pod = podman_rounds(work, criu, rounds)
            except Exception as exc:  # noqa: BLE001 - keep criu-cr's figures
                failures.append(f"podman: {str(exc).splitlines()[0][:300]}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"\n1 GiB container (RSS {rss:.0f} MiB), everything on /dev/shm; {rounds} rounds, medians in s; "
          f"{os.cpu_count()} CPUs, load average {load:.2f} before, {os.getloadavg()[0]:.2f} after")
    print(f"{'':22} {'ckpt':>6} {'--export':>8} {'ratio':>6} | {'restore':>6} {'--import':>8} {'ratio':>6} | "
          f"{'MiB':>7} | {'write':>6} {'unpack':>6} {'rst+1GiB':>8} | CRIU: restore import")
    print("(write/unpack: inside write_archive/read_archive; rst+1GiB: a plain restore after 1 GiB was written "
          "to tmpfs between checkpoint and restore, as an import's unpacking does; CRIU: its restore_time in the "
          "plain restore and in the import's)")
    report("criu-cr API, zstd", cr)
    if pod:
        report("podman 4.3 CLI, zstd", pod)
    for comp, (ck, rs, size) in once.items():
        print(f"{'criu-cr API, ' + comp + ' (once)':22} {'':6} {ck:8.2f} {'':6} | {'':6} {rs:8.2f} {'':6} | "
              f"{size / MiB:7.0f}")
    print("\nzstd level (archive of the last checkpoint alone): write s, read s (with the manifest check), MiB")
    for level, (w, r, size) in lv.items():
        print(f"  level {level}: {w:6.2f} {r:6.2f} {size / MiB:8.1f}")
    for f in failures:
        print(f"FAILED {f}")
    return 1 if failures else 0
