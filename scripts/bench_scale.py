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
import contextlib
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
from runtime.cr import manifest  # noqa: E402
from runtime.cr.meta import stats_dict  # noqa: E402
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
    return size / best / 1e9


def new_memory_gbs(size: int = SIZE) -> float:
    """GB/s of writing ``size`` bytes into memory never touched before (what a restore fills:
    each page faulted in and zeroed by the kernel, then copied into)."""
    import mmap

    block = os.urandom(MiB)
    with mmap.mmap(-1, size) as m:
        t = time.perf_counter()
        for off in range(0, size, MiB):
            m[off:off + MiB] = block
        took = time.perf_counter() - t
    return size / took / 1e9


# -- big: the 1 GiB container ---------------------------------------------------------

class RuncBig:
    """runc's CLI on the holding container, the same CRIU; images and work path on /dev/shm."""

    def __init__(self, work: str, criu: str, name: str = "runc", images_root: str | None = None) -> None:
        self.bundle = bench_manifest.holding_bundle(os.path.join(work, f"{name}-bundle"), SIZE)
        self.root = os.path.join(work, "runc-root")
        self.images = os.path.join(images_root or work, f"{name}-images")
        self.criu, self.cid = criu, f"bench-scale-{name}"

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
        took = _timed(lambda: self._runc("checkpoint", "--image-path", self.images, "--work-path", self.images,
                                         self.cid))
        self.criu_s = stats_dict(self.images, "dump").get("frozen_time", 0) / 1e6
        return took

    def restore(self) -> float:
        took = _timed(lambda: self._runc("restore", "-d", "--bundle", self.bundle, "--image-path", self.images,
                                         "--work-path", self.images, self.cid))
        self.criu_s = stats_dict(self.images, "restore").get("restore_time", 0) / 1e6
        return took

    def stop(self) -> None:
        subprocess.run(["runc", "--root", self.root, "delete", "-f", self.cid], capture_output=True)


class CriuCrBig:
    """criu-cr's API on the holding container (checkpoint then restore in place)."""

    def __init__(self, work: str, criu: str, name: str, **variant: object) -> None:
        self.root = os.path.join(work, "state")
        self.images = os.path.join(str(variant.get("images_root") or work), f"images-{name}")
        self.bundle = bench_manifest.holding_bundle(os.path.join(work, f"bundle-{name}"), SIZE)
        self.criu, self.cid, self.variant = criu, f"bench-scale-{name}", variant
        self.ctr: Container | None = None

    def start(self) -> None:
        self.ctr = Container.run(self.cid, self.bundle, self.root)
        bench_manifest.wait_filled(self.ctr)

    def checkpoint(self) -> float:
        if not self.variant.get("replace"):
            # as runc's side: a fresh directory (replacing a checkpoint frees its 1 GiB of tmpfs
            # first: ~0.17 s here, measured by the "over its last checkpoint" variant)
            shutil.rmtree(self.images, ignore_errors=True)
        level = self.variant.get("log_level", 4)
        opts = CheckpointOptions(image_path=self.images, log_level=level)
        res = []
        with self._patch():
            took = _timed(lambda: res.append(self.ctr.checkpoint(opts, criu_path=self.criu)))
        self.criu_s = res[0].stats.get("frozen_time", 0) / 1e6
        return took

    def restore(self) -> float:
        opts = RestoreOptions(image_path=self.images, log_level=self.variant.get("log_level", 4),
                              verify=self.variant.get("manifest", True))
        res = []
        took = _timed(lambda: res.append(self.ctr.restore(opts, criu_path=self.criu)))
        self.criu_s = (res[0].criu_duration_us or 0) / 1e6
        return took

    def _patch(self) -> contextlib.AbstractContextManager[object]:
        if self.variant.get("manifest") is False:  # neither the pages followed nor the manifest sealed
            stack = contextlib.ExitStack()
            stack.enter_context(mock.patch.object(manifest, "follow", lambda d: contextlib.nullcontext(None)))
            stack.enter_context(mock.patch.object(manifest, "seal"))
            return stack
        return contextlib.nullcontext()

    def stop(self) -> None:
        if self.ctr is not None:
            self.ctr.delete(force=True)


