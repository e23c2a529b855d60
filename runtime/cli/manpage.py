"""Man pages generated from the ``criu-cr`` argparse parser: ``criu-cr(1)`` and one page per command.

Pure: a parser in, ``{file name: roff text}`` out (``render_pages``); the
writing is :mod:`runtime.cli.docgen`'s. Our own small generator rather than
argparse-manpage: that one writes one page per parser with the sub-commands
as sections, while criu-cr wants ``criu-cr-checkpoint(1)`` and the like (as
podman and git do), each with its examples and the exit statuses from
:mod:`runtime.cli.exitcodes`; both are a few dozen lines here and need no
build-time dependency. Nothing but the examples is hand-written, so a page
cannot drift from the options it documents.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = ["Command", "commands", "render_pages", "page_name", "roff_escape"]

SECTION = "1"
MANUAL = "criu-cr manual"


@dataclass(frozen=True, slots=True, kw_only=True)
class Command:
    """One (sub-)command: its words after ``criu-cr`` (``("checkpoint",)``), parser and one-line help."""

    words: tuple[str, ...]
    parser: argparse.ArgumentParser
    summary: str
    aliases: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        """The examples' key: the words joined by spaces (``""`` for criu-cr itself)."""
        return " ".join(self.words)


def _subparsers(parser: argparse.ArgumentParser) -> argparse._SubParsersAction | None:
    for action in parser._actions:  # argparse keeps no public list of sub-commands
        if isinstance(action, argparse._SubParsersAction):
            return action
    return None


def commands(parser: argparse.ArgumentParser, words: tuple[str, ...] = ()) -> Iterator[Command]:
    """Every sub-command under ``parser``, depth first, in registration order (aliases folded in)."""
    sub = _subparsers(parser)
    if sub is None:
        return
    helps = {a.dest: a.help or "" for a in sub._choices_actions}
    seen: dict[int, str] = {}
    for name, child in sub.choices.items():
        if id(child) in seen:
            continue
        seen[id(child)] = name
        aliases = tuple(n for n, p in sub.choices.items() if p is child and n != name)
        yield Command(words=(*words, name), parser=child, summary=helps.get(name, ""), aliases=aliases)
        yield from commands(child, (*words, name))


def page_name(words: tuple[str, ...]) -> str:
    """``("checkpoint",)`` -> ``criu-cr-checkpoint`` (the page's name, without the section)."""
    return "-".join(("criu-cr", *words))


def roff_escape(text: str) -> str:
    """Text safe in a roff line: backslashes, minus signs, and a leading dot or quote made literal."""
    out = text.replace("\\", "\\e").replace("-", "\\-")
    return "\\&" + out if out.startswith((".", "'")) else out


def _paragraphs(text: str) -> list[str]:
    lines = []
    for para in text.strip().split("\n\n"):
        lines += [".PP", roff_escape(" ".join(para.split()))]
    return lines


def _expand_help(action: argparse.Action, prog: str) -> str:
    """argparse's own %-expansion of a help string (``%(default)s``, ``%(choices)s``...)."""
    text = action.help or ""
    if "%" not in text:
        return text
    params = {k: v for k, v in vars(action).items() if v is not argparse.SUPPRESS}
    params["prog"] = prog
    if params.get("choices") is not None:
        params["choices"] = ", ".join(str(c) for c in params["choices"])
    return text % params


def _metavar(action: argparse.Action) -> str:
    if action.metavar is not None:
        return action.metavar if isinstance(action.metavar, str) else " ".join(action.metavar)
    if action.choices is not None:
        return "{" + ",".join(map(str, action.choices)) + "}"
    return action.dest if not action.option_strings else action.dest.upper()


def _option_lines(action: argparse.Action, prog: str) -> list[str]:
    """``.TP`` entry for one argument: its names (bold), value (italic), help, choices."""
    takes_value = action.nargs != 0
    if action.option_strings:
        names = ", ".join(f"\\fB{roff_escape(s)}\\fR" for s in action.option_strings)
        if takes_value:
            names += f" \\fI{roff_escape(_metavar(action))}\\fR"
    else:
        names = f"\\fI{roff_escape(_metavar(action))}\\fR"
        if action.nargs in ("?", "*"):
            names = f"[{names}]"
        if action.nargs in ("*", "+", argparse.REMAINDER):
            names += "\\ ..."
    text = _expand_help(action, prog)
    if action.choices is not None and takes_value and "{" not in _metavar(action):
        text += f" (one of: {', '.join(map(str, action.choices))})"
    return [".TP", names, roff_escape(text)] if text else [".TP", names]


def _options(parser: argparse.ArgumentParser) -> list[str]:
    visible = [a for a in parser._actions if a.help is not argparse.SUPPRESS
               and not isinstance(a, argparse._SubParsersAction)]
    positional = [a for a in visible if not a.option_strings]
    optional = [a for a in visible if a.option_strings]
    out: list[str] = []
    if positional:
        out += [".SH ARGUMENTS"]
        for a in positional:
            out += _option_lines(a, parser.prog)
    if optional:
        out += [".SH OPTIONS"]
        for a in optional:
            out += _option_lines(a, parser.prog)
    return out


def _synopsis(cmd_parser: argparse.ArgumentParser) -> list[str]:
    usage = cmd_parser.format_usage().removeprefix("usage: ")
    usage = " ".join(usage.split())
    prog = cmd_parser.prog
    rest = usage.removeprefix(prog).strip()
    return [".SH SYNOPSIS", ".nh", ".ad l", f"\\fB{roff_escape(prog)}\\fR {roff_escape(rest)}".rstrip(),
            ".ad", ".hy"]


