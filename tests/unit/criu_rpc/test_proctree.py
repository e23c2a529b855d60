"""proctree: reading /proc/PID/stat and walking a process tree (pure parts)."""

from __future__ import annotations

import os

import pytest

from criu_rpc.proctree import ProcStat, children_of, descendants, parse_stat, process_table


def test_parse_stat_with_a_hostile_command_name() -> None:
    st = parse_stat("4242 (a) b (c)) S 17 4242 4242 0 -1 4194560 95 0 0 0\n")
    assert st == ProcStat(pid=4242, state="S", ppid=17)


@pytest.mark.parametrize("bad", ["", "garbage", "12 (x"])
def test_parse_stat_refuses_garbage(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_stat(bad)


def table(*edges: tuple[int, int]) -> dict[int, ProcStat]:
    return {pid: ProcStat(pid=pid, state="S", ppid=ppid) for pid, ppid in edges}


def test_descendants_parents_first_roots_excluded() -> None:
    t = table((1, 0), (10, 1), (11, 10), (12, 10), (13, 12), (20, 1), (30, 11))
    assert descendants([10], t) == [11, 12, 30, 13]
    assert descendants([10, 20], t) == [11, 12, 30, 13]
    assert descendants([99], t) == []
    assert children_of(10, t) == {11, 12}


def test_process_table_sees_us() -> None:
    t = process_table()
    assert t[os.getpid()].ppid == os.getppid()
