"""Benchmark: what the checkpoint manifest costs at 1 GiB (issue 7: <= 5% of the checkpoint time).

1. Hashing alone: a 1 GiB file of random bytes on tmpfs (/dev/shm), hashed
   as the manifest does (XXH3-128, 64 MiB chunks) on 1, 2 and the default
   number of threads; BLAKE3 beside it when the ``blake3`` package is there.
2. In a checkpoint: a busybox container holding 1 GiB of random bytes in
   memory (``tail -c 1G`` buffering a pipe that never ends: one 1 GiB heap
   block, RSS ~1 GiB) is checkpointed with --leave-running to /dev/shm, N
   rounds of three interleaved variants: no manifest, the manifest hashed
   after the dump, the manifest with the pages hashed while CRIU writes them
   (the default). Medians of the wall time and of CRIU's frozen time.
   (Leave-running: the rounds need no restore, whose cgroup handling fails
   on hosts with foreign named v1 hierarchies.) Then the verification a
   restore would do, timed on the last checkpoint.

Run with scripts/bench-manifest [-n ROUNDS] [--size MiB]; as root.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from unittest import mock

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from runtime.container import Container  # noqa: E402
from runtime.cr import manifest  # noqa: E402
from runtime.cr.options import CheckpointOptions, RestoreOptions, RestoreResult  # noqa: E402
from runtime.errors import CheckpointError, RestoreError  # noqa: E402
from runtime.testing.bundle import build_busybox_bundle  # noqa: E402

MiB = 1 << 20


def best(fn, rounds: int = 5) -> float:
    """Fastest of ``rounds`` runs, seconds (the first run also warms the page cache)."""
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def hashing(size: int) -> list[tuple[str, float]]:
    work = tempfile.mkdtemp(prefix="bench-manifest-", dir="/dev/shm")
    try:
        with open(os.path.join(work, "pages-1.img"), "wb") as f:
            for _ in range(size // MiB):
                f.write(os.urandom(MiB))
        rows = [(f"xxh3-128, {n} thread{'s' if n > 1 else ''}",
                 best(lambda n=n: manifest.build_manifest(work, threads=n))) for n in (1, 2)]
        rows.append(("xxh3-128, default threads (write_manifest)", best(lambda: manifest.write_manifest(work))))
        rows.append(("verify_manifest (default threads)", best(lambda: manifest.verify_manifest(work))))
        try:
            import blake3
        except ImportError:
            rows.append(("blake3: not installed (pip install blake3 to compare)", float("nan")))
        else:
            path = os.path.join(work, "pages-1.img")
            rows.append(("blake3, 1 thread, mmap", best(lambda: blake3.blake3().update_mmap(path))))
            rows.append(("blake3, auto threads, mmap",
                         best(lambda: blake3.blake3(max_threads=blake3.blake3.AUTO).update_mmap(path))))
        return rows
    finally:
        shutil.rmtree(work)


def holding_bundle(directory: str, size: int) -> str:
    """A busybox bundle whose container holds ``size`` random bytes in one heap block (RSS ~size),
    saying ``ready`` on its stderr once filled (see :func:`wait_filled`). Also scripts/bench --archive's."""
    hold = f"(head -c {size} /dev/urandom; echo ready >&2; sleep 1000000) | tail -c {size}"
    return build_busybox_bundle(directory, ["sh", "-c", hold], applets=("sh", "head", "tail", "echo", "sleep"))


def wait_filled(ctr: Container, timeout: float = 120) -> None:
    """Until the holding container has filled its memory (and a moment more for the last copy)."""
    deadline = time.monotonic() + timeout
    while b"ready" not in ctr.logs():
        if time.monotonic() > deadline:
            raise TimeoutError(f"the container did not fill its memory in {timeout:.0f} s")
        time.sleep(0.1)
    time.sleep(0.5)


