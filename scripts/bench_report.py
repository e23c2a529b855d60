"""Benchmark: every figure of issue 12 in one run and one table (``scripts/bench --report [-n N] [--podman]``).

The sections are the other scripts' own, called one after the other:

1. the reference container (scripts/bench.py): runc's CLI, ``N`` rounds;
   then scripts/bench_cli.py's section: ``criu-cr`` CLI against the API,
   interleaved, and ``python -X importtime`` per command;
2. the kernel-facts cache (runtime/cr/kdat.py): ``criu check`` with the
   cache against without it, interleaved (below);
3. scripts/bench_scale.py's 1 GiB container against runc (``N`` interleaved
   rounds, images on /dev/shm) and the machine's limits in the same rounds;
4. its 1/4/16/32 containers, ``--all`` against podman 4.3's ``-a``
   (``--podman``; ``min(N, 3)`` rounds);
5. its peak RSS during export, import and migration of the 1 GiB container.

Then scripts/bench_table.py's table (Markdown) with the load average seen.
A section that fails is named at the end; the others' rows still print.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

import bench  # scripts/, beside this file
import bench_cli
import bench_scale
import bench_table
from bench_table import Row

from runtime.cr import kdat

KDAT_ROUNDS_FACTOR = 3  # criu check is short: more rounds for the same noise


def kdat_figures(criu: str, rounds: int) -> tuple[float | None, float, str]:
    """(``criu check`` median ms with criu-cr's cache, without it, the cache's state).

    Both sides run ``criu check`` in a mount namespace of their own with a
    directory bound on /run: a copy of the cache, or an empty one (what CRIU
    sees with CRIU_CR_KDAT=0, and runc sees here). Neither is a tmpfs, so
    CRIU saves nothing; the host's /run is not touched.
    """
    status = kdat.ensure(criu)
    work = tempfile.mkdtemp(prefix="criu-cr-bench-kdat-", dir="/var/tmp")
    cached, empty = os.path.join(work, "cached"), os.path.join(work, "empty")
    os.mkdir(empty)
    have = os.path.isfile(kdat.KDAT_FILE)

    def check(run_dir: str) -> Callable[[], None]:
        def step() -> None:
            if run_dir == cached:  # afresh each time: CRIU deletes a cache it finds stale
                shutil.rmtree(cached, ignore_errors=True)
                os.mkdir(cached)
                shutil.copy(kdat.KDAT_FILE, cached)
            subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                            'mount --bind "$1" /run && exec "$2" check', "sh", run_dir, criu],
                           stdin=subprocess.DEVNULL, capture_output=True, check=False)
        return step

    try:
        steps = {"without": check(empty)}
        if have:
            steps["with"] = check(cached)
        times = bench_cli.interleaved(rounds * KDAT_ROUNDS_FACTOR, steps)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
    return med.get("with"), med["without"], status


def _small(criu: str, rounds: int) -> list[Row]:
    """Target 1: runc's CLI on the reference container, then bench_cli's section on it."""
    work = tempfile.mkdtemp(prefix="criu-cr-bench-report-")
    try:
        bundle = bench.reference_bundle(work)
        runc = bench.measure(bench.Runc(work, bundle, criu), rounds)
        times, imports = bench_cli.section(bench.CLI, bench.cli_env(), os.path.join(work, "state"), bundle, criu,
                                           rounds, ready=lambda: bench.wait_tcp(bench.CTR_IP, 80, timeout=10))
    finally:
        bench.reference_teardown()
        shutil.rmtree(work, ignore_errors=True)
    med = statistics.median
    ops = ("checkpoint", "restore")
    runc_ms = {"checkpoint": med(runc["ckpt"]) * 1e3, "restore": med(runc["rst"]) * 1e3}
    return (bench_table.cli_rows({op: med(times[f"cli {op}"]) * 1e3 for op in ops},
                                 {op: med(times[f"api {op}"]) * 1e3 for op in ops}, runc_ms)
            + bench_table.import_rows({name: (p.total_ms, p.modules) for name, p in imports.items()}))


def _scale(work: str, criu: str, rounds: int, podman: bool) -> dict[str, Callable[[], list[Row]]]:
    """Targets 3-5, in ``work`` (on /dev/shm, as scripts/bench --scale)."""

    def big() -> list[Row]:
        _, out = bench_scale.big(work, criu, rounds, False, work)
        return bench_table.big_rows({k: statistics.median(v) for k, v in out.items()}, bench_scale.SIZE)

    return {"3: 1 GiB container": big,
            "4: many containers": lambda: bench_table.many_rows(
                bench_scale.many_figures(work, criu, min(rounds, 3), podman)),
            "5: footprint": lambda: bench_table.footprint_rows(bench_scale.footprint_peaks(work, criu))}


def main(rounds: int, podman: bool) -> int:
    criu = bench.locate()
    started, loads = time.monotonic(), [os.getloadavg()[0]]
    sections: dict[str, Callable[[], list[Row]]] = {
        "1: CLI": lambda: _small(criu, rounds),
        "2: kdat cache": lambda: bench_table.kdat_rows(*kdat_figures(criu, rounds)),
    }
    work = tempfile.mkdtemp(prefix="criu-cr-bench-scale-", dir="/dev/shm")
    sections.update(_scale(work, criu, rounds, podman))
    rows: list[Row] = []
    failures: dict[str, str] = {}
    try:
        for name, run in sections.items():
            print(f"measuring {name}...", file=sys.stderr, flush=True)
            try:
                rows += run()
            except Exception as exc:  # noqa: BLE001 - one failing section must not lose the others' figures
                failures[name] = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
                print(f"{name} failed: {exc}", file=sys.stderr, flush=True)
            loads.append(os.getloadavg()[0])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    took = time.monotonic() - started
    print(f"\nissue 12 in one run, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, kernel {os.uname().release}: "
          f"CRIU {criu}; {rounds} rounds (1 GiB: interleaved with runc; "
          f"--all: {min(rounds, 3)}); medians; {os.cpu_count()} CPUs; load average (1 min) "
          f"{loads[0]:.1f} at start, max {max(loads):.1f} between sections; {took / 60:.1f} min\n")
    print(bench_table.render(rows))
    for name, why in failures.items():
        print(f"\nsection {name} FAILED: {why}")
    return 1 if failures else 0
