"""Benchmark: criu-cr vs runc checkpoint/restore of the same container, same CRIU, one run.

The reference container: busybox httpd + a counter loop, in a pre-created
network namespace. For each side, N rounds of checkpoint then restore (the
service must answer after every restore); wall times per operation, CRIU's
own time read from its log (last timestamp), and the difference ("outside
CRIU": the runtime's own overhead). Reported as medians and as ratios to
runc. Variants of criu-cr show what each runtime choice is worth.

With --podman, podman (Debian 12: 4.3.1, driving runc with the same CRIU)
is a third peer: same busybox rootfs (imported as an image), same command,
same pre-created netns (--network ns:PATH); all its state lives in the
benchmark's temp dir and is removed afterwards.

Then the CLI's own cost (scripts/bench_cli.py, issue 12): ``criu-cr`` against
the API on one container, interleaved, and ``python -X importtime`` figures
per command.

Run with scripts/bench [-n ROUNDS] [--podman]; as root. ``--archive``: export/import of a
1 GiB container instead (scripts/bench_archive.py); ``--inspect``: ``criu-cr inspect`` of a 1 GiB
checkpoint against crit (scripts/bench_inspect.py); ``--report``: every figure of issue 12 in one
table, against its peer and its target (scripts/bench_report.py).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import bench_cli  # noqa: E402 (scripts/, beside this file)
from criu_rpc import locate  # noqa: E402
from runtime.container import Container  # noqa: E402
from runtime.cr.options import CheckpointOptions, RestoreOptions  # noqa: E402
from runtime.net import netns  # noqa: E402
from runtime.testing.bundle import build_busybox_bundle  # noqa: E402
from runtime.testing.net import http_get, wait_tcp  # noqa: E402
from runtime.testing.podman import Podman as PodmanPeer  # noqa: E402
from runtime.testing.podman import podman_available  # noqa: E402

NETNS, HOST_IF = "ccr-bench", "ccrbench0"
HOST_IP, CTR_IP = "10.231.251.1", "10.231.251.2"
SERVICE = "httpd -p 80 -h /www; i=0; while true; do i=$((i+1)); echo $i > /tmp/count; sleep 0.1; done"
_TS = re.compile(rb"^\((\d+\.\d+)\)")
REPO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
# The criu-cr command of the venv running this script, on this checkout's code
# (a git worktree shares the main checkout's venv).
CLI = os.path.join(os.path.dirname(sys.executable), "criu-cr")


def cli_env(**extra: str) -> dict[str, str]:
    """The environment the criu-cr command runs in: this checkout's packages first."""
    return dict(os.environ, PYTHONPATH=os.path.abspath(REPO), **extra)


def criu_log_seconds(path: str) -> float | None:
    """CRIU's own duration: the timestamp of the last line of its log."""
    try:
        with open(path, "rb") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        m = _TS.match(line)
        if m:
            return float(m.group(1))
    return None


class Side:
    """One way of doing checkpoint + restore of the reference container."""

    name = ""

    def start(self) -> None: ...
    def checkpoint(self) -> float | None: ...  # returns CRIU's logged seconds
    def restore(self) -> float | None: ...
    def stop(self) -> None: ...


