"""Benchmark (issue 11, "Performance"): ``criu-cr inspect`` of a 1 GiB checkpoint, against CRIU's crit.

The container is scripts/bench_manifest.py's (a busybox ``tail -c 1G``
buffering a never-ending pipe of random bytes: RSS ~1 GiB), checkpointed
once into /dev/shm (tmpfs: the disk is not what is measured). Then, N
rounds each, medians:

  inspect --all   in-process (open + collect + render) and as a command
                  (``python -m runtime.cli inspect --all DIR``, Python's start-up
                  included); also of the checkpoint as an uncompressed and a
                  zstd export archive
  search          ``inspect memory --pid P --search`` of a string that is not
                  there (every dumped byte of the 1 GiB process is read), in-process:
                  GB/s; and a regular expression
  crit            ``crit x DIR ps``, ``fds``, ``mems`` (python3-pycriu 4.2 from
                  scripts/install-peers, run by this venv's Python)
  checkpointctl   ``checkpointctl inspect --all`` of the two archives (it reads no directory)

Targets: inspect --all <= 1 s; search >= 1 GB/s.
Run as ``scripts/bench --inspect [-n ROUNDS]`` or ``.venv/bin/python scripts/bench_inspect.py``; as root.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import bench_manifest  # noqa: E402 (scripts/, beside this file)

from runtime.container import Container  # noqa: E402
from runtime.cr.options import CheckpointOptions  # noqa: E402
from runtime.inspect import memsearch  # noqa: E402
from runtime.inspect.collect import Sections, collect  # noqa: E402
from runtime.inspect.render import render  # noqa: E402
from runtime.inspect.sources import open_source  # noqa: E402

MiB = 1 << 20
SIZE = 1024 * MiB
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PEERS = os.path.join(os.environ.get("CRIU_CR_PEERS", "/opt/criu-cr/peers"), "bin")
CRIT, CHECKPOINTCTL = os.path.join(PEERS, "crit"), os.path.join(PEERS, "checkpointctl")


def _median(fn: Callable[[], object], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _inspect_all(source: str) -> str:
    with open_source(source) as src:
        return render(collect(src, Sections.everything()), details=True, vmas=True)


def _run(argv: list[str], env: dict[str, str] | None = None) -> None:
    res = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=REPO, env=env, text=True)
    if res.returncode:
        raise RuntimeError(f"{' '.join(argv)}: exit {res.returncode}: {res.stderr.strip()[-300:]}")


def _search(images: str, pid: int, **pattern: str) -> tuple[int, int]:
    with open_source(images) as src:
        from criu_image import Checkpoint

        mem = Checkpoint(src).memory(pid)
        compiled, window = memsearch.compile_pattern(**pattern)
        hits = sum(1 for _ in memsearch.search(mem, compiled, window, str))
        return hits, mem.dumped_bytes()


def make_checkpoints(work: str, criu: str | None) -> tuple[str, str, str]:
    """The holding container checkpointed (left running) three times: into a directory, as an
    uncompressed and as a zstd export archive (real spec.dump/config.dump: checkpointctl reads them)."""
    bundle = bench_manifest.holding_bundle(os.path.join(work, "bundle"), SIZE)
    ctr = Container.run("bench-inspect", bundle, os.path.join(work, "state"))
    out = []
    try:
        bench_manifest.wait_filled(ctr)
        for name, compress in (("", ""), ("ck.tar", "none"), ("ck.tar.zst", "zstd")):
            images = os.path.join(work, f"images{'-' + compress if compress else ''}")
            export = os.path.join(work, name) if name else None
            ctr.checkpoint(CheckpointOptions(image_path=images, leave_running=True, export=export,
                                             compress=compress or "zstd"), criu_path=criu)
            out.append(export or images)
        return out[0], out[1], out[2]
    finally:
        ctr.delete(force=True)


def main(rounds: int = 5, criu: str | None = None) -> int:
    work = tempfile.mkdtemp(prefix="criu-cr-bench-inspect-", dir="/dev/shm")
    try:
        print(f"# inspect of a 1 GiB checkpoint on /dev/shm, {rounds} rounds, medians "
              f"({os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f})", flush=True)
        images, plain, zst = make_checkpoints(work, criu)
        total = sum(e.stat().st_size for e in os.scandir(images))
        with open_source(images) as src:
            report = collect(src, Sections(memory=True, args=False))
        big = max(report.processes, key=lambda p: p.memory.dumped if p.memory else 0)
        print(f"checkpoint: {total / MiB:.0f} MiB in {len(os.listdir(images))} files; "
              f"pid {big.pid} ({big.comm}) has {big.memory.dumped / MiB:.0f} MiB dumped", flush=True)
        _inspect_all(images)  # warm the page cache and the imports
        rows: list[tuple[str, float, str]] = []
        for label, source in (("directory", images), ("archive, none", plain), ("archive, zstd", zst)):
            rows.append((f"inspect --all ({label}), in-process", _median(lambda s=source: _inspect_all(s), rounds), ""))
        py = sys.executable
        rows.append(("inspect --all (directory), command",
                     _median(lambda: _run([py, "-m", "runtime.cli", "inspect", "--all", images]), rounds), ""))
        rows.append(("inspect (default tree), command",
                     _median(lambda: _run([py, "-m", "runtime.cli", "inspect", images]), rounds), ""))
        for kind, pattern in (("string", {"string": "criu-cr: not in memory"}),
                              ("regex", {"regex": r"criu-cr-[0-9]{6}-marker"})):
            found: list[tuple[int, int]] = []
            secs = _median(lambda p=pattern: found.append(_search(images, big.pid, **p)), rounds)
            rows.append((f"inspect memory --search ({kind}), in-process", secs,
                         f"{found[-1][1] / secs / 1e9:.2f} GB/s"))
        if os.path.exists(CRIT):
            env = dict(os.environ, CRIU_CR_PYTHON=py)
            for what in ("ps", "fds", "mems"):
                rows.append((f"crit x DIR {what}", _median(lambda w=what: _run([CRIT, "x", images, w], env), rounds), ""))
        else:
            print(f"(no crit at {CRIT}: run scripts/install-peers)")
        if os.path.exists(CHECKPOINTCTL):  # archives only
            for label, source in (("archive, none", plain), ("archive, zstd", zst)):
                try:
                    secs = _median(lambda s=source: _run([CHECKPOINTCTL, "inspect", "--all", s]), rounds)
                except RuntimeError as exc:
                    print(f"checkpointctl failed: {exc}")
                    continue
                rows.append((f"checkpointctl inspect --all ({label})", secs, ""))
        print("\n| what | median s | rate |\n|---|---|---|")
        for label, secs, rate in rows:
            print(f"| {label} | {secs:.3f} | {rate} |")
        out = io.StringIO(_inspect_all(images))
        print(f"\n(inspect --all printed {len(out.getvalue().splitlines())} lines)")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", "--rounds", type=int, default=5)
    ap.add_argument("--criu", default=None, help="criu binary (default $CRIU_CR_CRIU, then PATH)")
    a = ap.parse_args()
    sys.exit(main(a.rounds, a.criu))