def big(work: str, criu: str, rounds: int, variants: bool, disk: str) -> tuple[Table, Rows]:
    """``disk``: a directory on the disk, for the variants whose images are not on tmpfs."""
    sides: dict[str, object] = {"runc": RuncBig(work, criu), "criu-cr": CriuCrBig(work, criu, "default")}
    if variants:
        sides["runc, images on disk"] = RuncBig(work, criu, "runc-disk", images_root=disk)
        sides["criu-cr, images on disk"] = CriuCrBig(work, criu, "disk", images_root=disk)
        sides["criu-cr, CRIU log level 2"] = CriuCrBig(work, criu, "log2", log_level=2)
        sides["criu-cr, no manifest/verify"] = CriuCrBig(work, criu, "nomanifest", manifest=False)
        sides["criu-cr, over its last checkpoint"] = CriuCrBig(work, criu, "replace", replace=True)
    out: Rows = {}
    started = []
    try:
        for name, side in sides.items():
            side.start()
            started.append(side)
            for op in ("ckpt", "restore"):
                out[f"{name} {op}"], out[f"{name} {op} CRIU"] = [], []
        limits: Rows = {"tmpfs write GB/s": [], "memcpy GB/s": [], "new memory GB/s": []}
        for i in range(rounds + 1):  # round 0 warms up and is not counted
            line = []
            for name, side in sides.items():
                ck = side.checkpoint()
                ck_criu = side.criu_s
                rs = side.restore()
                line.append(f"{name} {ck:.2f}/{rs:.2f} (CRIU {ck_criu:.2f}/{side.criu_s:.2f})")
                if i:
                    for key, v in (("ckpt", ck), ("ckpt CRIU", ck_criu), ("restore", rs),
                                   ("restore CRIU", side.criu_s)):
                        out[f"{name} {key}"].append(v)
            if i:
                limits["tmpfs write GB/s"].append(tmpfs_write_gbs())
                limits["memcpy GB/s"].append(memcpy_gbs())
                limits["new memory GB/s"].append(new_memory_gbs())
            print(f"  big round {i}: " + "; ".join(line), file=sys.stderr, flush=True)
        out.update(limits)
    finally:
        for side in started:
            side.stop()
    med = {k: statistics.median(v) for k, v in out.items()}
    gb = SIZE / 1e9
    table: Table = []
    for name in sides:
        if name.startswith("runc"):
            continue
        peer = "runc, images on disk" if name.endswith("on disk") else "runc"
        for op in ("ckpt", "restore"):
            table.append(("1 GiB", f"{name}: {op} s", med[f"{name} {op}"], med[f"{peer} {op}"], "s"))
            if name == "criu-cr":
                table.append(("1 GiB", f"{name}: {op}, CRIU's own s", med[f"{name} {op} CRIU"],
                              med[f"runc {op} CRIU"], "s"))
    for op in ("ckpt", "restore"):
        table.append(("1 GiB", f"criu-cr {op} GB/s", gb / med[f"criu-cr {op}"], gb / med[f"runc {op}"], "GB/s"))
    table.append(("1 GiB", "limit: tmpfs write (dd) GB/s", med["tmpfs write GB/s"], None, "GB/s"))
    table.append(("1 GiB", "limit: memcpy GB/s", med["memcpy GB/s"], None, "GB/s"))
    table.append(("1 GiB", "limit: writing new memory GB/s", med["new memory GB/s"], None, "GB/s"))
    return table, out


# -- many: checkpoint --all / restore --all --------------------------------------------

SMALL = ["sh", "-c", "i=0; while true; do i=$((i+1)); echo $i > /tmp/count; sleep 0.1; done"]
COUNTS = (1, 4, 16, 32)


def _ours_many(work: str, criu: str, n: int, rounds: int) -> tuple[list[float], list[float]]:
    """criu-cr's CLI on ``n`` small containers (each its own netns, like podman's --network none)."""
    from runtime.testing.bundle import build_busybox_bundle

    root = os.path.join(work, f"many-{n}")
    bundle = os.path.join(work, "many-bundle")
    if not os.path.isdir(bundle):
        build_busybox_bundle(bundle, SMALL)
    made = []
    ck: list[float] = []
    rs: list[float] = []
    try:
        for i in range(n):
            made.append(Container.run(f"many-{i}", bundle, root))
        for i in range(rounds + 1):  # round 0 warms up and is not counted
            t1 = _timed(lambda: _cli(root, criu, "checkpoint", "--all", tag="many"))
            t2 = _timed(lambda: _cli(root, criu, "restore", "--all", tag="many"))
            if i:
                ck.append(t1)
                rs.append(t2)
    finally:
        for ctr in made:
            try:
                ctr.delete(force=True)
            except Exception as exc:  # noqa: BLE001 - the others must go too
                print(f"cleanup of {ctr.id}: {exc}", file=sys.stderr)
    return ck, rs


