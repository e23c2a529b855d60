"""bash and zsh completion scripts generated from the ``criu-cr`` parser (with shtab).

The scripts are static: pressing TAB starts no Python. shtab (a dev/build
dependency only: ``scripts/install`` runs this at install time, the installed
product never imports it) turns the parser into the option and sub-command
tables; this module only says, per argument, what its values are:

- a container id (an argument named ``id`` or ``ids``): the
  directory names under the state root that hold a ``state.json`` -- the
  root is ``--root`` given on the line, else ``$CRIU_CR_ROOT``, else
  ``/run/criu-cr``; read by the shell, not by criu-cr;
- a path (``--image-path``, ``--export FILE``, ``--bundle``, ...): files or
  directories, by the argument's name or metavar;
- either (a ``SOURCE``: a container id or a checkpoint's path): both;
- choices: from the parser, as shtab does by itself.

A command added later gets all of this from its arguments' names.
"""

from __future__ import annotations

import argparse

__all__ = ["annotate", "render", "value_kind", "CONTAINER", "FILE", "DIRECTORY", "CONTAINER_OR_PATH"]

CONTAINER, FILE, DIRECTORY, CONTAINER_OR_PATH = "container", "file", "directory", "container-or-path"

# Argument dests whose values are container ids or paths; metavars say it for the rest.
_CONTAINER_DESTS = frozenset({"id", "ids"})
_DIRECTORY_DESTS = frozenset({"image_path", "images_dir", "bundle", "rootfs", "root", "runc_root"})
_FILE_DESTS = frozenset({"export", "import_", "token_file", "criu", "netns"})

# The shell functions the scripts call for container ids (see the module docstring).
_BASH_PREAMBLE = r"""
# criu-cr: container ids = directories with a state.json under the state root
# (--root on the line, else $CRIU_CR_ROOT, else /run/criu-cr). No Python runs.
_criu_cr_container_ids() {
  local root=${CRIU_CR_ROOT:-/run/criu-cr} i w d
  for ((i = 1; i < ${#COMP_WORDS[@]}; i++)); do
    w=${COMP_WORDS[i]}
    if [[ $w == --root ]]; then
      if [[ ${COMP_WORDS[i+1]-} == = ]]; then root=${COMP_WORDS[i+2]-}; else root=${COMP_WORDS[i+1]-}; fi
    elif [[ $w == --root=* ]]; then
      root=${w#--root=}
    fi
  done
  root=${root/#\~/$HOME}
  for d in "$root"/*/state.json; do
    [[ -f $d ]] || continue
    d=${d%/state.json}
    d=${d##*/}
    [[ $d == "$1"* ]] && printf '%s\n' "$d"
  done
}

_criu_cr_container_ids_or_files() {
  _criu_cr_container_ids "$1"
  compgen -f -- "$1"
}
"""

_ZSH_PREAMBLE = r"""
# criu-cr: container ids = directories with a state.json under the state root
# (--root on the line, else $CRIU_CR_ROOT, else /run/criu-cr). No Python runs.
_criu_cr_container_ids() {
  local root=${CRIU_CR_ROOT:-/run/criu-cr} i
  local -a w ids
  w=(${(z)BUFFER})
  for ((i = 1; i <= ${#w}; i++)); do
    case $w[i] in
      --root) root=${(Q)w[i+1]} ;;
      --root=*) root=${(Q)${w[i]#--root=}} ;;
    esac
  done
  ids=(${~root}/*/state.json(N:h:t))
  compadd -a ids
}

_criu_cr_container_ids_or_files() {
  _alternative 'containers:container id:_criu_cr_container_ids' 'files:path:_files'
}
"""

_SHELL_ACTIONS = {
    "bash": {CONTAINER: "_criu_cr_container_ids", FILE: "_shtab_compgen_files", DIRECTORY: "_shtab_compgen_dirs",
             CONTAINER_OR_PATH: "_criu_cr_container_ids_or_files"},
    "zsh": {CONTAINER: "_criu_cr_container_ids", FILE: "_files", DIRECTORY: "_files -/",
            CONTAINER_OR_PATH: "_criu_cr_container_ids_or_files"},
}


def value_kind(action: argparse.Action) -> str | None:
    """What an argument's values are: CONTAINER, FILE, DIRECTORY or None (choices, numbers, words)."""
    if action.nargs == 0 or action.choices is not None:
        return None
    if action.dest in _CONTAINER_DESTS:
        return CONTAINER
    if action.dest in _DIRECTORY_DESTS:
        return DIRECTORY
    if action.dest in _FILE_DESTS:
        return FILE
    metavar = action.metavar if isinstance(action.metavar, str) else ""
    if metavar == "SOURCE" or action.dest == "source":
        return CONTAINER_OR_PATH
    if metavar in ("DIR", "ROOTFS") or metavar.endswith("_DIR"):
        return DIRECTORY
    if metavar in ("FILE", "PATH") or metavar.endswith(("_FILE", "_PATH")):
        return FILE
    return None


def _all_parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    out = [parser]
    for action in parser._actions:  # argparse keeps no public list of sub-commands
        if isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):
                out += _all_parsers(child)
    return out


def annotate(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Mark every argument of ``parser`` and its sub-commands with shtab's ``complete`` per shell."""
    for p in _all_parsers(parser):
        for action in p._actions:
            kind = value_kind(action)
            if kind is not None:
                action.complete = {shell: table[kind] for shell, table in _SHELL_ACTIONS.items()}  # type: ignore[attr-defined]
    return parser


def render(parser: argparse.ArgumentParser, shell: str) -> str:
    """The completion script for ``shell`` ("bash" or "zsh"). Raises ImportError without shtab."""
    import shtab  # dev/build-time only: see the module docstring

    preamble = {"bash": _BASH_PREAMBLE, "zsh": _ZSH_PREAMBLE}[shell]
    header = "# Generated by runtime.cli.completion from the criu-cr parser (with shtab); do not edit.\n"
    script = shtab.complete(annotate(parser), shell=shell, preamble=preamble)
    first, nl, rest = script.partition("\n")
    if first.startswith("#compdef"):  # zsh's compinit reads only the first line
        return first + nl + header + rest
    return header + script
