"""What a command prints: its result as text or JSON, its errors, and the options that choose.

A command handler returns a :class:`Result` (the data, JSON-able, and how
to show it as text) or, for commands not converted yet, an exit status.
``main()`` renders the result with :func:`render` in the format chosen
by ``--format``/``--json``; errors go through :func:`report_error`. The
JSON shapes are documented in docs/cli-json.md and pinned by the schemas
in docs/schemas/ (one file per command, plus ``error.json``).

The output options (``--format``, ``--json``, ``--log-level``, ``--debug``,
``--quiet``) are accepted before the command and after it
(``criu-cr --format json list`` and ``criu-cr list --json`` alike):
:func:`add_output_options` puts them on the main parser and on every
command's parser.
"""

from __future__ import annotations

import argparse
import dataclasses
import enum
import json
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

from runtime.cli.errormap import ErrorInfo, error_object
from runtime.cli.exitcodes import Exit

__all__ = ["Result", "batch", "outcomes_result", "render", "to_jsonable", "report_error", "add_output_options", "chosen_format", "wants_json",
           "table", "FORMATS", "LOG_LEVELS"]

FORMATS = ("text", "json")
LOG_LEVELS = ("debug", "info", "warning", "error")


@dataclass(frozen=True, slots=True, kw_only=True)
class Result:
    """A command's outcome. ``data``: what ``--format json`` prints (a dict, list or dataclass);
    ``text``: the text form (a string, or a function of ``data``; None: ``data`` line by line);
    ``exit``: the exit status (e.g. ``check`` that finds the machine unfit)."""

    data: Any
    text: str | Callable[[Any], str] | None = None
    exit: int = Exit.OK


def to_jsonable(value: Any) -> Any:
    """``value`` with dataclasses as dicts, tuples as lists and enums as their values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, enum.Enum):
        return value.value
    return value


def _default_text(data: Any) -> str:
    if isinstance(data, dict):
        return "\n".join(f"{k}: {v}" for k, v in data.items())
    if isinstance(data, list):
        return "\n".join(str(v) for v in data)
    return "" if data is None else str(data)


def render(result: Result, fmt: str, out: TextIO | None = None) -> int:
    """Print ``result`` in ``fmt`` ("text" or "json") on ``out`` (default stdout); returns its exit status."""
    out = out if out is not None else sys.stdout
    data = to_jsonable(result.data)
    if fmt == "json":
        out.write(json.dumps(data, indent=2) + "\n")
    else:
        text = result.text(data) if callable(result.text) else result.text
        text = _default_text(data) if text is None else text
        if text:
            out.write(text if text.endswith("\n") else text + "\n")
    out.flush()
    return int(result.exit)


def batch(items: Iterable[tuple[str, Callable[[], Any]]], text: Callable[[Any], str] | None = None) -> Result:
    """Run a command over several containers: ``items`` are ``(id, do)``; each ``do()`` returns that
    container's JSON-able result or raises a typed error, which is recorded and the batch goes on.
    See :func:`outcomes_result` for the result.
    """
    rows: list[tuple[str, Any, BaseException | None]] = []
    for item_id, do in items:
        try:
            rows.append((item_id, do(), None))
        except Exception as exc:  # noqa: BLE001 - recorded; outcomes_result re-raises unexpected ones
            rows.append((item_id, None, exc))
    return outcomes_result(rows, text)


def outcomes_result(rows: Iterable[tuple[str, Any, BaseException | None]],
                    text: Callable[[Any], str] | None = None) -> Result:
    """Several containers' outcomes ``(id, result, error)`` (one of the two None) as one Result.

    The data is ``{"results": [{"id", "ok": true, "result"} | {"id", "ok": false, "error": {...}}]}``
    (docs/schemas/batch.json); the exit status 0 when all succeeded, PARTIAL (7) when some failed, and
    when all failed their common status (or FAILED). An error the CLI does not expect is raised (a bug).
    """
    from runtime.cli.errormap import classify

    results: list[dict[str, Any]] = []
    failed: set[int] = set()
    for item_id, value, exc in rows:
        if exc is None:
            results.append({"id": item_id, "ok": True, "result": to_jsonable(value)})
            continue
        info = classify(exc)
        if info is None:
            raise exc
        failed.add(int(info.exit))
        results.append({"id": item_id, "ok": False, "error": error_object(info)["error"]})
    if not failed:
        status: int = Exit.OK
    elif any(r["ok"] for r in results):
        status = Exit.PARTIAL
    else:
        status = failed.pop() if len(failed) == 1 else Exit.FAILED
    return Result(data={"results": results}, text=text or _batch_text, exit=status)


def _batch_text(data: dict[str, Any]) -> str:
    return "\n".join(f"{r['id']}: " + ("ok" if r["ok"] else f"error: {r['error']['message']}")
                     for r in data["results"])


def table(rows: Sequence[Sequence[str]]) -> str:
    """Rows (the first is the header) as left-aligned columns two spaces apart."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in rows)