def container_rounds(size: int, rounds: int, criu: str | None, restore_rounds: int = 0) -> dict[str, list[float]]:
    work = tempfile.mkdtemp(prefix="bench-manifest-")
    images = tempfile.mkdtemp(prefix="bench-manifest-images-", dir="/dev/shm")
    os.rmdir(images)
    bundle = holding_bundle(os.path.join(work, "bundle"), size)
    ctr = Container.run("bench-manifest", bundle, os.path.join(work, "root"))
    empty = tempfile.mkdtemp(prefix="bench-manifest-empty-")
    variants = {
        "no manifest": mock.patch.object(manifest, "seal"),
        "manifest, hashed after the dump": mock.patch.object(manifest, "follow", lambda d: manifest.Follower(empty)),
        "manifest, pages followed": _nothing(),
    }
    out: dict[str, list[float]] = {"rss MiB": [], "verify": [], "verify before CRIU (all but the pages' hashes)": []}
    for name in variants:
        out[name] = []
        out[f"{name}: CRIU frozen"] = []
    try:
        wait_filled(ctr)
        out["rss MiB"].append(sum(_rss(p) for p in ctr.ps()) / MiB)
        _checkpoint(ctr, images, criu)  # warm-up
        for _ in range(rounds):
            for name, patch in variants.items():
                with patch:
                    took, frozen = _checkpoint(ctr, images, criu)
                out[name].append(took)
                out[f"{name}: CRIU frozen"].append(frozen)
        for _ in range(rounds):
            t = time.perf_counter()
            manifest.verify_manifest(images)
            out["verify"].append(time.perf_counter() - t)
            t = time.perf_counter()
            manifest.verify_but_pages(images)
            out["verify before CRIU (all but the pages' hashes)"].append(time.perf_counter() - t)
        if restore_rounds:
            out.update(_restore_rounds(ctr, images, criu, restore_rounds))
    finally:
        try:
            ctr.delete(force=True)
        finally:
            shutil.rmtree(images, ignore_errors=True)
            shutil.rmtree(empty, ignore_errors=True)
            shutil.rmtree(work, ignore_errors=True)
    return out


def _checkpoint(ctr: Container, images: str, criu: str | None, *, leave_running: bool = True) -> tuple[float, float]:
    """(seconds of one checkpoint, CRIU's frozen time in seconds). Retried (and said) when CRIU
    fails: on a machine shared with fault tests, CRIU's walk of a host cgroup hierarchy can race
    with cgroups that come and go."""
    for _ in range(5):
        t = time.perf_counter()
        try:
            res = ctr.checkpoint(CheckpointOptions(image_path=images, leave_running=leave_running, keep=True),
                                 criu_path=criu)
            return time.perf_counter() - t, res.stats.get("frozen_time", 0) / 1e6
        except CheckpointError as exc:
            print(f"(checkpoint failed, retrying: {str(exc)[:160]})", file=sys.stderr)
    raise RuntimeError("5 checkpoints failed in a row")


RESTORE_VARIANTS = {"restore, verified": True, "restore, --no-verify": False}


def _restore_rounds(ctr: Container, images: str, criu: str | None, rounds: int) -> dict[str, list[float]]:
    """Checkpoint (stopping) then restore, the variants interleaved; seconds of each, CRIU's own
    restore time, and how long CRIU's post-restore waited for the pages' hashes (in the monitor,
    written to a file: the monitor is another process)."""
    waits = tempfile.NamedTemporaryFile(prefix="bench-manifest-waits-", dir="/dev/shm", delete=False).name
    real_wait = manifest.HashCheck.wait

    def timed_wait(self: manifest.HashCheck) -> None:
        t = time.perf_counter()
        try:
            real_wait(self)
        finally:
            with open(waits, "a") as f:
                f.write(f"{time.perf_counter() - t}\n")

    try:
        with mock.patch.object(manifest.HashCheck, "wait", timed_wait):
            out = _restore_variants(ctr, images, criu, rounds)
        with open(waits) as f:
            out["post-restore waited for the hashes"] = [float(x) for x in f.read().split()][1:]
    finally:
        os.unlink(waits)
    return out


