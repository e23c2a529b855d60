"""The ``fake_criu`` fixture: a scripted ``criu swrk`` (tests/unit/fake_criu.py)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

FAKE = Path(__file__).resolve().parent / "fake_criu.py"


@pytest.fixture
def fake_criu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """``setup(steps) -> criu path`` for a scripted fake; ``setup.journal()`` reads what it received."""
    exe = tmp_path / "criu"
    exe.write_text(f"#!/bin/sh\nexec {sys.executable} {FAKE} \"$@\"\n")
    exe.chmod(0o755)
    journal = tmp_path / "journal"
    journal.touch()

    def setup(steps: list[dict]) -> str:
        (tmp_path / "scenario.json").write_text(json.dumps(steps))
        monkeypatch.setenv("FAKE_CRIU_SCENARIO", str(tmp_path / "scenario.json"))
        monkeypatch.setenv("FAKE_CRIU_JOURNAL", str(journal))
        return str(exe)

    setup.journal = lambda: [json.loads(line) for line in journal.read_text().splitlines()]  # type: ignore[attr-defined]
    return setup


def zombies_of_us() -> list[int]:
    """Pids of our children that died and were not reaped."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] == "Z" and int(fields[1]) == os.getpid():
                found.append(int(entry))
    return found
