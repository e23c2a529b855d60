"""bash/zsh completion scripts from the parser: what each argument completes to, and the scripts run."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess

import pytest

from runtime.cli import build_parser
import argparse

from runtime.cli.completion import CONTAINER, CONTAINER_OR_PATH, DIRECTORY, FILE, annotate, render, value_kind
from runtime.cli.manpage import commands
from tests.conftest import require


def _kinds(command: str) -> dict[str, str | None]:
    parser = {c.key: c.parser for c in commands(build_parser())}[command]
    return {a.dest: value_kind(a) for a in parser._actions}


def test_ids_and_paths_are_told_apart_by_the_arguments_names() -> None:
    ck = _kinds("checkpoint")
    assert ck["id"] == CONTAINER and ck["image_path"] == DIRECTORY and ck["export"] == FILE
    assert ck["compress"] is None and ck["leave_running"] is None  # choices; a flag
    rs = _kinds("restore")
    assert rs["import_"] == FILE and rs["netns"] == FILE and rs["rootfs"] == DIRECTORY and rs["name"] is None
    assert _kinds("receive")["token_file"] == FILE
    assert _kinds("migrate")["address"] is None


def test_a_source_is_a_container_id_or_a_path() -> None:
    p = argparse.ArgumentParser(prog="criu-cr")
    a = p.add_argument("target", nargs="+", metavar="SOURCE")
    assert value_kind(a) == CONTAINER_OR_PATH


def test_bash_completes_a_source_with_ids_and_paths(fake_root, tmp_path) -> None:
    require(importlib.util.find_spec("shtab") is not None, "needs shtab (a dev dependency: pip install -e '.[dev]')")
    p = argparse.ArgumentParser(prog="criu-cr")
    p.add_argument("--root")
    sub = p.add_subparsers(dest="command")
    sub.add_parser("inspect", help="shtab lists only sub-commands with a help").add_argument("target", metavar="SOURCE")
    script = tmp_path / "c.bash"
    script.write_text(render(annotate(p), "bash"))
    (tmp_path / "webcheck.tar").write_text("")
    got = bash_complete(str(script), ["criu-cr", "--root", fake_root, "inspect", str(tmp_path / "web")])
    assert sorted(got) == [str(tmp_path / n) for n in ("web1", "web2", "webcheck.tar")]  # fake_root is tmp_path
    got = bash_complete(str(script), ["criu-cr", "--root", fake_root, "inspect", "web"])
    assert got == ["web1", "web2"]


@pytest.fixture(scope="module")
def scripts() -> dict[str, str]:
    require(importlib.util.find_spec("shtab") is not None, "needs shtab (a dev dependency: pip install -e '.[dev]')")
    return {shell: render(build_parser(), shell) for shell in ("bash", "zsh")}


@pytest.fixture
def fake_root(tmp_path) -> str:
    """A state root with two containers (a state.json each) and a directory that is not one."""
    for name in ("web1", "web2", "db"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "state.json").write_text("{}")
    (tmp_path / "not-a-container").mkdir()
    return str(tmp_path)


def bash_complete(script: str, words: list[str], env: dict[str, str] | None = None) -> list[str]:
    """COMPREPLY of the generated function for ``words`` (the last one being completed)."""
    driver = ('source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(( $# - 1 )); COMP_LINE="$*"; '
              'COMP_POINT=${#COMP_LINE}; _shtab_criu_cr; printf "%s\\n" "${COMPREPLY[@]}"')
    res = subprocess.run(["bash", "--norc", "--noprofile", "-c", driver, "bash", script, *words],
                         capture_output=True, text=True, check=True, env={"PATH": "/usr/bin:/bin", **(env or {})})
    return [line for line in res.stdout.splitlines() if line]


def test_bash_completes_container_ids_from_root_given_on_the_line(scripts, fake_root, tmp_path_factory) -> None:
    script = tmp_path_factory.mktemp("c") / "criu-cr"
    script.write_text(scripts["bash"])
    assert bash_complete(str(script), ["criu-cr", "--root", fake_root, "checkpoint", ""]) == ["db", "web1", "web2"]
    assert bash_complete(str(script), ["criu-cr", "--root", fake_root, "restore", "--tcp-established", "w"]) \
        == ["web1", "web2"]
    # $CRIU_CR_ROOT when no --root is given
    assert bash_complete(str(script), ["criu-cr", "delete", "d"], {"CRIU_CR_ROOT": fake_root}) == ["db"]
    # an empty (or missing) root: nothing, and no error
    assert bash_complete(str(script), ["criu-cr", "--root", str(tmp_path_factory.mktemp("e")), "ps", ""]) == []


def test_bash_completes_options_subcommands_choices_and_paths(scripts, fake_root, tmp_path_factory) -> None:
    script = tmp_path_factory.mktemp("c") / "criu-cr"
    script.write_text(scripts["bash"])
    assert "checkpoint" in bash_complete(str(script), ["criu-cr", "che"])
    assert bash_complete(str(script), ["criu-cr", "checkpoint", "--tcp-e"]) == ["--tcp-established"]
    assert bash_complete(str(script), ["criu-cr", "checkpoint", "-c", ""]) == ["zstd", "gzip", "none"]
    got = bash_complete(str(script), ["criu-cr", "checkpoint", "--image-path", os.path.join(fake_root, "we")])
    assert sorted(got) == [os.path.join(fake_root, "web1"), os.path.join(fake_root, "web2")]


def test_zsh_script_loads_and_lists_container_ids(scripts, fake_root, tmp_path_factory) -> None:
    require(shutil.which("zsh") is not None, "needs zsh (scripts/install installs it for this test)")
    script = tmp_path_factory.mktemp("z") / "_criu-cr"
    script.write_text(scripts["zsh"])
    assert scripts["zsh"].startswith("#compdef criu-cr\n")  # compinit registers a file by its first line only
    assert subprocess.run(["zsh", "-n", str(script)], capture_output=True, check=False).returncode == 0
    # compinit finds it in fpath and registers it for criu-cr
    reg = subprocess.run(["zsh", "-f", "-c", 'fpath=("$1" $fpath); autoload -U compinit; compinit -u -D; '
                          'print -r -- ${_comps[criu-cr]}', "zsh", str(script.parent)],
                         capture_output=True, text=True, check=True, env={"PATH": "/usr/bin:/bin", "HOME": str(script.parent)})
    assert reg.stdout.strip() == "_criu-cr"
    # Outside a completion widget: compadd stubbed to print what it would offer.
    driver = ('compdef() { : }; _arguments() { : }; compadd() { [[ $1 == -a ]] && print -l -- ${(P)2} }; '
              'source "$1"; BUFFER="criu-cr --root $2 checkpoint "; _criu_cr_container_ids')
    res = subprocess.run(["zsh", "-f", "-c", driver, "zsh", str(script), fake_root], capture_output=True,
                         text=True, check=True)
    assert res.stdout.split() == ["db", "web1", "web2"]
