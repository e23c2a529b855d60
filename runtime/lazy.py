"""Code named by module and loaded when first used: the one way criu-cr defers an import.

Every ``criu-cr`` command is a new process, and each module it imports
costs start-up time (docs/performance.md lists what each command loads).
Code that only some calls reach -- the archive and OCI-image writers behind
``--export`` / ``--create-image``, the handler of one CLI command -- is
named ``"package.module:attribute"`` in a table where it is chosen, and
:func:`load` imports it when that path is taken. (Package ``__init__``
files re-export lazily with a module ``__getattr__``, PEP 562, for the same
reason.)
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["load"]


def load(ref: str) -> Any:
    """``"package.module:attribute"`` -> that attribute (``"package.module"`` -> the module).

    Raises ImportError (the module), AttributeError (the attribute).
    """
    module, _, attr = ref.partition(":")
    loaded = importlib.import_module(module)
    return getattr(loaded, attr) if attr else loaded
