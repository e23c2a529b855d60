"""Benchmark section (issue 12, target 1): what the ``criu-cr`` command costs beyond the API.

Two figures, on a criu-cr container of the reference kind (scripts/bench.py's
service, in its netns):

- **CLI overhead beyond the API**: rounds interleave ``criu-cr checkpoint`` /
  ``criu-cr restore`` (a new Python process each) with ``Container.checkpoint``
  / ``Container.restore`` called in this process, on the same container; the
  overhead is the difference of the medians. It is Python's start-up, the
  imports, the parser, the process's end, and whatever a fresh process pays
  that a warm one does not.
- **Imports per command**: each command run under ``python -X importtime``
  (checkpoint, restore, run, state, list, version, check, --help; 5 runs,
  each module at its smallest own time): the sum of the modules' own times,
  how many modules, and the five most expensive ones (by their own time),
  so that a regression shows in the benchmark's output.

``python -X importtime`` inflates every import a little; the totals compare
runs with each other, not with wall time.
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

_ROW = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)")


@dataclass(frozen=True, kw_only=True)
class ImportProfile:
    """One command's imports under ``-X importtime``."""

    total_ms: float  # the sum of every module's own time
    modules: int
    top: tuple[tuple[str, float], ...]  # (module, own ms), most expensive first
    names: frozenset[str]


