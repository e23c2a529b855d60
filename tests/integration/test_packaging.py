"""Packaging: an sdist and a wheel that pass `twine check`, and the wheel in a clean venv outside the repository.

The build runs on a copy of the checkout's files (what git would commit), so
the repository gets no build/ or egg-info; `python -m build` makes the sdist,
then the wheel from the sdist (so the sdist is complete). build and twine are
dev tools (`.[dev]`, installed by scripts/install); pip fetches the build
backend and the runtime dependencies through its usual configuration and
cache.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from runtime._version import __version__
from tests.conftest import require, require_criu
from tests.integration.container_helpers import REPO


def _run(*argv: str | Path, cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    res = subprocess.run([str(a) for a in argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
                         check=False)
    assert res.returncode == 0, f"{argv} failed ({res.returncode}):\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    return res


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> Path:
    """sdist + wheel built from a copy of the checkout's files."""
    for tool in ("build", "twine"):
        require(shutil.which(tool, path=os.path.dirname(sys.executable)) is not None or _importable(tool),
                f"needs {tool} (a dev dependency: pip install -e '.[dev]')")
    require(shutil.which("git") is not None and (REPO / ".git").exists(), "needs a git checkout")
    src = tmp_path_factory.mktemp("src")
    files = _run("git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", cwd=REPO).stdout
    for rel in filter(None, files.split("\0")):
        if (REPO / rel).is_file():
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, src / rel)
    out = tmp_path_factory.mktemp("dist")
    _run(sys.executable, "-m", "build", "--outdir", out, src)
    return out


def _importable(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def _one(dist: Path, pattern: str) -> Path:
    found = sorted(dist.glob(pattern))
    assert len(found) == 1, f"{pattern}: {found}"
    return found[0]


def test_sdist_and_wheel_pass_twine_check(dist) -> None:
    wheel, sdist = _one(dist, "*.whl"), _one(dist, "*.tar.gz")
    assert wheel.name == f"criu_cr-{__version__}-py3-none-any.whl"
    _run(sys.executable, "-m", "twine", "check", "--strict", wheel, sdist)
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names} == {"criu_rpc", "criu_image", "runtime", f"criu_cr-{__version__}.dist-info"}
    assert {"criu_rpc/_pb/rpc_pb2.py", "criu_image/_pb/core_pb2.py", "runtime/cli/manpage.py"} <= set(names)  # generated code
    with tarfile.open(sdist) as tar:
        members = {m.split("/", 1)[1] for m in tar.getnames() if "/" in m}
    assert {"proto/rpc.proto", "proto/images/core.proto", "CHANGELOG.md", "docs/tutorial.md", "docs/criu-cr-receive.service"} <= members


def test_wheel_in_a_clean_venv_outside_the_repository(dist, tmp_path) -> None:
    venv = tmp_path / "venv"
    base = getattr(sys, "_base_executable", sys.executable)
    _run(base, "-m", "venv", venv)
    _run(venv / "bin" / "pip", "install", "-q", _one(dist, "*.whl"))
    away = tmp_path / "elsewhere"  # a cwd with no criu-cr sources in it
    away.mkdir()
    ccr = venv / "bin" / "criu-cr"
    assert ccr.exists()
    assert "checkpoint" in _run(ccr, "--help", cwd=away).stdout
    # The installed code, not the checkout's; tests not installed.
    where = _run(venv / "bin" / "python", "-c", "import runtime, criu_rpc._pb.rpc_pb2; print(runtime.__file__)",
                 cwd=away).stdout
    assert where.startswith(str(venv))
    no_tests = subprocess.run([venv / "bin" / "python", "-c", "import tests"], cwd=away, capture_output=True,
                              check=False, env={"PATH": os.environ["PATH"]})
    assert no_tests.returncode != 0
    # Man pages from the installed package (completions need shtab, a dev dependency).
    _run(venv / "bin" / "python", "-m", "runtime.cli.docgen", "--prefix", tmp_path / "p", "--no-completions",
         cwd=away)
    assert (tmp_path / "p" / "share" / "man" / "man1" / "criu-cr-checkpoint.1").exists()
    # A working criu-cr: its version, a state root, and CRIU reached over RPC.
    require(os.geteuid() == 0, "needs root")
    require_criu()
    assert _run(ccr, "version", cwd=away).stdout.splitlines()[0] == f"criu-cr {__version__}"
    assert _run(ccr, "--root", tmp_path / "root", "list", cwd=away).stdout.split()[:3] == ["ID", "PID", "STATUS"]
    assert _run(ccr, "check", cwd=away).stdout.rstrip().endswith("checkpoint/restore: works")