def _podman_many(work: str, criu: str, n: int, rounds: int) -> tuple[list[float], list[float]]:
    """podman 4.3's ``container checkpoint -a`` / ``restore -a`` on ``n`` small containers."""
    from runtime.testing.bundle import build_busybox_bundle
    from runtime.testing.podman import Podman

    pod = Podman(os.path.join(work, f"pm{n}"), criu)  # podman: runroot <= 50 characters
    image = "localhost/criu-cr-bench-many:1"
    ck: list[float] = []
    rs: list[float] = []
    try:
        pod.setup()
        bundle = os.path.join(work, "many-bundle")
        if not os.path.isdir(bundle):
            build_busybox_bundle(bundle, SMALL)
        pod.import_rootfs(os.path.join(bundle, "rootfs"), image)
        for i in range(n):
            pod.containers.append(f"many-{i}")
            pod.run("run", "-d", "--name", f"many-{i}", "--network", "none", image, *SMALL)
        for i in range(rounds + 1):
            t1 = _timed(lambda: pod.run("container", "checkpoint", "-a"))
            t2 = _timed(lambda: pod.run("container", "restore", "-a"))
            if i:
                ck.append(t1)
                rs.append(t2)
    finally:
        for problem in pod.cleanup():
            print(problem, file=sys.stderr)
    return ck, rs


def many(work: str, criu: str, rounds: int, podman: bool) -> Table:
    table: Table = []
    med = statistics.median
    for n in COUNTS:
        ours = _ours_many(work, criu, n, rounds)
        peer = _podman_many(work, criu, n, rounds) if podman else None
        print(f"  many {n}: criu-cr {med(ours[0]):.2f}/{med(ours[1]):.2f} s"
              + (f"; podman {med(peer[0]):.2f}/{med(peer[1]):.2f} s" if peer else ""), file=sys.stderr, flush=True)
        for k, op in enumerate(("checkpoint --all", "restore --all")):
            o, p = med(ours[k]), (med(peer[k]) if peer else None)
            table.append((f"{n} ctrs", f"{op} s", o, p, "s"))
            table.append((f"{n} ctrs", f"{op} containers/s", n / o, n / p if p else None, "c/s"))
    return table


# -- footprint: peak RSS during export, import, migrate ---------------------------------

TAG = "CRIU_CR_BENCH_FOOTPRINT"


class PeakSampler:
    """Every 10 ms: the VmHWM of the processes carrying ``TAG=<value>`` in their environment.

    ``ours``: criu-cr's own processes (the CLI, and the monitor a restore forks
    from it). ``criu``: the CRIU children of ours; the
    tasks a restore forks are CRIU's copies too, but in the container's pid
    namespace, and grow to the container's size: not counted.
    """

    def __init__(self, value: str) -> None:
        import threading

        self.needle = f"{TAG}={value}".encode()
        self.ours: dict[int, int] = {}
        self.criu: dict[int, int] = {}
        self._parent: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "PeakSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(0.01)

    def sample(self) -> None:
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            pid = int(name)
            try:
                with open(f"/proc/{pid}/status", "rb") as f:
                    status = dict(line.split(b":", 1) for line in f.read().splitlines() if b":" in line)
                ppid = int(status[b"PPid"])
                if ppid not in self.ours and not status[b"Name"].strip().startswith(b"python"):
                    # Only ours and their children are read further: reading another process's
                    # cmdline or environ waits for its mm, which a dump holds for seconds.
                    continue
                if pid not in self.ours and pid not in self.criu and ppid not in self.ours:
                    # (a child of ours is looked at whatever its environment: CRIU rewrites its own)
                    with open(f"/proc/{pid}/environ", "rb") as f:
                        if self.needle not in f.read().split(b"\0"):
                            continue
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    argv = f.read()  # raw: CRIU rewrites its own argv (one string)
            except (OSError, KeyError, ValueError):
                continue
            hwm = int(status.get(b"VmHWM", b"0 kB").split()[0]) * 1024
            if b"runtime.cli" in argv:
                self.ours[pid] = max(self.ours.get(pid, 0), hwm)
                self._parent[pid] = ppid
            elif b"criu" in argv and ppid in self.ours:
                # CRIU (it retitles itself "criu: dump --rpc ..."); a child that has just exec'ed
                # it was a copy of ours a moment ago. Not the tasks a restore forks (CRIU's
                # copies, in the container's pid namespace, growing to the container's size).
                self.ours.pop(pid, None)
                if len(status.get(b"NSpid", b"").split()) == 1:
                    self.criu[pid] = max(self.criu.get(pid, 0), hwm)

    def peaks(self, cli_pid: int) -> tuple[int, int, int]:
        """(the CLI's peak, the monitor's (ours, not a child of ours: the middle of its double
        fork and a child not yet exec'ed are copies of the CLI), CRIU's peak), bytes."""
        others = [v for k, v in self.ours.items() if k != cli_pid and self._parent.get(k) not in self.ours]
        return self.ours.get(cli_pid, 0), max(others, default=0), max(self.criu.values(), default=0)


