"""Issue 12's figures as one table: ours, the peer's, the ratio, the target, met or why not. Pure.

scripts/bench_report.py measures (with the sections of scripts/bench.py,
bench_cli.py and bench_scale.py) and hands the medians to the ``*_rows``
functions here; :func:`render` prints the rows as a Markdown table, so that
a run can be pasted into README as it is. Nothing here measures, so the
verdicts are unit-tested (tests/unit/scripts/test_bench_table.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

GB = 1e9
MiB = 1 << 20
CLI_RATIO = 0.5  # target 1: the CLI at <= 0.5x runc's CLI
CLI_OVERHEAD_MS = 25.0  # target 1: the CLI's cost beyond the API
BIG_RATIO = 1.0  # target 3: <= 1.0x runc's time
DUMP_GBS, RESTORE_GBS = 1.5, 3.0  # target 3's goals, to tmpfs
RSS_MIB = 64.0  # target 5
ACTIVE_KDAT = ("present", "made", "tmpfs")  # runtime.cr.kdat.ensure()'s answers where CRIU finds a cache


@dataclass(frozen=True, kw_only=True)
class Row:
    target: int  # issue 12's target number (1-5)
    figure: str
    ours: float | None
    peer: float | None = None
    digits: int = 1
    goal: str = ""
    met: bool | None = None  # None: no target for this figure (context)
    note: str = ""


def ratio(ours: float | None, peer: float | None) -> float | None:
    """ours / peer, or None when either is missing (or the peer is 0)."""
    if ours is None or not peer:
        return None
    return ours / peer


def _num(v: float | None, digits: int) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def render(rows: Sequence[Row]) -> str:
    """The rows as one Markdown table (ratio = ours / peer's)."""
    lines = ["| # | figure | criu-cr | peer | ratio | target | met? | notes |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        q = ratio(r.ours, r.peer)
        met = "" if r.met is None else ("yes" if r.met else "**no**")
        lines.append(f"| {r.target} | {r.figure} | {_num(r.ours, r.digits)} | {_num(r.peer, r.digits)} | "
                     f"{'' if q is None else f'{q:.2f}'} | {r.goal} | {met} | {r.note} |")
    return "\n".join(lines)


# -- target 1: the CLI -----------------------------------------------------------------

def cli_rows(cli_ms: Mapping[str, float], api_ms: Mapping[str, float], runc_ms: Mapping[str, float]) -> list[Row]:
    """Medians in ms per op ("checkpoint", "restore"): the CLI and the API against runc's CLI, the overhead."""
    rows = []
    for op in ("checkpoint", "restore"):
        cli, api, runc = cli_ms[op], api_ms[op], runc_ms.get(op)
        q = ratio(cli, runc)
        api_q = ratio(api, runc)
        rows.append(Row(target=1, figure=f"CLI {op}, ms (peer: runc CLI)", ours=cli, peer=runc,
                        goal=f"<= {CLI_RATIO}x", met=None if q is None else q <= CLI_RATIO,
                        note="" if q is None or q <= CLI_RATIO else
                        f"the API alone is at {api_q:.2f}x; the CLI adds {cli - api:.0f} ms"))
    for op in ("checkpoint", "restore"):
        rows.append(Row(target=1, figure=f"API {op}, ms (in-process; peer: runc CLI)", ours=api_ms[op],
                        peer=runc_ms.get(op)))
    for op in ("checkpoint", "restore"):
        over = cli_ms[op] - api_ms[op]
        rows.append(Row(target=1, figure=f"CLI overhead beyond the API, {op}, ms", ours=over,
                        goal=f"<= {CLI_OVERHEAD_MS:.0f} ms", met=over <= CLI_OVERHEAD_MS,
                        note="" if over <= CLI_OVERHEAD_MS else
                        "Python start-up + imports (rows below; docs/performance.md)"))
    return rows


def import_rows(imports: Mapping[str, tuple[float, int]]) -> list[Row]:
    """``python -X importtime`` per command: {command: (own ms summed, modules)}; kept to show a regression."""
    return [Row(target=1, figure=f"imports of `{name}`, ms (-X importtime)", ours=ms, note=f"{modules} modules")
            for name, (ms, modules) in imports.items()]


# -- target 2: the kernel-facts cache ----------------------------------------------------

def kdat_rows(with_ms: float | None, without_ms: float, status: str) -> list[Row]:
    """``criu check`` with criu-cr's cache against without (what CRIU_CR_KDAT=0, and runc, get here)."""
    active = status in ACTIVE_KDAT
    saved = None if with_ms is None else without_ms - with_ms
    met = active and saved is not None and saved > 0
    if met:
        note = f"saves {saved:.0f} ms per CRIU run; cache {status}"
    elif not active:
        note = f"no cache: {status}"
    else:
        note = f"the cache saved nothing measurable ({saved:.0f} ms); cache {status}"
    return [Row(target=2, figure="`criu check`, ms (peer: without the cache, CRIU_CR_KDAT=0)", ours=with_ms,
                peer=without_ms, goal="cache active, saves time", met=met, note=note)]


# -- target 3: the 1 GiB container -------------------------------------------------------

def big_rows(med: Mapping[str, float], size: int) -> list[Row]:
    """scripts/bench_scale.big()'s medians (its keys: "runc ckpt", "criu-cr restore CRIU", "memcpy GB/s"...)."""
    gb = size / GB
    dd, new, memcpy = med["tmpfs write GB/s"], med["new memory GB/s"], med["memcpy GB/s"]
    rows = []
    for op, name in (("ckpt", "checkpoint"), ("restore", "restore")):
        ours, peer = med[f"criu-cr {op}"], med[f"runc {op}"]
        q = ratio(ours, peer)
        ok = q is not None and q <= BIG_RATIO
        rows.append(Row(target=3, figure=f"1 GiB {name}, s (peer: runc CLI)", ours=ours, peer=peer, digits=3,
                        goal=f"<= {BIG_RATIO}x", met=ok,
                        note=f"CRIU's own part {med[f'criu-cr {op} CRIU']:.3f} s vs runc's "
                             f"{med[f'runc {op} CRIU']:.3f} s"))
    for op, name, goal, limit, what in (("ckpt", "checkpoint", DUMP_GBS, dd, "dd to tmpfs"),
                                        ("restore", "restore", RESTORE_GBS, new, "writing new memory")):
        gbs, peer = gb / med[f"criu-cr {op}"], gb / med[f"runc {op}"]
        ok = gbs >= goal
        if ok:
            note = ""
        elif limit < goal:
            note = f"the machine's limit: {what} {limit:.2f} GB/s"
        else:
            note = f"{gbs / limit:.0%} of {what} ({limit:.2f} GB/s); runc {'reaches it' if peer >= goal else 'neither'}"
        rows.append(Row(target=3, figure=f"1 GiB {name}, GB/s (peer: runc)", ours=gbs, peer=peer, digits=2,
                        goal=f">= {goal} GB/s", met=ok, note=note))
    rows.append(Row(target=3, figure="limits: dd to tmpfs / writing new memory / memcpy, GB/s", ours=None,
                    note=f"{dd:.2f} / {new:.2f} / {memcpy:.1f}"))
    return rows


# -- target 4: many containers -----------------------------------------------------------

def many_rows(figures: Mapping[int, tuple[tuple[float, float], tuple[float, float] | None]]) -> list[Row]:
    """scripts/bench_scale.many_figures(): {n: ((ckpt s, restore s) ours, podman's or None)}.

    The issue sets no bar against podman; the row's goal is "no slower than podman -a".
    """
    rows = []
    for n, (ours, peer) in figures.items():
        for k, op in enumerate(("checkpoint --all", "restore --all")):
            o, p = ours[k], (peer[k] if peer else None)
            q = ratio(o, p)
            rate = f"{n / o:.1f}" + (f" vs {n / p:.1f}" if p else "") + " containers/s"
            rows.append(Row(target=4, figure=f"{n} container{'s' if n > 1 else ''}: {op}, s (peer: podman -a)",
                            ours=o, peer=p, digits=3, goal="<= 1.0x" if p else "",
                            met=None if q is None else q <= 1.0, note=rate))
    return rows


# -- target 5: our footprint -------------------------------------------------------------

def footprint_rows(peaks: Mapping[str, tuple[int, int, int]]) -> list[Row]:
    """scripts/bench_scale.footprint_peaks(): {operation: (criu-cr's peak, its monitor's, CRIU's)}, bytes."""
    rows = []
    for what, (cli, monitor, criu) in peaks.items():
        ours = max(cli, monitor) / MiB
        note = f"CRIU {criu / MiB:.1f} MiB" + (f"; its monitor {monitor / MiB:.1f} MiB" if monitor else "")
        rows.append(Row(target=5, figure=f"peak RSS, {what}, MiB", ours=ours, goal=f"<= {RSS_MIB:.0f} MiB",
                        met=ours <= RSS_MIB, note=note))
    return rows
