"""Containers without runc: the :class:`Container` facade, state, host side, init, monitor, exec, adoption.

``from runtime.container import Container`` is the entry point. The facade
is loaded on first use (PEP 562), so that checkpoint/restore (runtime.cr),
which use this package's state and host modules, never load the facade
that uses them.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Container", "ContainerStartError"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from runtime.container import facade

        return getattr(facade, name)
    raise AttributeError(f"module 'runtime.container' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
