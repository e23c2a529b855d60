"""The CLI's dispatch: only the named command's parsers are built, handlers are named and resolved."""

from __future__ import annotations

import argparse
import gc
import importlib

import pytest

import runtime.cli as cli
from runtime.cli.handlers import Handler, resolve


def _subcommands(parser: argparse.ArgumentParser) -> set[str]:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return set(sub.choices)


def _handlers(parser: argparse.ArgumentParser) -> dict[str, object]:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {name: p.get_default("func") for name, p in sub.choices.items()}


def test_the_command_table_says_what_each_module_registers():
    for module, names in cli.COMMANDS.items():
        sub = argparse.ArgumentParser().add_subparsers()
        importlib.import_module(f"runtime.cli.{module}").register(sub)
        assert set(sub.choices) == set(names), module
    assert set(cli.COMMANDS) <= set(cli._COMMAND_MODULES)


def test_the_value_options_are_the_top_level_options_that_take_a_value():
    parser = cli.build_parser(["--help"])
    taking = {flag for a in parser._actions if a.option_strings and a.nargs != 0 and not isinstance(
              a, argparse._SubParsersAction) for flag in a.option_strings if flag.startswith("--")}
    assert taking == set(cli.VALUE_OPTIONS)


@pytest.mark.parametrize(("argv", "name"), [
    (["checkpoint", "web"], "checkpoint"),
    (["--root", "/r", "restore", "web"], "restore"),
    (["--root=/r", "--criu", "/c", "list"], "list"),
    (["--format", "json", "--debug", "state", "x"], "state"),
    (["--lo", "debug", "-q", "checkpoint", "x"], "checkpoint"),
    (["--ro", "checkpoint", "state", "x"], "state"),  # argparse's prefix: "checkpoint" is the root here
    (["--", "list"], "list"),
    (["--help"], None),
    ([], None),
])
def test_command_name_skips_criu_crs_own_options(argv, name):
    assert cli.command_name(argv) == name


def test_a_named_command_builds_its_group_only():
    assert _subcommands(cli.build_parser(["checkpoint", "web"])) == {"checkpoint", "restore"}
    assert _subcommands(cli.build_parser(["--root", "/r", "list"])) == set(cli.COMMANDS["container_cmds"])


def test_help_or_an_unknown_command_builds_every_group():
    every = set().union(*cli.COMMANDS.values())
    assert _subcommands(cli.build_parser(["--help"])) >= every
    assert _subcommands(cli.build_parser(["nonsense"])) >= every
    assert _subcommands(cli.build_parser()) >= every


def test_every_named_handler_resolves_to_a_function():
    for name, func in _handlers(cli.build_parser()).items():
        refs = [func.ref, *func.when.values()] if isinstance(func, Handler) else []
        for ref in refs:
            assert callable(resolve(Handler(ref), argparse.Namespace())), (name, ref)
        assert callable(func), name


def test_a_handler_is_picked_by_option():
    h = Handler("restore_cmd:run", when={"import_": "import_cmd:run"})
    assert h.pick(argparse.Namespace(import_=None)) == "runtime.cli.restore_cmd:run"
    assert h.pick(argparse.Namespace(import_="a.tar")) == "runtime.cli.import_cmd:run"
    with pytest.raises(ValueError, match="module:function"):
        Handler("restore_cmd.run")


def test_plain_functions_still_serve_as_handlers():
    def f(args):
        return 3

    assert resolve(f, argparse.Namespace()) is f


def test_main_with_arguments_leaves_the_callers_garbage_collector_alone(capsys):
    assert gc.isenabled()
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    assert gc.isenabled()
    assert "checkpoint" in capsys.readouterr().out
