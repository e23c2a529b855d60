"""The committed protobuf modules in criu_rpc/_pb/ match proto/.

Regenerates into a temporary directory with scripts/gen-proto (using this
interpreter's grpcio-tools) and compares byte for byte.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import require

ROOT = Path(__file__).resolve().parents[3]
PB_DIR = ROOT / "criu_rpc" / "_pb"
GENERATED = ("*_pb2.py", "*_pb2.pyi")


def _generated_files(directory: Path) -> dict[str, bytes]:
    return {
        p.name: p.read_bytes()
        for pattern in GENERATED
        for p in sorted(directory.glob(pattern))
    }


def test_generated_code_is_fresh(tmp_path: Path) -> None:
    require(importlib.util.find_spec("grpc_tools") is not None,
            "grpcio-tools (the dev extra) is not installed: pip install -e '.[dev]'")
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


def _render_schema() -> list[str]:
    """Our descriptors in the form of data/criu-4.2.1-schema.txt."""
    from google.protobuf.descriptor import FieldDescriptor as F

    from criu_rpc._pb import rpc_pb2, stats_pb2

    scalar = {F.TYPE_INT32: "int32", F.TYPE_UINT32: "uint32", F.TYPE_UINT64: "uint64",
              F.TYPE_BOOL: "bool", F.TYPE_STRING: "string"}

    def label(f: F) -> str:
        if not hasattr(f, "is_repeated"):  # protobuf < 6.32 has only .label
            return {F.LABEL_REQUIRED: "required", F.LABEL_REPEATED: "repeated"}.get(
                f.label, "optional")
        return "repeated" if f.is_repeated else "required" if f.is_required else "optional"

    lines = []
    for module in (rpc_pb2, stats_pb2):
        for msg in module.DESCRIPTOR.message_types_by_name.values():
            for f in msg.fields:
                kind = scalar.get(f.type) or (f.message_type or f.enum_type).name
                line = f"{msg.name}: {label(f)} {kind} {f.name} = {f.number};"
                if f.has_default_value and f.type != F.TYPE_MESSAGE:
                    line += f" [default={int(f.default_value)}]"
                lines.append(line)
        for enum in module.DESCRIPTOR.enum_types_by_name.values():
            lines.extend(f"{enum.name}: {v.name} = {v.number};" for v in enum.values)
    return sorted(lines)


def test_schema_matches_criu_4_2_1() -> None:
    facts = ROOT / "tests" / "unit" / "data" / "criu-4.2.1-schema.txt"
    expected = [line for line in facts.read_text().splitlines() if not line.startswith("#")]
    ours = _render_schema()
    missing = sorted(set(expected) - set(ours))
    extra = sorted(set(ours) - set(expected))
    assert not missing and not extra, f"proto/ differs from CRIU 4.2.1: missing {missing}, extra {extra}"
