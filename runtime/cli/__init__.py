"""The ``criu-cr`` command: a debug CLI over the Python API.

Each command group lives in its own module exposing ``register(subparsers)``;
a command's handler takes the parsed arguments and returns the exit status.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

# Modules that add sub-commands; a module not written yet is skipped.
_COMMAND_MODULES = ("rpc_cmds", "container_cmds", "cr_cmds", "migrate_cmds", "inspect_cmds")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="criu-cr",
        description="Checkpoint and restore Linux containers over CRIU's RPC (no runc).",
    )
    parser.add_argument("--root", default=None,
                        help="state directory for containers (default /run/criu-cr, or $CRIU_CR_ROOT)")
    parser.add_argument("--criu", default=None,
                        help="path to the criu binary (default $CRIU_CR_CRIU, then PATH)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in _COMMAND_MODULES:
        try:
            mod = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"{__name__}.{name}":
                continue
            raise
        mod.register(sub)
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


class _OperatorHandler(logging.Handler):
    """criu-cr's log records (the ``criu_cr`` loggers) as one line each: ``criu-cr: warning: ...`` on stderr."""

    def emit(self, record: logging.LogRecord) -> None:
        try:  # sys.stderr looked up now: it may have been replaced since the handler was installed
            print(f"criu-cr: {record.levelname.lower()}: {record.getMessage()}", file=sys.stderr)
        except Exception:  # noqa: BLE001 - logging's own convention
            self.handleError(record)


def install_log_handler() -> None:
    """Show operator messages (WARNING and up on the ``criu_cr`` loggers) on stderr; once per process."""
    logger = logging.getLogger("criu_cr")
    if not any(isinstance(h, _OperatorHandler) for h in logger.handlers):
        logger.addHandler(_OperatorHandler(logging.WARNING))


def main(argv: list[str] | None = None) -> int:
    from runtime.linux.signals import Interrupted, install_cli_handlers

    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "needs_root", True) and not has_sys_admin():
        print(f"criu-cr: error: {ROOT_MESSAGE}", file=sys.stderr)
        return 1
    install_log_handler()
    install_cli_handlers()
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print(f"criu-cr: interrupted{_outcome(args)}", file=sys.stderr)
        return 130
    except Interrupted as exc:
        print(f"criu-cr: {exc}{_outcome(args)}", file=sys.stderr)
        return exc.exit_status
    except Exception as exc:  # every error reaches the operator as one clear line
        from criu_rpc.errors import CriuError

        known = isinstance(exc, (CriuError, OSError, ValueError)) or type(exc).__module__.startswith("runtime")
        if not known:
            raise
        print(f"criu-cr: error: {exc}", file=sys.stderr)
        return 1


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
