"""The committed protobuf modules in criu_rpc/_pb/ match proto/.

Regenerates into a temporary directory with scripts/gen-proto (using this
interpreter's grpcio-tools) and compares byte for byte.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PB_DIR = ROOT / "criu_rpc" / "_pb"
GENERATED = ("*_pb2.py", "*_pb2.pyi")


def _generated_files(directory: Path) -> dict[str, bytes]:
    return {
        p.name: p.read_bytes()
        for pattern in GENERATED
        for p in sorted(directory.glob(pattern))
    }


def test_generated_code_is_fresh(tmp_path: Path) -> None:
    pytest.importorskip("grpc_tools", reason="grpcio-tools (dev extra) not installed")
    env = dict(os.environ, PYTHON=sys.executable)
    subprocess.run(
        [str(ROOT / "scripts" / "gen-proto"), str(tmp_path)],
        check=True, env=env, capture_output=True,
    )
    fresh = _generated_files(tmp_path)
    committed = _generated_files(PB_DIR)
    assert fresh, "scripts/gen-proto generated nothing"

    problems = []
    for name in sorted(fresh.keys() | committed.keys()):
        rel = f"criu_rpc/_pb/{name}"
        if name not in committed:
            problems.append(f"{rel} is missing")
        elif name not in fresh:
            problems.append(f"{rel} has no source in proto/ any more")
        elif fresh[name] != committed[name]:
            problems.append(f"{rel} is stale")
    assert not problems, "; ".join(problems) + ": run scripts/gen-proto and commit the result"


def test_package_exports_generated_modules() -> None:
    from criu_rpc import _pb

    assert _pb.rpc_pb2.criu_opts.DESCRIPTOR.full_name == "criu.criu_opts"
    assert _pb.stats_pb2.stats_entry.DESCRIPTOR.full_name == "criu.stats_entry"
