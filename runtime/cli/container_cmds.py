"""Container commands: run, create, start, state, list, ps, exec, logs, pause, resume, kill, delete, adopt.

``run -d`` returns once the process runs; the container holds none of our
stdio (its output goes to the monitor's log, ``criu-cr logs ID``). ``run``
without ``-d`` follows the log to our stdout until the container stops, then
deletes it and returns its exit status (like ``runc run``, but through the
log instead of attaching our terminal).
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from collections.abc import Callable
from typing import Any

from runtime.cli.output import Result, table

__all__ = ["register", "parse_signal"]

_log = logging.getLogger("criu_cr.cli")


def parse_signal(value: str) -> int:
    """``9``, ``KILL`` or ``SIGKILL`` -> signal number. Raises ValueError."""
    if value.isdigit():
        return int(value)
    name = value.upper()
    if not name.startswith("SIG"):
        name = "SIG" + name
    try:
        return int(signal.Signals[name])
    except KeyError:
        raise ValueError(f"unknown signal {value!r}") from None


def register(subparsers: argparse._SubParsersAction) -> None:
    def add(name: str, func, help_: str, with_id: bool = True) -> argparse.ArgumentParser:
        p = subparsers.add_parser(name, help=help_, description=help_)
        if with_id:
            p.add_argument("id", help="container id")
        p.set_defaults(func=func)
        return p

    p = add("run", _run, "create and start a container from an OCI bundle")
    p.add_argument("-d", "--detach", action="store_true", help="return once the container runs")
    p.add_argument("-b", "--bundle", default=".", help="bundle directory (default: current)")
    p = add("create", _create, "create a container; its process waits for `start`")
    p.add_argument("-b", "--bundle", default=".", help="bundle directory (default: current)")
    add("start", _transition("start"), "start a created container")
    add("state", _state, "print a container's state as JSON")
    add("list", _list, "list containers (--json: their states as a JSON array)", with_id=False)
    add("ps", _ps, "print the host pids of a container's processes (--json: a JSON array)")
    p = add("exec", _exec, "run a command inside a running container")
    p.add_argument("command", nargs=argparse.REMAINDER, help="command and arguments")
    add("logs", _logs, "print what the container wrote to stdout/stderr")
    add("pause", _transition("pause"), "freeze a running container")
    add("resume", _transition("resume"), "thaw a paused container")
    p = add("kill", _kill, "send a signal to the container's init (default SIGTERM)")
    p.add_argument("signal", nargs="?", default="TERM", help="signal name or number")
    p = add("delete", _delete, "delete a container and everything it holds")
    p.add_argument("-f", "--force", action="store_true", help="kill it first if it runs")
    p = add("adopt", _adopt, "register a runc-created container with criu-cr")
    p.add_argument("--runc-root", default="/run/runc", help="runc's state root (default /run/runc)")


def _warn(ctr) -> None:
    for warning in ctr.warnings:
        _log.warning("%s", warning)


def _done(ctr) -> Result:
    """A command that changed a container: nothing in text (as runc), its state in JSON."""
    return Result(data=ctr.state(), text="")


def _transition(method: str) -> Callable[[argparse.Namespace], Result]:
    """The handler of a command that is one Container method (start, pause, resume)."""

    def handler(args: argparse.Namespace) -> Result:
        ctr = _container(args)
        getattr(ctr, method)()
        return _done(ctr)

    return handler


def _as_json(data: Any) -> str:
    return json.dumps(data, indent=2)


def _container(args: argparse.Namespace):
    from runtime.container import Container

    return Container.load(args.id, args.root)


def _run(args: argparse.Namespace) -> int | Result:
    from runtime.container import Container

    ctr = Container.run(args.id, args.bundle, args.root)
    _warn(ctr)
    if args.detach:
        return _done(ctr)
    offset = 0
    try:
        while True:
            data = ctr.logs()
            if len(data) > offset:
                sys.stdout.buffer.write(data[offset:])
                sys.stdout.flush()
                offset = len(data)
            try:
                status = ctr.wait(timeout=0.1)
                break
            except TimeoutError:
                continue
        data = ctr.logs()
        sys.stdout.buffer.write(data[offset:])
        sys.stdout.flush()
    finally:
        ctr.delete(force=True)
    return status


def _create(args: argparse.Namespace) -> Result:
    from runtime.container import Container

    ctr = Container.create(args.id, args.bundle, args.root)
    _warn(ctr)
    return _done(ctr)


def _state(args: argparse.Namespace) -> Result:
    return Result(data=_container(args).state(), text=_as_json)  # JSON in both formats, as runc's


def _list(args: argparse.Namespace) -> Result:
    from runtime.container import Container

    return Result(data=[c.state() for c in Container.list(args.root)], text=_list_text)


def _list_text(states: list[dict[str, Any]]) -> str:
    rows = [("ID", "PID", "STATUS", "BUNDLE", "CREATED")]
    rows += [(s["id"], str(s["pid"]), s["status"], s["bundle"], s["created"]) for s in states]
    return table(rows)


def _ps(args: argparse.Namespace) -> Result:
    return Result(data=_container(args).ps())  # JSON: an array of pids, as `runc ps -f json`


def _exec(args: argparse.Namespace) -> int:
    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        raise ValueError("exec: give the command to run")
    sys.stdout.flush()
    return _container(args).exec(command, capture=False).exit_code


def _logs(args: argparse.Namespace) -> int:
    sys.stdout.buffer.write(_container(args).logs())
    sys.stdout.flush()
    return 0


def _kill(args: argparse.Namespace) -> Result:
    signum = parse_signal(args.signal)
    _container(args).kill(signum)
    return Result(data={"id": args.id, "signal": signum}, text="")


def _delete(args: argparse.Namespace) -> Result:
    _container(args).delete(force=args.force)
    return Result(data={"id": args.id, "deleted": True}, text="")


def _adopt(args: argparse.Namespace) -> Result:
    from runtime.container import Container

    ctr = Container.adopt_runc(args.id, runc_root=args.runc_root, root=args.root)
    return Result(data=ctr.state(), text=_as_json)