def own_times(text: str) -> dict[str, int]:
    """``python -X importtime``'s stderr -> {module: own microseconds}. Pure."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        m = _ROW.match(line)
        if m:
            out[m.group(4)] = int(m.group(1))
    return out


def profile(runs: Sequence[dict[str, int]], top: int = 5) -> ImportProfile:
    """Several runs' :func:`own_times` -> one profile: each module at its smallest own time (a busy
    machine only adds), the modules of the last run. Pure."""
    last = runs[-1]
    rows = {name: min(r.get(name, us) for r in runs) for name, us in last.items()}
    ranked = sorted(rows.items(), key=lambda r: -r[1])[:top]
    return ImportProfile(total_ms=sum(rows.values()) / 1e3, modules=len(rows),
                         top=tuple((name, us / 1e3) for name, us in ranked), names=frozenset(rows))


def stale_bytecode(packages: Sequence[str]) -> list[str]:
    """Modules of ``packages`` (directories) whose .pyc is missing or older than the source.

    Where PYTHONDONTWRITEBYTECODE is set (these machines), Python compiles
    those again in every command, and the CLI's figures would include it.
    """
    import importlib.util

    out = []
    for package in packages:
        for dirpath, _, files in os.walk(package):
            for name in files:
                if name.endswith(".py"):
                    src = os.path.join(dirpath, name)
                    pyc = importlib.util.cache_from_source(src)
                    if not os.path.exists(pyc) or os.path.getmtime(pyc) < os.path.getmtime(src):
                        out.append(src)
    return out


def run_cli(cli: str, args: Sequence[str], env: dict[str, str], *, importtime: bool = False,
            check: bool = True) -> subprocess.CompletedProcess[str]:
    """``criu-cr ARGS`` as the console script runs it (its interpreter, its file), optionally under importtime."""
    argv = [sys.executable, *(["-X", "importtime"] if importtime else []), cli, *args]
    res = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False)
    if check and res.returncode != 0:
        raise RuntimeError(f"criu-cr {' '.join(args)}: exit {res.returncode}: {res.stderr.strip()[-300:]}")
    return res


def command_imports(cli: str, env: dict[str, str], commands: dict[str, Sequence[str]], runs: int,
                    before: Callable[[str], None] = lambda name: None) -> dict[str, ImportProfile]:
    """Each command ``runs`` times under ``-X importtime`` (the commands in turn); ``before(name)``
    readies the container for it. ``check`` may fail (exit 1: the machine cannot checkpoint)."""
    seen: dict[str, list[dict[str, int]]] = {name: [] for name in commands}
    for _ in range(runs):
        for name, args in commands.items():
            before(name)
            res = run_cli(cli, args, env, importtime=True, check=name != "check")
            seen[name].append(own_times(res.stderr))
    return {name: profile(r) for name, r in seen.items()}


def interleaved(rounds: int, steps: dict[str, Callable[[], object]]) -> dict[str, list[float]]:
    """Wall seconds of each step, the steps run in turn ``rounds`` times (after one round not counted)."""
    out: dict[str, list[float]] = {name: [] for name in steps}
    for i in range(rounds + 1):
        for name, step in steps.items():
            t = time.perf_counter()
            step()
            if i:
                out[name].append(time.perf_counter() - t)
    return out


IMPORT_RUNS = 5


def section(cli: str, env: dict[str, str], root: str, bundle: str, criu: str, rounds: int,
            ready: Callable[[], None]) -> tuple[dict[str, list[float]], dict[str, ImportProfile]]:
    """This section's measurements on a container of its own (``ready()``: its service answers).

    Returns the interleaved wall times and each command's import profile
    (:data:`IMPORT_RUNS` runs, each module at its smallest own time).
    """
    from runtime.container import Container
    from runtime.cr.options import CheckpointOptions, RestoreOptions

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    stale = stale_bytecode([os.path.join(repo, "runtime"), os.path.join(repo, "criu_rpc")])
    if stale:
        print(f"warning: {len(stale)} modules without fresh bytecode (e.g. {stale[0]}): the CLI's figures "
              "include compiling them; scripts/install compiles them", file=sys.stderr)
    cid, other = "bench-cli", "bench-cli-run"
    env = dict(env, CRIU_CR_ROOT=root, CRIU_CR_CRIU=criu)
    ctr = Container.run(cid, bundle, root)
    try:
        ready()
        times = interleaved(rounds, {
            "cli checkpoint": lambda: run_cli(cli, ["checkpoint", cid], env),
            "cli restore": lambda: run_cli(cli, ["restore", cid], env),
            "api checkpoint": lambda: ctr.checkpoint(CheckpointOptions(), criu_path=criu),
            "api restore": lambda: ctr.restore(RestoreOptions(), criu_path=criu),
        })
        ready()
        commands = {"checkpoint": ["checkpoint", cid], "restore": ["restore", cid],
                    "run": ["run", "-d", "--bundle", bundle, other], "state": ["state", cid], "list": ["list"],
                    "version": ["version"], "check": ["check"], "--help": ["--help"]}
        imports = command_imports(cli, env, commands, IMPORT_RUNS, before=lambda name: _before(name, cli, env, other))
        ready()
    finally:
        run_cli(cli, ["delete", "-f", other], env, check=False)
        ctr.delete(force=True)
    return times, imports


def _before(name: str, cli: str, env: dict[str, str], other: str) -> None:
    """Before ``name`` runs: the second container of ``run`` must not exist yet."""
    if name == "run":
        run_cli(cli, ["delete", "-f", other], env, check=False)


def report(times: dict[str, list[float]], imports: dict[str, ImportProfile], runc: dict[str, float]) -> None:
    """The section's table: CLI vs API (and runc's CLI), then the imports of each command."""
    med = statistics.median
    print("\nCLI start-up (issue 12, target 1): medians in ms, rounds interleaved on one container")
    print(f"{'':12} {'CLI':>7} {'API':>7} {'overhead':>9} {'runc CLI':>9} {'CLI/runc':>9}")
    for op in ("checkpoint", "restore"):
        cli, api = med(times[f"cli {op}"]) * 1e3, med(times[f"api {op}"]) * 1e3
        rc = runc.get(op)
        ratio = f"{cli / rc:9.2f}" if rc else f"{'-':>9}"
        print(f"{op:12} {cli:7.1f} {api:7.1f} {cli - api:9.1f} {rc or 0:9.1f} {ratio}")
    print(f"\nimports per command (python -X importtime, {IMPORT_RUNS} runs, each module at its smallest "
          "own time; summed; top 5 by own time)")
    for name, p in imports.items():
        top = ", ".join(f"{mod} {ms:.1f}" for mod, ms in p.top)
        print(f"  {name:11} {p.total_ms:6.1f} ms {p.modules:4} modules | {top}")
    hooks = sorted({m for p in imports.values() for m in p.names if m.startswith("__editable__")})
    if hooks:
        print(f"  warning: the venv's editable install is an import hook ({hooks[0]}: pathlib, urllib... on every "
              "start, ~10 ms); scripts/install installs it as a plain path (editable_mode=compat)")


def as_json(times: dict[str, list[float]], imports: dict[str, ImportProfile]) -> dict[str, object]:
    """The section's raw figures for ``scripts/bench --json``."""
    return {"seconds": times, "imports": {name: {"total_ms": p.total_ms, "modules": p.modules, "top": p.top}
                                          for name, p in imports.items()}}