class Runc(Side):
    def __init__(self, work: str, bundle: str, criu: str) -> None:
        self.name = "runc 1.1 (CLI)"
        self.root = os.path.join(work, "runc-root")
        self.images = os.path.join(work, "runc-images")
        self.bundle, self.criu, self.cid = bundle, criu, "bench-runc"

    def _runc(self, *args: str) -> None:
        subprocess.run(["runc", "--root", self.root, "--criu", self.criu, *args], check=True,
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def start(self) -> None:
        self._runc("run", "-d", "--bundle", self.bundle, self.cid)

    def checkpoint(self) -> float | None:
        shutil.rmtree(self.images, ignore_errors=True)
        self._runc("checkpoint", "--image-path", self.images, "--work-path", self.images, self.cid)
        return criu_log_seconds(os.path.join(self.images, "dump.log"))

    def restore(self) -> float | None:
        self._runc("restore", "-d", "--bundle", self.bundle, "--image-path", self.images,
                   "--work-path", self.images, self.cid)
        return criu_log_seconds(os.path.join(self.images, "restore.log"))

    def stop(self) -> None:
        subprocess.run(["runc", "--root", self.root, "delete", "-f", self.cid], capture_output=True)


class CriuCrApi(Side):
    def __init__(self, name: str, root: str, bundle: str, criu: str, **variant: object) -> None:
        self.name, self.root, self.bundle, self.criu, self.variant = name, root, bundle, criu, variant
        self.ctr: Container | None = None
        self.cid = "bench-" + re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")

    def start(self) -> None:
        self.ctr = Container.run(self.cid, self.bundle, self.root)

    def checkpoint(self) -> float | None:
        res = self.ctr.checkpoint(CheckpointOptions(keep=True, **self.variant), criu_path=self.criu)
        return criu_log_seconds(res.log_path)

    def restore(self) -> float | None:
        res = self.ctr.restore(RestoreOptions(keep=True, network_lock=self.variant.get("network_lock")),
                               criu_path=self.criu)
        return criu_log_seconds(res.log_path)

    def stop(self) -> None:
        if self.ctr is not None:
            self.ctr.delete(force=True)


class CriuCrCli(CriuCrApi):
    """The criu-cr command (a new Python process per operation), like runc's CLI."""

    def _cli(self, *args: str) -> None:
        env = cli_env(CRIU_CR_ROOT=self.root, CRIU_CR_CRIU=self.criu)
        subprocess.run([CLI, *args], check=True, env=env,
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)

    def checkpoint(self) -> float | None:
        self._cli("checkpoint", "--keep", self.cid)
        return criu_log_seconds(os.path.join(self.root, self.cid, "checkpoint", "dump.log"))

    def restore(self) -> float | None:
        self._cli("restore", "--keep", self.cid)
        return criu_log_seconds(os.path.join(self.root, self.cid, "checkpoint", "restore.log"))


class Podman(Side):
    """podman's CLI (a new Go process per operation, then conmon + runc + CRIU), like runc's CLI.

    Its setup, state directory and cleanup are runtime.testing.podman's (the
    tests use the same): everything under <work>/podman, the same CRIU first
    in PATH.
    """

    IMAGE = "localhost/criu-cr-bench:1"

    def __init__(self, work: str, bundle: str, criu: str, netns_path: str) -> None:
        self.podman = PodmanPeer(os.path.join(work, "podman"), criu)
        self.bundle, self.criu, self.netns_path = bundle, criu, netns_path
        self.cid = "bench-podman"
        self.static_dir = ""
        self.name = f"podman {PodmanPeer.version()} (CLI)"

    def start(self) -> None:
        if not podman_available():
            raise RuntimeError("podman is not installed: run scripts/install-peers")
        try:
            self.podman.setup()
            self.podman.import_rootfs(os.path.join(self.bundle, "rootfs"), self.IMAGE)
            self.podman.run_detached(self.cid, self.IMAGE, "sh", "-c", SERVICE, netns_path=self.netns_path)
            self.static_dir = self.podman.run("inspect", "--format", "{{.StaticDir}}", self.cid).strip()
        except BaseException:
            self.stop()
            raise

    def checkpoint(self) -> float | None:
        self.podman.run("container", "checkpoint", "--keep", self.cid)
        log = os.path.join(self.static_dir, "dump.log")
        self._check_criu(log)
        return criu_log_seconds(log)

    def restore(self) -> float | None:
        self.podman.run("container", "restore", "--keep", self.cid)
        return criu_log_seconds(os.path.join(self.static_dir, "restore.log"))

    def _check_criu(self, log: str) -> None:
        """The dump must have been CRIU 4.2 (the same CRIU as the other sides), not a system criu."""
        want = subprocess.run([self.criu, "--version"], capture_output=True, text=True, check=False).stdout
        want_v = re.search(r"Version:\s*(\S+)", want)
        try:
            with open(log, "rb") as f:
                got_v = re.search(rb"Version:\s*(\S+)", f.read(4096))
        except OSError:
            return
        if want_v and got_v and got_v.group(1).decode() != want_v.group(1):
            raise RuntimeError(f"podman ran CRIU {got_v.group(1).decode()}, not {want_v.group(1)} ({self.criu})")

    def stop(self) -> None:
        """Remove the container and the image, even after a failure; nothing of podman's stays mounted."""
        for problem in self.podman.cleanup():
            print(problem, file=sys.stderr)


def reference_bundle(work: str) -> str:
    """The reference container's netns (made afresh; :func:`reference_teardown` removes it) and bundle."""
    netns.teardown(netns=NETNS, host_ifname=HOST_IF)
    netns.create_netns(NETNS)
    netns.setup_veth(netns=NETNS, host_ifname=HOST_IF, ns_ifname="eth0",
                     host_addr=f"{HOST_IP}/30", ns_addr=f"{CTR_IP}/30")
    return build_busybox_bundle(os.path.join(work, "bundle"), ["sh", "-c", SERVICE],
                                netns_path=netns.netns_path(NETNS), files={"/www/index.html": "hi\n"})


def reference_teardown() -> None:
    netns.teardown(netns=NETNS, host_ifname=HOST_IF)


def measure(side: Side, rounds: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"ckpt": [], "ckpt_criu": [], "rst": [], "rst_criu": []}
    side.start()
    try:
        wait_tcp(CTR_IP, 80, timeout=10)
        for i in range(rounds + 1):  # round 0 warms caches and is not counted
            t0 = time.perf_counter()
            c_criu = side.checkpoint()
            t1 = time.perf_counter()
            r_criu = side.restore()
            t2 = time.perf_counter()
            wait_tcp(CTR_IP, 80, timeout=10)
            if http_get(CTR_IP, 80)[0] != 200:
                raise RuntimeError(f"{side.name}: the service did not answer after restore {i}")
            time.sleep(0.05)  # let the check's connections close before the next checkpoint (untimed)
            if i == 0:
                continue
            out["ckpt"].append(t1 - t0)
            out["rst"].append(t2 - t1)
            out["ckpt_criu"].append(c_criu or 0.0)
            out["rst_criu"].append(r_criu or 0.0)
    finally:
        side.stop()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", "--rounds", type=int, default=None, help="default 10 (--archive: 5)")
    ap.add_argument("--json", help="also write the raw figures to this file")
    ap.add_argument("--quick", action="store_true", help="only runc and criu-cr's defaults")
    ap.add_argument("--podman", action="store_true",
                    help="also podman (CLI, runc, same CRIU); scripts/install-peers installs it")
    ap.add_argument("--archive", action="store_true",
                    help="instead: checkpoint --export / restore --import of a 1 GiB container (issue 9)")
    ap.add_argument("--inspect", action="store_true",
                    help="instead: inspect / inspect memory --search of a 1 GiB checkpoint against crit (issue 11)")
    ap.add_argument("--scale", action="store_true",
                    help="instead: a 1 GiB container vs runc, many containers (--all), our RSS (scripts/bench_scale.py)")
    ap.add_argument("--report", action="store_true",
                    help="instead: issue 12's figures (CLI, kdat cache, 1 GiB, --all, RSS) in one table "
                         "with targets (scripts/bench_report.py)")
    ap.add_argument("--migrate", nargs="?", const="16M,256M,1G", metavar="SIZES",
                    help="instead: migration downtime in the two-host lab (issue 10; scripts/bench_migrate.py)")
    args = ap.parse_args()
    if args.migrate:
        import bench_migrate

        return bench_migrate.main(args.migrate, args.json)
    if args.podman and not podman_available():
        ap.error("podman is not installed: run scripts/install-peers")
    if args.archive:
        import bench_archive

        return bench_archive.main(args.rounds or 5, args.podman)
    if args.inspect:
        import bench_inspect

        return bench_inspect.main(args.rounds or 5)
    if args.report:
        import bench_report

        return bench_report.main(args.rounds or 8, args.podman)
    if args.scale:
        import bench_scale

        return bench_scale.main(["--variants", "-n", str(args.rounds or 8)] + (["--podman"] if args.podman else []))
    args.rounds = args.rounds or 10
    criu = locate()
    work = tempfile.mkdtemp(prefix="criu-cr-bench-")
    root = os.path.join(work, "state")
    results: dict[str, dict[str, list[float]]] = {}
    failures: dict[str, str] = {}
    cli_startup = None
    try:
        bundle = reference_bundle(work)
        sides: list[Side] = [Runc(work, bundle, criu), CriuCrApi("criu-cr API", root, bundle, criu),
                             CriuCrCli("criu-cr CLI", root, bundle, criu)]
        if not args.quick:
            sides += [CriuCrApi("criu-cr API, nftables lock", root, bundle, criu, network_lock="nftables"),
                      CriuCrApi("criu-cr API, no network lock", root, bundle, criu, network_lock="skip")]
        if args.podman:
            sides.append(Podman(work, bundle, criu, netns.netns_path(NETNS)))
        for side in sides:
            print(f"measuring {side.name} ({args.rounds} rounds)...", file=sys.stderr, flush=True)
            try:
                results[side.name] = measure(side, args.rounds)
            except Exception as exc:  # noqa: BLE001 - one failing side must not lose the others' figures
                print(f"{side.name} failed: {exc}", file=sys.stderr, flush=True)
                failures[side.name] = str(exc).splitlines()[0][:160]
        cli_startup = _cli_startup(root, bundle, criu, args.rounds, failures)
    finally:
        reference_teardown()
        shutil.rmtree(work, ignore_errors=True)
    report(results, args.rounds, criu)
    if cli_startup is not None:
        runc = results.get("runc 1.1 (CLI)")
        bench_cli.report(*cli_startup, {"checkpoint": statistics.median(runc["ckpt"]) * 1e3,
                                        "restore": statistics.median(runc["rst"]) * 1e3} if runc else {})
    for name, why in failures.items():
        print(f"{name:34} FAILED: {why}")
    if args.json:
        if cli_startup is not None:
            results["cli startup"] = bench_cli.as_json(*cli_startup)
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 1 if failures else 0


def _cli_startup(root: str, bundle: str, criu: str, rounds: int, failures: dict[str, str]) -> tuple | None:
    """scripts/bench_cli.py's section (the CLI's cost beyond the API, imports per command); None if it failed."""
    print(f"measuring the CLI's start-up ({rounds} rounds, imports per command)...", file=sys.stderr, flush=True)
    try:
        return bench_cli.section(CLI, cli_env(), root, bundle, criu, rounds,
                                 ready=lambda: wait_tcp(CTR_IP, 80, timeout=10))
    except Exception as exc:  # noqa: BLE001 - the other figures still count
        failures["CLI start-up"] = str(exc).splitlines()[0][:160]
        return None


def report(results: dict[str, dict[str, list[float]]], rounds: int, criu: str) -> None:
    med = statistics.median
    base = results[next(iter(results))]
    print(f"\nCRIU: {criu}; {rounds} rounds each, medians in ms; ratio = this / runc (wall)")
    hdr = f"{'side':34} {'ckpt':>7} {'CRIU':>7} {'outside':>8} {'ratio':>6} | {'restore':>7} {'CRIU':>7} {'outside':>8} {'ratio':>6}"
    print(hdr)
    print("-" * len(hdr))
    for name, r in results.items():
        ck, ckc, rs, rsc = (med(r[k]) * 1e3 for k in ("ckpt", "ckpt_criu", "rst", "rst_criu"))
        ck_out = med([a - b for a, b in zip(r["ckpt"], r["ckpt_criu"])]) * 1e3
        rs_out = med([a - b for a, b in zip(r["rst"], r["rst_criu"])]) * 1e3
        print(f"{name:34} {ck:7.1f} {ckc:7.1f} {ck_out:8.1f} {ck / (med(base['ckpt']) * 1e3):6.2f} | "
              f"{rs:7.1f} {rsc:7.1f} {rs_out:8.1f} {rs / (med(base['rst']) * 1e3):6.2f}")


if __name__ == "__main__":
    sys.exit(main())