def _examples(key: str, examples: dict[str, list[tuple[str, str]]]) -> list[str]:
    out: list[str] = []
    for what, line in examples.get(key, []):
        if what:
            out += [".PP", roff_escape(what)]
        out += [".PP", ".RS 4", ".nf", f"\\fB{roff_escape(line)}\\fR", ".fi", ".RE"]
    return [".SH EXAMPLES", *out] if out else []


def _exit_status(note: str | None) -> list[str]:
    from runtime.cli.exitcodes import Exit

    out = [".SH EXIT STATUS"]
    for code in Exit:
        out += [".TP", f"\\fB{int(code)}\\fR", roff_escape(code.description)]
    if note:
        out += [".PP", roff_escape(note)]
    return out


def _header(name: str, summary: str, version: str) -> list[str]:
    title = roff_escape(name.upper())
    return [f'.\\" Generated by runtime.cli.manpage from the criu-cr parser; do not edit.',
            f'.TH {title} {SECTION} "" "criu\\-cr {roff_escape(version)}" "{MANUAL}"',
            ".SH NAME", f"{roff_escape(name)} \\- {roff_escape(summary)}"]


def _see_also(refs: list[str]) -> list[str]:
    items = [f".BR {roff_escape(r)} ({SECTION})" + ("," if i < len(refs) - 1 else "") for i, r in enumerate(refs)]
    return [".SH SEE ALSO", *items]


# What the main page says beyond the parser: where state lives and what the environment changes.
_ENVIRONMENT = [
    ("CRIU_CR_ROOT", "the state root when --root is not given (default /run/criu-cr)"),
    ("CRIU_CR_CRIU", "the criu binary when --criu is not given; then PATH, then /opt/criu-cr/criu/bin/criu"),
]
_FILES = [
    ("/run/criu-cr/ID/", "a container's state (state.json), its root filesystem mount and overlay, its log"),
    ("/run/criu-cr/ID/checkpoint/", "its last checkpoint (CRIU's images, criu-cr.json, criu-cr.manifest), 0700"),
]


def _main_page(parser: argparse.ArgumentParser, cmds: list[Command], version: str,
               examples: dict[str, list[tuple[str, str]]]) -> str:
    lines = _header("criu-cr", "checkpoint and restore Linux containers over CRIU's RPC", version)
    lines += _synopsis(parser)
    lines += [".SH DESCRIPTION", *_paragraphs(parser.description or "")[1:]]
    lines += [".PP", "Each command has its own page; run it with \\fB\\-h\\fR for a summary."]
    lines += [".SH COMMANDS"]
    for c in cmds:
        lines += [".TP", f".BR {roff_escape(page_name(c.words))} ({SECTION})", roff_escape(c.summary)]
    lines += _options(parser)
    lines += _examples("", examples)
    lines += _exit_status(None)
    lines += [".SH ENVIRONMENT"]
    for var, what in _ENVIRONMENT:
        lines += [".TP", f".B {var}", roff_escape(what)]
    lines += [".SH FILES"]
    for path, what in _FILES:
        lines += [".TP", f".I {roff_escape(path)}", roff_escape(what)]
    lines += _see_also([page_name(c.words) for c in cmds])
    return "\n".join(lines) + "\n"


def _command_page(cmd: Command, version: str, examples: dict[str, list[tuple[str, str]]],
                  notes: dict[str, str], global_options: list[str]) -> str:
    name = page_name(cmd.words)
    lines = _header(name, cmd.summary or cmd.key, version)
    lines += _synopsis(cmd.parser)
    desc = cmd.parser.description or cmd.summary
    desc = desc[:1].upper() + desc[1:]
    lines += [".SH DESCRIPTION", *_paragraphs(desc)[1:]]
    if cmd.aliases:
        lines += [".PP", roff_escape("Also called: " + ", ".join(cmd.aliases) + ".")]
    own = {o for a in cmd.parser._actions for o in a.option_strings}
    before = [o for o in global_options if o not in own]  # some are taken after the command too
    if before:
        names = ", ".join(f"\\fB{roff_escape(o)}\\fR" for o in before)
        lines += [".PP", f"The global options ({names}) go before the command; see", ".BR criu\\-cr (1)."]
    lines += _options(cmd.parser)
    lines += _examples(cmd.key, examples)
    lines += _exit_status(notes.get(cmd.key))
    lines += _see_also(["criu-cr"])
    return "\n".join(lines) + "\n"


def render_pages(parser: argparse.ArgumentParser, *, version: str,
                 examples: dict[str, list[tuple[str, str]]] | None = None,
                 notes: dict[str, str] | None = None) -> dict[str, str]:
    """``{"criu-cr.1": roff, "criu-cr-checkpoint.1": roff, ...}`` for ``parser`` and every sub-command."""
    if examples is None or notes is None:
        from runtime.cli import examples as ex

        examples = ex.EXAMPLES if examples is None else examples
        notes = ex.NOTES if notes is None else notes
    cmds = list(commands(parser))
    global_options = [a.option_strings[-1] for a in parser._actions
                      if a.option_strings and a.help is not argparse.SUPPRESS and "--help" not in a.option_strings]
    pages = {f"criu-cr.{SECTION}": _main_page(parser, cmds, version, examples)}
    for c in cmds:
        pages[f"{page_name(c.words)}.{SECTION}"] = _command_page(c, version, examples, notes, global_options)
    return pages
