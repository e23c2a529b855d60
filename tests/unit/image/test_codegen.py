"""criu_image/_pb is fresh, and proto/images/ is exactly CRIU 4.2.1's image schema.

The schema facts are checked against python3-pycriu 4.2.1 (scripts/install-peers):
its generated modules embed each .proto's FileDescriptorProto, read here
without importing them (their file names would clash with ours in
protobuf's default pool).
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2

from tests.conftest import require

ROOT = Path(__file__).resolve().parents[3]
PB_DIR = ROOT / "criu_image" / "_pb"
PYCRIU = Path(os.environ.get("CRIU_CR_PEERS", "/opt/criu-cr/peers"),
              "usr/lib/python3/dist-packages/pycriu/images")


def _generated(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for pattern in ("*_pb2.py", "*_pb2.pyi") for p in sorted(directory.glob(pattern))}


def test_generated_code_is_fresh(tmp_path: Path) -> None:
    require(importlib.util.find_spec("grpc_tools") is not None,
            "grpcio-tools (the dev extra) is not installed: pip install -e '.[dev]'")
    subprocess.run([str(ROOT / "scripts" / "gen-proto"), str(tmp_path / "rpc"), str(tmp_path / "images")],
                   check=True, env=dict(os.environ, PYTHON=sys.executable), capture_output=True)
    fresh, committed = _generated(tmp_path / "images"), _generated(PB_DIR)
    assert len(fresh) == 2 * len(list((ROOT / "proto" / "images").glob("*.proto")))
    stale = sorted(n for n in fresh.keys() | committed.keys() if fresh.get(n) != committed.get(n))
    assert not stale, f"criu_image/_pb is stale ({stale}): run scripts/gen-proto and commit the result"


def _pycriu_descriptors() -> dict[str, descriptor_pb2.FileDescriptorProto]:
    require(PYCRIU.is_dir(), f"needs python3-pycriu 4.2.1 at {PYCRIU} (scripts/install-peers)")
    # With CRIU's (criu) option extension known, their field options parse
    # into the same messages as ours.
    importlib.import_module("criu_image._pb.opts_pb2")
    out = {}
    for path in sorted(PYCRIU.glob("*_pb2.py")):
        calls = [n for n in ast.walk(ast.parse(path.read_text()))
                 if isinstance(n, ast.Call) and getattr(n.func, "attr", "") == "AddSerializedFile"]
        fd = descriptor_pb2.FileDescriptorProto.FromString(calls[0].args[0].value)
        out[fd.name] = fd
    return out


def test_schemas_are_pycriu_4_2_1s() -> None:
    theirs = _pycriu_descriptors()
    ours = {p.name for p in (ROOT / "proto" / "images").glob("*.proto")}
    # rpc.proto and stats.proto are proto/'s own (criu_rpc/_pb).
    assert ours == set(theirs) - {"rpc.proto", "stats.proto"}
    for name in sorted(ours):
        module = importlib.import_module(f"criu_image._pb.{name[:-len('.proto')].replace('-', '_')}_pb2")
        mine = descriptor_pb2.FileDescriptorProto.FromString(module.DESCRIPTOR.serialized_pb)
        assert str(mine) == str(theirs[name]), f"proto/images/{name} differs from CRIU 4.2.1's"


@pytest.mark.parametrize("name", ["stats.proto"])
def test_stats_schema_shared_with_criu_rpc(name: str) -> None:
    from criu_rpc._pb import stats_pb2

    theirs = _pycriu_descriptors()[name]
    mine = descriptor_pb2.FileDescriptorProto.FromString(stats_pb2.DESCRIPTOR.serialized_pb)
    mine.ClearField("package")  # criu_rpc's copy lives in package "criu"
    assert [m.name for m in mine.message_type] == [m.name for m in theirs.message_type]
    for a, b in zip(mine.message_type, theirs.message_type):
        assert [(f.name, f.number, f.label, f.type) for f in a.field] == \
            [(f.name, f.number, f.label, f.type) for f in b.field]
