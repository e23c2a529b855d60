"""scripts/bench_table.py: issue 12's table -- ratios, verdicts against the targets, the Markdown it prints.

scripts/ is not a package: the module is loaded by its path.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[3] / "scripts" / "bench_table.py"
_spec = importlib.util.spec_from_file_location("bench_table", _PATH)
bt = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("bench_table", bt)  # dataclasses look their module up there
_spec.loader.exec_module(bt)

MiB = 1 << 20
BIG = {"runc ckpt": 0.80, "runc ckpt CRIU": 0.70, "runc restore": 0.65, "runc restore CRIU": 0.60,
       "criu-cr ckpt": 0.76, "criu-cr ckpt CRIU": 0.74, "criu-cr restore": 0.70, "criu-cr restore CRIU": 0.62,
       "tmpfs write GB/s": 2.0, "new memory GB/s": 1.9, "memcpy GB/s": 20.2}


def by_figure(rows: list) -> dict:
    return {r.figure: r for r in rows}


def test_ratio_is_ours_over_peers_and_none_without_a_peer() -> None:
    assert bt.ratio(50.0, 200.0) == pytest.approx(0.25)
    assert bt.ratio(50.0, None) is None
    assert bt.ratio(None, 2.0) is None
    assert bt.ratio(1.0, 0.0) is None


def test_cli_rows_judge_the_ratio_to_runc_and_the_overhead_beyond_the_api() -> None:
    rows = by_figure(bt.cli_rows({"checkpoint": 90.0, "restore": 190.0}, {"checkpoint": 70.0, "restore": 95.0},
                                 {"checkpoint": 200.0, "restore": 200.0}))
    fast, slow = rows["CLI checkpoint, ms (peer: runc CLI)"], rows["CLI restore, ms (peer: runc CLI)"]
    assert (fast.met, slow.met) == (True, False)
    assert "the API alone is at 0.47x; the CLI adds 95 ms" in slow.note
    assert rows["CLI overhead beyond the API, checkpoint, ms"].ours == pytest.approx(20.0)
    assert rows["CLI overhead beyond the API, checkpoint, ms"].met is True
    assert rows["CLI overhead beyond the API, restore, ms"].met is False
    assert rows["API restore, ms (in-process; peer: runc CLI)"].met is None  # context, no target of its own


def test_cli_rows_without_runc_have_no_verdict() -> None:
    rows = by_figure(bt.cli_rows({"checkpoint": 90.0, "restore": 90.0}, {"checkpoint": 70.0, "restore": 70.0}, {}))
    assert rows["CLI checkpoint, ms (peer: runc CLI)"].met is None


def test_kdat_row_is_met_only_with_an_active_cache_that_saves_time() -> None:
    (saved,) = bt.kdat_rows(22.0, 48.0, "present")
    assert saved.met is True and "saves 26 ms" in saved.note
    (off,) = bt.kdat_rows(None, 48.0, "disabled")
    assert off.met is False and off.note == "no cache: disabled"
    (useless,) = bt.kdat_rows(48.5, 48.0, "made")
    assert useless.met is False


def test_big_rows_compare_with_runc_and_name_the_machines_limit_when_it_is_below_the_goal() -> None:
    rows = by_figure(bt.big_rows(BIG, 1 << 30))
    assert rows["1 GiB checkpoint, s (peer: runc CLI)"].met is True  # 0.76 <= 0.80
    assert rows["1 GiB restore, s (peer: runc CLI)"].met is False  # 0.70 > 0.65
    dump, restore = rows["1 GiB checkpoint, GB/s (peer: runc)"], rows["1 GiB restore, GB/s (peer: runc)"]
    assert dump.ours == pytest.approx((1 << 30) / 1e9 / 0.76)
    assert dump.met is False and dump.note == "71% of dd to tmpfs (2.00 GB/s); runc neither"  # the limit allows 1.5
    assert restore.met is False and restore.note == "the machine's limit: writing new memory 1.90 GB/s"


def test_many_rows_give_containers_per_second_and_judge_against_podman_where_it_ran() -> None:
    rows = bt.many_rows({4: ((0.4, 0.5), (0.8, 0.4)), 32: ((2.0, 1.6), None)})
    assert [r.met for r in rows] == [True, False, None, None]
    assert rows[0].note == "10.0 vs 5.0 containers/s"
    assert rows[2].note == "16.0 containers/s" and rows[2].figure.startswith("32 containers: checkpoint --all")


def test_footprint_rows_take_the_larger_of_the_process_and_its_monitor() -> None:
    ok, over = bt.footprint_rows({"restore --import": (36 * MiB, 20 * MiB, 9 * MiB),
                                  "receive": (30 * MiB, 70 * MiB, 8 * MiB)})
    assert (ok.ours, ok.met) == (36.0, True)
    assert (over.ours, over.met) == (70.0, False)
    assert over.note == "CRIU 8.0 MiB; its monitor 70.0 MiB"


def test_render_prints_one_markdown_row_per_figure() -> None:
    rows = bt.kdat_rows(22.0, 48.0, "present") + bt.footprint_rows({"migrate (sender)": (33 * MiB, 0, 9 * MiB)})
    lines = bt.render(rows).splitlines()
    assert lines[0] == "| # | figure | criu-cr | peer | ratio | target | met? | notes |"
    assert len(lines) == 2 + len(rows)
    assert lines[2].split(" | ")[2:6] == ["22.0", "48.0", "0.46", "cache active, saves time"]
    assert "| 33.0 | - |  | <= 64 MiB | yes |" in lines[3]
