"""runtime.cli.migrate_cmds: the migration modes `check` reports, and migrate's progress line by phase."""

from __future__ import annotations

from runtime.cli import build_parser
from runtime.cli.migrate_cmds import _progress, migration_modes
from runtime.cli.progress import ProgressLine
from tests.unit.cli.test_progress import FakeTTY

MiB = 1 << 20


def _facts(**features):
    return {"criu_check": {"ok": True}, "features": features or None}


def test_modes_from_criu_feature_answer():
    modes = {m["mode"]: m for m in migration_modes(_facts(mem_track=False, lazy_pages=True))}
    assert modes["stop-and-copy"]["available"] is True
    assert modes["lazy"]["available"] is True and "lazy_pages" in modes["lazy"]["why"]
    pre = modes["pre-copy"]
    assert pre["available"] is False and "FEATURE_CHECK mem_track: no" in pre["why"] and "--lazy" in pre["why"]


def test_lazy_needs_a_working_page_server_too():
    facts = {**_facts(mem_track=False, lazy_pages=True), "lazy_page_server": "fs.pipe-max-size is 1048576: raise it"}
    lazy = next(m for m in migration_modes(facts) if m["mode"] == "lazy")
    assert lazy["available"] is False and "pipe-max-size" in lazy["why"]


def test_modes_unknown_or_impossible():
    unknown = {m["mode"]: m["available"] for m in migration_modes(_facts())}
    assert unknown == {"stop-and-copy": True, "lazy": None, "pre-copy": None}
    broken = migration_modes({"criu_check": {"ok": False}, "features": {"mem_track": True, "lazy_pages": True}})
    assert [m["available"] for m in broken] == [False, False, False]


def test_progress_line_names_each_phase():
    now = [0.0]
    out = FakeTTY()
    line = ProgressLine("migrate", out, clock=lambda: now[0])
    line.phase("migrate pages")
    line(0, None)
    now[0] = 1.0
    line(512 * MiB, None)
    line.phase("migrate images")
    line(0, 2 * MiB)
    now[0] = 2.0
    line(2 * MiB, 2 * MiB)
    line.phase("migrate restore")
    line(0, 0)
    now[0] = 3.0
    line(0, 0)
    line.close()
    text = out.getvalue()
    assert "migrate pages  512.0 MiB  512.0 MiB/s" in text
    assert "migrate images  2.0 MiB / 2.0 MiB  100%  2.0 MiB/s" in text
    assert text.rstrip().endswith("migrate restore") and text.endswith("\n")


def test_no_progress_off_a_terminal_or_quiet(monkeypatch):
    import sys

    monkeypatch.setattr(sys, "stderr", FakeTTY(tty=False))
    assert _progress(False) == (None, None)
    monkeypatch.setattr(sys, "stderr", FakeTTY(tty=True))
    assert _progress(True) == (None, None)
    report, line = _progress(False)
    assert report is not None and line is not None


def test_migrate_takes_pre_copy_and_quiet():
    args = build_parser().parse_args(["migrate", "--token-file", "t", "--pre-copy", "3", "-q", "web", "h:1"])
    assert args.pre_copy == 3 and args.quiet
