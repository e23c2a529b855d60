"""The ``criu-cr`` command: a debug CLI over the Python API.

Each command group lives in its own module exposing ``register(subparsers)``;
a command's handler takes the parsed arguments and returns an
:class:`~runtime.cli.output.Result` (printed as text or JSON by ``main()``)
or an exit status. Errors are raised, never printed: ``main()`` gives each
its exit status and stable code in one place (runtime.cli.errormap).
A parser may name its handler ``Handler("module:function")`` (see
:mod:`runtime.cli.handlers`): it is imported only when that command runs.

Start-up is part of every command's time (docs/performance.md): ``criu-cr
X`` builds the parsers of X's group only, loads X's handler after parsing,
collects no garbage while importing, and does not make Python walk every
object again on its way out.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import logging
import sys
from typing import NoReturn

from runtime.cli.errormap import ErrorInfo, NotRootError, UsageError, classify
from runtime.cli.exitcodes import Exit
from runtime.cli.handlers import resolve
from runtime.cli.logsetup import configure_logging, level_for
from runtime.cli.output import Result, add_output_options, chosen_format, render, report_error, wants_json

# Modules that add sub-commands; a module not written yet is skipped.
_COMMAND_MODULES = ("rpc_cmds", "container_cmds", "cr_cmds", "migrate_cmds", "inspect_cmds")

# The sub-commands each module adds: `criu-cr X ...` builds only the parsers of X's module
# (argparse spends ~0.4 ms per sub-command: ~12 ms for all of them). A module missing
# here is always built; tests/unit/cli/test_dispatch.py checks the table.
COMMANDS = {
    "rpc_cmds": ("check", "version", "dump", "restore-tree"),
    "container_cmds": ("run", "create", "start", "state", "list", "ps", "exec", "logs", "pause", "resume",
                       "kill", "delete", "adopt"),
    "cr_cmds": ("checkpoint", "restore"),
    "migrate_cmds": ("receive", "migrate"),
    "inspect_cmds": ("inspect", "diff"),
}
# criu-cr's own options that take a value (test_dispatch checks this against the parser)
VALUE_OPTIONS = ("--root", "--criu", "--format", "--log-level")


def command_name(argv: list[str]) -> str | None:
    """The sub-command ``argv`` names (None: none, or only options). Pure.

    Skips criu-cr's own options and their values (``--root DIR``,
    ``--root=DIR``, and argparse's unambiguous prefixes such as ``--ro DIR``).
    """
    args = iter(argv)
    for arg in args:
        if arg == "--":
            return next(args, None)
        if not arg.startswith("-"):
            return arg
        if "=" not in arg and len(arg) > 2 and sum(o.startswith(arg) for o in VALUE_OPTIONS) == 1:
            next(args, None)
    return None


def _modules_for(command: str | None) -> tuple[str, ...]:
    """The command modules to build for ``command``: its own (and any not in COMMANDS), else all."""
    owner = [m for m in _COMMAND_MODULES if command in COMMANDS.get(m, ())]
    if not owner:
        return _COMMAND_MODULES
    return tuple(m for m in _COMMAND_MODULES if m in owner or m not in COMMANDS)


class _RaisingParser(argparse.ArgumentParser):
    """argparse, but a usage error is raised (as UsageError) for main() to report in the chosen format."""

    def error(self, message: str) -> NoReturn:
        command = self.prog.removeprefix("criu-cr").strip()  # argparse's prog: "criu-cr checkpoint"
        raise UsageError(f"{command}: {message}" if command else message, self.format_usage())


def build_parser(argv: list[str] | None = None, *, raising: bool = False) -> argparse.ArgumentParser:
    """criu-cr's parser (every command; given ``argv``, only the group of the command it names);
    ``raising``: usage errors raise UsageError instead of exiting (main() reports them)."""
    parser = (_RaisingParser if raising else argparse.ArgumentParser)(
        prog="criu-cr",
        description="Checkpoint and restore Linux containers over CRIU's RPC (no runc).",
        epilog="Exit status: " + "; ".join(f"{int(e)} {e.name.lower()}" for e in Exit)
               + " (docs/cli-json.md). --format json: results as JSON on stdout, errors as one JSON object "
                 "on stderr.",
    )
    parser.add_argument("--root", default=None,
                        help="state directory for containers (default /run/criu-cr, or $CRIU_CR_ROOT)")
    parser.add_argument("--criu", default=None,
                        help="path to the criu binary (default $CRIU_CR_CRIU, then PATH)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in _modules_for(command_name(argv)) if argv is not None else _COMMAND_MODULES:
        try:
            mod = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"{__name__}.{name}":
                continue
            raise
        mod.register(sub)
    add_output_options(parser, sub)
    return parser


# Commands that work without root set ``needs_root=False`` (check, version).
_CAP_SYS_ADMIN = 21  # capability(7)
ROOT_MESSAGE = ("criu-cr needs root (CAP_SYS_ADMIN, CAP_SYS_PTRACE, CAP_NET_ADMIN... for CRIU, "
                "namespaces, mounts and cgroups): run it with sudo")


def has_sys_admin(status: str | None = None) -> bool:
    """Whether this process has CAP_SYS_ADMIN in its effective set (``status``: /proc/self/status text)."""
    if status is None:
        try:
            with open("/proc/self/status", encoding="ascii", errors="replace") as f:
                status = f.read()
        except OSError:
            return True  # cannot tell: let the command itself fail
    for line in status.splitlines():
        if line.startswith("CapEff:"):
            return bool(int(line.split()[1], 16) >> _CAP_SYS_ADMIN & 1)
    return True


def install_log_handler() -> None:
    """Show operator messages (WARNING and up on the ``criu_cr`` loggers) on stderr; once per process."""
    configure_logging(logging.WARNING)


def main(argv: list[str] | None = None) -> int:
    """Run one command (``argv``: default the process's own arguments); returns its exit status
    (runtime.cli.exitcodes: one scheme for every command)."""
    own_process = argv is None  # the criu-cr command itself, not a caller's process
    if own_process:
        # Imports allocate a lot and free almost nothing: collecting during them costs ~3 ms.
        gc.disable()
    try:
        return _run(sys.argv[1:] if argv is None else list(argv), own_process)
    finally:
        if own_process:
            # The process ends next. Frozen objects are skipped by Python's last collection,
            # which would otherwise walk every module's objects (~12 ms) to free what exit frees.
            gc.freeze()


def _run(argv: list[str], own_process: bool) -> int:
    from runtime.linux.signals import Interrupted, install_cli_handlers

    fmt = "json" if wants_json(argv) else "text"
    try:
        args = build_parser(argv, raising=True).parse_args(argv)
    except UsageError as exc:
        if fmt == "text":
            sys.stderr.write(exc.usage)
        return report_error(classify(exc), fmt)
    fmt = chosen_format(args)
    configure_logging(level_for(args.verbosity, args.quiet), fmt)
    try:
        if getattr(args, "needs_root", True) and not has_sys_admin():
            raise NotRootError(ROOT_MESSAGE)
        install_cli_handlers()
        handler = resolve(args.func, args)  # the command's own imports happen here
        if own_process:
            gc.enable()
        outcome = handler(args)
        return render(outcome, fmt) if isinstance(outcome, Result) else int(outcome or 0)
    except (KeyboardInterrupt, Interrupted) as exc:
        status = exc.exit_status if isinstance(exc, Interrupted) else int(Exit.INTERRUPTED)
        text = str(exc) if isinstance(exc, Interrupted) else "interrupted"
        return report_interrupt(f"{text}{_outcome(args)}", status, fmt)
    except Exception as exc:  # every error reaches the operator as one clear line (or one JSON object)
        info = classify(exc)
        if info is None:  # not ours to expect: a bug, whose traceback helps (text) or is logged (json)
            if fmt != "json":
                raise
            logging.getLogger("criu_cr.cli").debug("unexpected error", exc_info=True)
            info = ErrorInfo(exit=Exit.FAILED, code="internal", message=f"{type(exc).__name__}: {exc}")
        return report_error(info, fmt)


def report_interrupt(message: str, status: int, fmt: str) -> int:
    """An interrupt as an error (text: ``criu-cr: interrupted...``); returns ``status`` (128 + signal)."""
    if fmt == "json":
        return report_error(ErrorInfo(exit=Exit(status), code="interrupted", message=message), fmt)
    print(f"criu-cr: {message}", file=sys.stderr)
    return status


def _outcome(args: argparse.Namespace) -> str:
    """After an interrupt: what the container it was about is now (the user must know)."""
    cid = getattr(args, "id", None)
    if not isinstance(cid, str):
        return ""
    from runtime.container import Container
    from runtime.errors import ContainerError

    try:
        return f"; container {cid!r} is {Container.load(cid, args.root).status}"
    except (ContainerError, ValueError, OSError):  # only a courtesy; the interrupt is what is reported
        return ""


if __name__ == "__main__":
    sys.exit(main())
