"""The man pages: one per command, with examples that parse, rendering cleanly with groff and man."""

from __future__ import annotations

import shlex
import shutil
import subprocess

import pytest

from runtime._version import __version__
from runtime.cli import build_parser
from runtime.cli.examples import EXAMPLES, NOTES
from runtime.cli.exitcodes import Exit
from runtime.cli.manpage import commands, render_pages, roff_escape
from tests.conftest import require

PARSER = build_parser()
COMMANDS = {c.key: c for c in commands(PARSER)}
PAGES = render_pages(PARSER, version=__version__)


def test_every_command_has_a_page_and_the_main_page_lists_it() -> None:
    assert set(PAGES) == {"criu-cr.1"} | {f"criu-cr-{k.replace(' ', '-')}.1" for k in COMMANDS}
    for key in COMMANDS:
        assert f"criu\\-cr\\-{roff_escape(key.replace(' ', '-'))}" in PAGES["criu-cr.1"]


def test_every_command_has_examples() -> None:
    """A command added without examples fails here: add them to runtime/cli/examples.py."""
    missing = sorted(k for k in COMMANDS if not EXAMPLES.get(k))
    assert not missing, f"commands without examples in runtime/cli/examples.py: {missing}"
    unknown = sorted(set(EXAMPLES) - set(COMMANDS) - {""})
    assert not unknown, f"examples for commands that do not exist: {unknown}"
    assert not set(NOTES) - set(COMMANDS)


@pytest.mark.parametrize("key", sorted(EXAMPLES))
def test_examples_parse_with_the_real_parser(key: str) -> None:
    for _, line in EXAMPLES[key]:
        argv = shlex.split(line)
        assert argv[0] == "criu-cr"
        PARSER.parse_args(argv[1:])  # SystemExit (a failure here) on an option that does not exist
        assert all(word in argv[1:] for word in key.split()), f"{line!r} is not an example of {key!r}"


def test_a_page_documents_every_option_and_the_exit_statuses() -> None:
    page = PAGES["criu-cr-checkpoint.1"]
    for action in COMMANDS["checkpoint"].parser._actions:
        for opt in action.option_strings:
            assert f"\\fB{roff_escape(opt)}\\fR" in page
    for code in Exit:
        assert f"\\fB{int(code)}\\fR\n{roff_escape(code.description)}" in page
    assert "criu\\-cr checkpoint \\-\\-tcp\\-established web" in page  # an example
    assert f'"criu\\-cr {__version__}"' in page


def test_pages_are_deterministic() -> None:
    assert render_pages(build_parser(), version=__version__) == PAGES


def test_roff_escape_makes_control_characters_literal() -> None:
    assert roff_escape(".start") == "\\&.start"
    assert roff_escape("'quote") == "\\&'quote"
    assert roff_escape("a\\b --x") == "a\\eb \\-\\-x"


@pytest.mark.parametrize("name", sorted(PAGES))
def test_pages_render_without_groff_warnings(name: str, tmp_path) -> None:
    require(shutil.which("groff") is not None, "needs groff (groff-base; scripts/install installs it)")
    res = subprocess.run(["groff", "-ww", "-man", "-Tutf8", "-z"], input=PAGES[name], capture_output=True,
                         text=True, check=False)
    assert res.returncode == 0 and res.stderr == "", res.stderr


@pytest.mark.parametrize("name", ["criu-cr.1", "criu-cr-checkpoint.1", "criu-cr-restore.1"])
def test_man_l_shows_the_page(name: str, tmp_path) -> None:
    require(shutil.which("man") is not None, "needs man (man-db; scripts/install installs it)")
    page = tmp_path / name
    page.write_text(PAGES[name])
    res = subprocess.run(["man", "--warnings", "-l", str(page)], capture_output=True, text=True, check=False,
                         env={"PATH": "/usr/bin:/bin", "MANPAGER": "cat", "MANWIDTH": "100", "LANG": "C.UTF-8"})
    assert res.returncode == 0 and res.stderr == "", res.stderr
    text = res.stdout
    for section in ("NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "EXAMPLES", "EXIT STATUS", "SEE ALSO"):
        assert f"\n{section}\n" in text
    if name == "criu-cr-checkpoint.1":
        assert "--tcp-established" in text and "criu-cr checkpoint -e /tmp/web.tar.zst web" in text