def report_error(info: ErrorInfo, fmt: str, err: TextIO | None = None) -> int:
    """Write the error on stderr (one line, or one JSON object); returns its exit status."""
    err = err if err is not None else sys.stderr
    if fmt == "json":
        err.write(json.dumps(error_object(info)) + "\n")
    else:
        err.write(f"criu-cr: error: {info.message}\n")
    err.flush()
    return int(info.exit)


# -- the options ----------------------------------------------------------------------

def _options() -> list[tuple[tuple[str, ...], dict[str, Any]]]:
    return [
        (("--format",), dict(choices=FORMATS, help="output format: text (default) or json")),
        (("--json",), dict(dest="format", action="store_const", const="json", help="same as --format json")),
        (("--log-level",), dict(dest="verbosity", choices=LOG_LEVELS, type=str.lower, metavar="LEVEL",
                                help="show criu-cr's own log from this level on: debug, info, warning "
                                     "(default), error")),
        (("--debug",), dict(dest="verbosity", action="store_const", const="debug",
                            help="same as --log-level debug: what criu-cr asks CRIU, the fds it passes, "
                                 "the time of each phase")),
        (("-q", "--quiet"), dict(action="store_true", help="print only errors (and the result)")),
    ]


# "verbosity", not "log_level": `dump -v N` has that one (CRIU's log level).
_TOP_DEFAULTS = {"format": "text", "verbosity": None, "quiet": False}


def add_output_options(parser: argparse.ArgumentParser, commands: argparse._SubParsersAction) -> None:
    """The output options on ``parser`` (with their defaults) and on each command of ``commands``.

    On a command they default to "not given", so an option placed before the
    command survives. A command that already has one of these flags keeps
    its own: with the same destination (``checkpoint --quiet``) it is the
    same option; with another (a ``--json`` stored as ``args.json``) it is
    left alone, and ``main()`` reads ``args.json`` as ``--format json``.
    """
    for flags, kw in _options():
        parser.add_argument(*flags, **kw)
    parser.set_defaults(**_TOP_DEFAULTS)
    for sub in {id(p): p for p in commands.choices.values()}.values():
        for flags, kw in _options():
            dest = kw.get("dest") or flags[-1].lstrip("-").replace("-", "_")
            # argparse has no public "has this option" question
            taken = [sub._option_string_actions[f] for f in flags if f in sub._option_string_actions]
            for action in taken:
                if action.dest == dest:
                    action.default = argparse.SUPPRESS
            free = [f for f in flags if f not in sub._option_string_actions]
            if free and not taken:
                sub.add_argument(*free, **kw, default=argparse.SUPPRESS)


def chosen_format(args: argparse.Namespace) -> str:
    """The output format asked for: ``--format``, or a command's own ``--json`` flag."""
    return "json" if getattr(args, "json", None) is True else args.format


def wants_json(argv: Sequence[str]) -> bool:
    """Whether ``argv`` asks for JSON (before it is parsed: for errors in the arguments themselves)."""
    args = list(argv)
    if "--" in args:
        args = args[:args.index("--")]
    return "--json" in args or "--format=json" in args or any(
        a == "--format" and b == "json" for a, b in zip(args, args[1:]))