def _cli(root: str, criu: str, *args: str, tag: str, wait: bool = True) -> subprocess.Popen:
    env = dict(os.environ, CRIU_CR_ROOT=root, CRIU_CR_CRIU=criu, **{TAG: tag})
    proc = subprocess.Popen([sys.executable, "-m", "runtime.cli", *args], env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    if wait:
        out, err = proc.communicate()
        if proc.returncode:
            raise RuntimeError(f"criu-cr {' '.join(args)}: {err.strip()[-400:]}")
    return proc


def footprint(work: str, criu: str) -> Table:
    """Peak RSS of criu-cr (CLI; the restore's monitor) and of CRIU in export, import and migrate."""
    root, root2 = os.path.join(work, "fp-state"), os.path.join(work, "fp-state2")
    archive = os.path.join(work, "fp.tar.zst")
    token = os.path.join(work, "fp.token")
    with open(token, "w") as f:
        f.write(os.urandom(16).hex())
    ctr = Container.run("bench-fp", bench_manifest.holding_bundle(os.path.join(work, "fp-bundle"), SIZE), root)
    table: Table = []
    cid = ctr.id
    try:
        bench_manifest.wait_filled(ctr)
        rows: dict[str, tuple[int, int, int]] = {}
        with PeakSampler("export") as s:
            p = _cli(root, criu, "checkpoint", "-q", "--export", archive, cid, tag="export")
        rows["checkpoint --export (zstd)"] = s.peaks(p.pid)
        ctr.delete(force=True)
        with PeakSampler("import") as s:
            p = _cli(root, criu, "restore", "-q", "--import", archive, "--name", "bench-fp2", tag="import")
        rows["restore --import"] = s.peaks(p.pid)
        cid = "bench-fp2"
        os.unlink(archive)
        with PeakSampler("migrate") as s:
            rx = _cli(root2, criu, "receive", "--listen", "127.0.0.1:0", "--token-file", token, "--once",
                      tag="migrate", wait=False)
            addr = rx.stdout.readline().split()[-1]
            tx = _cli(root, criu, "migrate", "--token-file", token, cid, addr, tag="migrate")
            rx.communicate(timeout=300)
            if rx.returncode:
                raise RuntimeError(f"criu-cr receive failed ({rx.returncode})")
        root = root2
        sent, _, criu_peak = s.peaks(tx.pid)
        got, monitor, _ = s.peaks(rx.pid)
        rows["migrate (sender)"] = (sent, 0, criu_peak)
        rows["receive (receiver)"] = (got, monitor, criu_peak)
        for what, (cli_peak, monitor_peak, criu_peak) in rows.items():
            table.append(("footprint", f"{what}: criu-cr MiB (<= 64)", cli_peak / MiB, None, "MiB"))
            if monitor_peak:
                table.append(("footprint", f"{what}: its monitor MiB", monitor_peak / MiB, None, "MiB"))
            table.append(("footprint", f"{what}: CRIU MiB", criu_peak / MiB, None, "MiB"))
        print(f"  footprint: {rows}", file=sys.stderr, flush=True)
    finally:
        try:
            Container.load(cid, root).delete(force=True)
        except Exception as exc:  # noqa: BLE001 - the figures are printed anyway
            print(f"cleanup of {cid}: {exc}", file=sys.stderr)
    return table


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
            disk = tempfile.mkdtemp(prefix="criu-cr-bench-scale-", dir="/var/tmp")
            try:
                t, _ = big(work, criu, args.rounds, args.variants, disk)
            finally:
                shutil.rmtree(disk, ignore_errors=True)
            table += t
        if "many" in only:
            table += many(work, criu, min(args.rounds, 3), args.podman)
        if "footprint" in only:
            table += footprint(work, criu)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print_table(table, f"CRIU: {criu}; medians of {args.rounds} interleaved rounds; images on /dev/shm")
    return 0


if __name__ == "__main__":
    sys.exit(main())
