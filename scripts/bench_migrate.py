"""Benchmark (issue 10, "Performance"): migration downtime between the two hosts of the lab.

For containers holding 16 MiB, 256 MiB and 1 GiB (busybox ``tail -c N`` buffering
random bytes, beside an httpd), one run of each, on the lab of runtime/testing/lab.py
(state roots on /dev/shm, so the disk is not what is measured):

  local c+r      checkpoint then restore on host a (the reference)
  restore --lazy checkpoint, then a lazy restore from the local images (until it runs;
                 and until all memory is back)
  stop-and-copy  migrate a -> b
  lazy           migrate b -> a (post-copy): downtime, and until the last page arrived

Downtime is the longest gap seen by a client asking the service every 10 ms from
the lab's client namespace; the operation's own figures are printed beside it.
Targets: stop-and-copy at 1 GiB <= 1.3x local c+r; lazy downtime at 1 GiB <= 2x at
16 MiB; restore --lazy at 1 GiB <= 2x at 16 MiB.

Run as ``scripts/bench --migrate [--sizes 16M,256M,1G]``; as root.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))

from runtime.testing import lab_ops  # noqa: E402
from runtime.testing.bundle import build_busybox_bundle  # noqa: E402
from runtime.testing.lab import LAB_PORT, Lab, delete_all_containers  # noqa: E402

MiB = 1 << 20
TOKEN = b"bench-migrate-token-0123456789abcdef"
CID = "hold"
PIPE_MAX = "/proc/sys/fs/pipe-max-size"


def holding_service_bundle(directory: str, size: int, netns_path: str) -> str:
    """httpd on :80 and ``size`` random bytes held in one heap block; "ready" on stderr once filled."""
    hold = (f"httpd -p 80 -h /www; (head -c {size} /dev/urandom; echo ready >&2; sleep 1000000) "
            f"| tail -c {size}")
    return build_busybox_bundle(directory, ["sh", "-c", hold], netns_path=netns_path,
                                applets=("sh", "head", "tail", "echo", "sleep", "httpd"),
                                files={"/www/index.html": "hi\n"})


# -- run on a lab host ------------------------------------------------------------------

def start_holding(cid: str, bundle: str, timeout: float = 300) -> int:
    """Start the container and wait until it holds its memory; its RSS in bytes."""
    from runtime.container import Container

    lab_ops.run_container(cid, bundle)
    ctr = Container.load(cid)
    deadline = time.monotonic() + timeout
    while b"ready" not in ctr.logs():
        if time.monotonic() > deadline:
            raise TimeoutError("the container did not fill its memory")
        time.sleep(0.1)
    time.sleep(0.5)
    return _rss_of_tree(ctr.refresh().init_pid)


def _rss_of_tree(pid: int) -> int:
    total = 0
    for p in [pid, *_descendants(pid)]:
        try:
            with open(f"/proc/{p}/status") as f:
                total += next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))
        except (OSError, StopIteration):
            pass
    return total


def _descendants(pid: int) -> list[int]:
    out: list[int] = []
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            kids = [int(k) for k in f.read().split()]
    except OSError:
        return out
    for k in kids:
        out += [k, *_descendants(k)]
    return out


def local_cr(cid: str, lazy: bool) -> dict[str, float]:
    """Checkpoint, then restore (lazily: until it runs, then until all memory is back)."""
    from runtime.container import Container
    from runtime.cr.options import LazyPages

    ctr = Container.load(cid)
    t0 = time.monotonic()
    ctr.checkpoint(criu_path=lab_ops.criu_path(), tcp_established=True, tcp_skip_in_flight=True)
    t1 = time.monotonic()
    res = ctr.restore(criu_path=lab_ops.criu_path(), tcp_established=True, lazy=LazyPages() if lazy else None)
    t2 = time.monotonic()
    out = {"checkpoint_s": t1 - t0, "restore_s": t2 - t1, "total_s": t2 - t0}
    if res.lazy is not None:
        with res.lazy:
            res.lazy.wait(600)
        out["pages_s"] = time.monotonic() - t1
    return out


# -- the measurement ------------------------------------------------------------------------

def _with_client(lab: Lab, ip: str, fn: Any) -> tuple[Any, float]:
    """``fn()`` while the client asks the service every 10 ms; its result and the longest gap seen."""
    with lab.poller(ip) as poll:
        while not poll.answered:
            time.sleep(0.01)
        result = fn()
        t_end = time.monotonic()
        deadline = t_end + 60
        while not poll.seen_after(t_end) and time.monotonic() < deadline:
            time.sleep(0.01)
    return result, poll.longest_gap()


def _migrate(lab: Lab, src: Any, dst: Any, lazy: bool) -> Any:
    with dst.spawn(lab_ops.receive_once, LAB_PORT, TOKEN) as rx:
        while not dst.listening(LAB_PORT):
            time.sleep(0.01)
        moved = src.call(lab_ops.migrate_to, CID, (dst.peer_ip, LAB_PORT), TOKEN, tcp_established=True, lazy=lazy)
        got = rx.result(600)
    if not got.ok:
        raise RuntimeError(f"the receiver failed: {got.error}")
    return moved


def one_size(lab: Lab, work: str, size: int) -> dict[str, Any]:
    net = lab.container_net(lab.a) if not lab._followers else lab._followers[0][0]
    bundle = holding_service_bundle(os.path.join(work, f"bundle-{size}"), size, net.path)
    row: dict[str, Any] = {"rss": lab.a.call(start_holding, CID, bundle)}
    lab.wait_http(net.ip)
    try:
        for name, lazy in (("local c+r", False), ("restore --lazy", True)):
            print(f"  {name}...", file=sys.stderr, flush=True)
            figures, gap = _with_client(lab, net.ip, lambda lazy=lazy: lab.a.call(local_cr, CID, lazy))
            row[name] = {**figures, "gap_s": gap}
        print("  stop-and-copy a -> b...", file=sys.stderr, flush=True)
        moved, gap = _with_client(lab, net.ip, lambda: _migrate(lab, lab.a, lab.b, False))
        row["stop-and-copy"] = {"downtime_s": moved.downtime_s, "checkpoint_s": moved.checkpoint_s,
                                "send_s": moved.send_s, "restore_s": moved.restore_s, "bytes": moved.bytes,
                                "gap_s": gap}
        print("  lazy b -> a...", file=sys.stderr, flush=True)
        moved, gap = _with_client(lab, net.ip, lambda: _migrate(lab, lab.b, lab.a, True))
        row["lazy"] = {"downtime_s": moved.downtime_s, "images_s": moved.images_s, "pages_s": moved.pages_s,
                       "restore_s": moved.restore_s, "bytes": moved.bytes, "gap_s": gap}
    finally:
        for h in lab.hosts():
            h.call(delete_all_containers)
    return row


def _size(text: str) -> int:
    units = {"K": 1 << 10, "M": MiB, "G": 1 << 30}
    t = text.strip().upper()
    return int(t[:-1]) * units[t[-1]] if t[-1] in units else int(t)


def main(sizes_text: str = "16M,256M,1G", json_path: str | None = None) -> int:
    os.environ["PYTHONPATH"] = os.pathsep.join([HERE, os.path.join(HERE, ".."),
                                                os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    with open(PIPE_MAX) as f:
        pipe_max = int(f.read())
    from runtime.cr.lazy import PAGE_SERVER_PIPE

    if pipe_max < PAGE_SERVER_PIPE:  # CRIU's lazy page server needs it here (runtime.cr.lazy)
        with open(PIPE_MAX, "w") as f:
            f.write(str(PAGE_SERVER_PIPE))
    work = tempfile.mkdtemp(prefix="criu-cr-bench-migrate-", dir="/dev/shm")
    results: dict[str, Any] = {}
    try:
        with Lab.create(pool=["10.231.2.0/24"], workdir=os.path.join(work, "lab")) as lab:
            for text in sizes_text.split(","):
                print(f"{text}:", file=sys.stderr, flush=True)
                results[text] = one_size(lab, work, _size(text))
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if pipe_max < PAGE_SERVER_PIPE:
            with open(PIPE_MAX, "w") as f:
                f.write(str(pipe_max))
    report(results)
    if json_path:
        with open(json_path, "w") as f:
            json.dump(results, f, indent=2)
    return 0


def report(results: dict[str, Any]) -> None:
    print(f"{'size':>6} {'RSS':>8} | {'local c+r':>9} | {'restore --lazy':>22} | {'stop-and-copy':>22} | "
          f"{'lazy migration':>29}")
    print(f"{'':>6} {'MiB':>8} | {'total':>9} | {'running':>7} {'gap':>6} {'pages':>7} | "
          f"{'downtime':>8} {'gap':>6} {'x c+r':>6} | {'images':>6} {'downtime':>8} {'gap':>6} {'pages':>6}")
    for size, r in results.items():
        lc, rl, sc, lz = r["local c+r"], r["restore --lazy"], r["stop-and-copy"], r["lazy"]
        print(f"{size:>6} {r['rss'] / MiB:>8.0f} | {lc['total_s']:>9.3f} | {rl['restore_s']:>7.3f} "
              f"{rl['gap_s']:>6.3f} {rl.get('pages_s', 0):>7.3f} | {sc['downtime_s']:>8.3f} {sc['gap_s']:>6.3f} "
              f"{sc['downtime_s'] / lc['total_s']:>6.2f} | {lz['images_s']:>6.3f} {lz['downtime_s']:>8.3f} "
              f"{lz['gap_s']:>6.3f} {lz['pages_s']:>6.3f}")
    keys = list(results)
    if len(keys) > 1:
        small, big = results[keys[0]], results[keys[-1]]
        print(f"ratios {keys[-1]} / {keys[0]}: lazy downtime {big['lazy']['downtime_s'] / small['lazy']['downtime_s']:.2f} "
              f"(gap {big['lazy']['gap_s'] / small['lazy']['gap_s']:.2f}), restore --lazy "
              f"{big['restore --lazy']['restore_s'] / small['restore --lazy']['restore_s']:.2f}; "
              f"stop-and-copy {keys[-1]} / local c+r {big['stop-and-copy']['downtime_s'] / big['local c+r']['total_s']:.2f} "
              f"(client gaps {big['stop-and-copy']['gap_s'] / big['local c+r']['gap_s']:.2f})")


if __name__ == "__main__":
    sys.exit(main(*(sys.argv[1:2] or [])))
