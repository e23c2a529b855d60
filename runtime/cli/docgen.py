"""Write the man pages and the shell completions generated from the parser (``scripts/install`` runs it).

    python -m runtime.cli.docgen [--prefix /usr/local] [--no-completions]

installs ``PREFIX/share/man/man1/criu-cr*.1`` (pages of commands that no
longer exist are removed), ``PREFIX/share/bash-completion/completions/criu-cr``
(bash-completion loads it on first TAB; or ``source`` it) and
``PREFIX/share/zsh/site-functions/_criu-cr`` (in zsh's default fpath).
Completions need shtab, a dev/build dependency (``pip install -e '.[dev]'``);
without it only the pages are written, and it says so.
"""

from __future__ import annotations

import argparse
import glob
import os
import sys

__all__ = ["install", "main", "MAN_SUBDIR", "BASH_PATH", "ZSH_PATH"]

MAN_SUBDIR = os.path.join("share", "man", "man1")
BASH_PATH = os.path.join("share", "bash-completion", "completions", "criu-cr")
ZSH_PATH = os.path.join("share", "zsh", "site-functions", "_criu-cr")


def _write(path: str, text: str) -> None:
    """Write ``text`` to ``path`` (0644) through a temporary file, so a reader never sees half a page."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def install(prefix: str, *, completions: bool = True) -> list[str]:
    """Generate and write everything under ``prefix``; return the paths written.

    Raises ImportError when ``completions`` is asked for and shtab is missing
    (nothing is written then), OSError when a path cannot be written.
    """
    from runtime._version import __version__
    from runtime.cli import build_parser
    from runtime.cli.manpage import render_pages

    pages = render_pages(build_parser(), version=__version__)
    scripts: dict[str, str] = {}
    if completions:
        from runtime.cli.completion import render

        scripts = {BASH_PATH: render(build_parser(), "bash"), ZSH_PATH: render(build_parser(), "zsh")}
    man_dir = os.path.join(prefix, MAN_SUBDIR)
    written = []
    for name, text in pages.items():
        _write(os.path.join(man_dir, name), text)
        written.append(os.path.join(man_dir, name))
    for stale in glob.glob(os.path.join(man_dir, "criu-cr*.1")):
        if os.path.basename(stale) not in pages:
            os.unlink(stale)  # a command that is gone
    for rel, text in scripts.items():
        _write(os.path.join(prefix, rel), text)
        written.append(os.path.join(prefix, rel))
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m runtime.cli.docgen",
                                     description="Install criu-cr's man pages and bash/zsh completions.")
    parser.add_argument("--prefix", default="/usr/local", help="installation prefix (default /usr/local)")
    parser.add_argument("--no-completions", action="store_true", help="man pages only (no shtab needed)")
    args = parser.parse_args(argv)
    completions = not args.no_completions
    if completions:
        try:
            import shtab  # noqa: F401 - only asking whether it is there
        except ImportError:
            print("docgen: shtab is not installed (pip install shtab, or '.[dev]'): man pages only",
                  file=sys.stderr)
            completions = False
    written = install(args.prefix, completions=completions)
    print(f"docgen: {len(written)} files under {args.prefix}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
