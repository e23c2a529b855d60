"""`criu-cr check`, `dump` and `restore-tree` against real CRIU 4.2 (root)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from .rpc_helpers import Counter, criu_path


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "runtime.cli", "--criu", criu_path(), *args],
                          capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[2])


@pytest.fixture
def counter(tmp_path: Path):
    criu_path()
    c = Counter(tmp_path)
    try:
        yield c
    finally:
        c.cleanup()


def test_check_reports_this_machine_truthfully() -> None:
    from criu_rpc import CriuClient

    result = cli("check", "--json")
    report = json.loads(result.stdout)
    assert report["criu"]["version"].startswith("4.2")
    assert report["features"] == {k: v for k, v in vars_of(CriuClient(criu_path()).feature_check()).items()}
    assert result.returncode == (0 if report["ok"] else 6)
    assert report["ok"] is True  # root + CRIU 4.2 on this kind of machine: checkpointing works


def vars_of(features) -> dict:
    from dataclasses import asdict

    return asdict(features)


def test_dump_then_restore_tree_prints_the_pid(counter: Counter, tmp_path: Path) -> None:
    images = tmp_path / "img"
    dumped = cli("dump", "--pid", str(counter.pid), "-D", str(images))
    assert dumped.returncode == 0, dumped.stderr
    value = counter.wait_dumped_away()
    restored = cli("restore-tree", "-D", str(images))
    assert restored.returncode == 0, restored.stderr
    pid = int(restored.stdout.strip())
    counter.restored(pid)
    assert pid == counter.pid
    assert counter.keeps_counting() and counter.value() > value


def test_restore_tree_failure_is_one_clear_line(tmp_path: Path) -> None:
    result = cli("restore-tree", "-D", str(tmp_path / "missing"))
    assert result.returncode == 3  # NOT_FOUND
    assert result.stderr.startswith("criu-cr: error:") and "missing" in result.stderr
