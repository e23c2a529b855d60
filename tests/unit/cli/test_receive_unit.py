"""docs/criu-cr-receive.service: its command line is one the parser takes (no drift), and systemd accepts it."""

from __future__ import annotations

import configparser
import os
import shlex
import shutil
import subprocess
from pathlib import Path

from runtime.cli import build_parser
from tests.conftest import require

UNIT = Path(__file__).resolve().parents[3] / "docs" / "criu-cr-receive.service"


def _service() -> configparser.SectionProxy:
    cp = configparser.ConfigParser(strict=False, interpolation=None)
    cp.optionxform = str  # type: ignore[assignment,method-assign] - systemd's keys are case-sensitive
    cp.read_string(UNIT.read_text())
    return cp["Service"]


def test_the_units_command_parses_as_receive() -> None:
    argv = shlex.split(_service()["ExecStart"])
    assert os.path.basename(argv[0]) == "criu-cr"
    args = build_parser().parse_args(argv[1:])
    assert args.command == "receive" and args.token_file and args.listen and not args.once
    assert _service()["KillMode"] == "process"  # stopping the receiver must not kill what it restored


def test_systemd_analyze_verifies_the_unit() -> None:
    require(shutil.which("systemd-analyze") is not None, "needs systemd-analyze (systemd)")
    argv0 = shlex.split(_service()["ExecStart"])[0]
    require(os.access(argv0, os.X_OK), f"needs {argv0} (scripts/install links it)")
    res = subprocess.run(["systemd-analyze", "verify", str(UNIT)], capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stderr