def _restore_variants(ctr: Container, images: str, criu: str | None, rounds: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"checkpoint (stopping)": []}
    for name in RESTORE_VARIANTS:
        out[name] = []
        out[f"{name}: CRIU"] = []
    for i in range(rounds + 1):  # the first round warms up
        for name, verify in RESTORE_VARIANTS.items():
            took, _ = _checkpoint(ctr, images, criu, leave_running=False)
            t = time.perf_counter()
            res = _restore(ctr, images, criu, verify)
            restored = time.perf_counter() - t
            if i:
                out["checkpoint (stopping)"].append(took)
                out[name].append(restored)
                out[f"{name}: CRIU"].append(res.criu_duration_us / 1e6)
    return out


def _restore(ctr: Container, images: str, criu: str | None, verify: bool) -> RestoreResult:
    try:
        return ctr.restore(RestoreOptions(image_path=images, verify=verify), criu_path=criu)
    except RestoreError as exc:
        raise RuntimeError(f"the restore failed: {exc}") from exc


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--rounds", type=int, default=5, help="rounds with and without the manifest each")
    parser.add_argument("--restore-rounds", type=int, default=7,
                        help="checkpoint+restore rounds with and without verification each (0: none)")
    parser.add_argument("--size", type=int, default=1024, help="MiB of memory / pages (default 1024)")
    parser.add_argument("--criu", default=None, help="criu binary (default $CRIU_CR_CRIU, then PATH)")
    args = parser.parse_args()
    size = args.size * MiB
    print(f"# hashing {args.size} MiB on tmpfs, best of 5, {os.cpu_count()} CPUs")
    for name, secs in hashing(size):
        print(f"{name:48s} {secs * 1000:8.1f} ms  {size / secs / 1e9 if secs == secs else 0:5.1f} GB/s")
    print(f"\n# a container holding {args.size} MiB, images on /dev/shm, {args.rounds} rounds each, medians "
          f"(load average before: {os.getloadavg()[0]:.2f})")
    res = container_rounds(size, args.rounds, args.criu, args.restore_rounds)
    print(f"container RSS {res.pop('rss MiB')[0]:.0f} MiB")
    med = {k: statistics.median(v) for k, v in res.items()}
    for k, v in res.items():
        print(f"{k:44s} median {med[k] * 1000:7.0f} ms   rounds {[round(x * 1000) for x in v]}")
    base = med["no manifest"]
    for name in ("manifest, hashed after the dump", "manifest, pages followed"):
        extra = med[name] - base
        frozen = med[f"{name}: CRIU frozen"] - med["no manifest: CRIU frozen"]
        print(f"{name}: {extra * 1000:+.0f} ms = {extra / base * 100:+.1f}% of the checkpoint "
              f"({base * 1000:.0f} ms); frozen time {frozen * 1000:+.0f} ms")
    print(f"whole verification alone: {med['verify'] * 1000:.0f} ms = {med['verify'] / base * 100:.1f}% "
          "of the checkpoint time")
    before = med["verify before CRIU (all but the pages' hashes)"]
    print(f"verification before CRIU (all but the pages' hashes): {before * 1000:.1f} ms = "
          f"{before / base * 100:.1f}% of the checkpoint time")
    if args.restore_rounds:
        ck = med["checkpoint (stopping)"]
        extra = med["restore, verified"] - med["restore, --no-verify"]
        print(f"restore verified vs --no-verify: {extra * 1000:+.0f} ms = {extra / ck * 100:+.1f}% of the "
              f"stopping checkpoint ({ck * 1000:.0f} ms), {extra / base * 100:+.1f}% of the leave-running one")
    print(f"(load average after: {os.getloadavg()[0]:.2f}; the machine may be shared with other test runs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
