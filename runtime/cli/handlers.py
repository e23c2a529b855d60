"""A command's handler named by module: imported only when that command runs.

A parser built for ``criu-cr --help`` must not import what its command
needs (CRIU's client and protobuf, the archive writers...: tens of
milliseconds). A parser therefore names its handler,
``p.set_defaults(func=Handler("checkpoint_cmd:run"))`` (modules relative to
``runtime.cli``), and the dispatcher imports it after parsing. ``when``
names another handler for a given option, so that a path only that option
takes is loaded only then (``restore --import`` reads archives; a plain
restore does not). Loading goes through :func:`runtime.lazy.load`.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from runtime import lazy

__all__ = ["Handler", "resolve"]

_PACKAGE = "runtime.cli"


class Handler:
    """``"module:function"`` under runtime.cli; ``when={"dest": "module:function"}``: another one
    when option ``dest`` is given. Calling it resolves and calls the handler."""

    __slots__ = ("ref", "when")

    def __init__(self, ref: str, *, when: dict[str, str] | None = None) -> None:
        for r in (ref, *(when or {}).values()):
            if r.count(":") != 1:
                raise ValueError(f"a handler is 'module:function', not {r!r}")
        self.ref = ref
        self.when = dict(when or {})

    def pick(self, args: argparse.Namespace) -> str:
        """The full reference of the handler for ``args`` (the first ``when`` option given wins)."""
        ref = next((r for dest, r in self.when.items() if getattr(args, dest, None)), self.ref)
        return f"{_PACKAGE}.{ref}"

    def __call__(self, args: argparse.Namespace) -> Any:
        return resolve(self, args)(args)

    def __repr__(self) -> str:
        return f"Handler({self.ref!r}, when={self.when!r})"


def resolve(func: Handler | Callable[[argparse.Namespace], Any], args: argparse.Namespace
            ) -> Callable[[argparse.Namespace], Any]:
    """The callable that handles ``args``: a :class:`Handler` imported now, a plain function as is."""
    if isinstance(func, Handler):
        return lazy.load(func.pick(args))
    return func
