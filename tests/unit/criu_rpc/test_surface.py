"""criu_rpc's package surface: a short explicit list, every name real."""

from __future__ import annotations

import criu_rpc
from criu_rpc.errors import CriuError


def test_star_import_gives_exactly_the_listed_names() -> None:
    namespace: dict[str, object] = {}
    exec("from criu_rpc import *", namespace)  # noqa: S102 -- what a user's star import sees
    assert set(namespace) - {"__builtins__"} == set(criu_rpc.__all__)
    assert len(criu_rpc.__all__) == len(set(criu_rpc.__all__)) <= 32


def test_every_listed_name_is_defined_in_the_package() -> None:
    for name in criu_rpc.__all__:
        obj = getattr(criu_rpc, name)
        assert getattr(obj, "__module__", "").startswith("criu_rpc."), name


def test_listed_errors_are_criu_errors() -> None:
    errors = [getattr(criu_rpc, n) for n in criu_rpc.__all__ if n.endswith("Error")]
    assert errors and all(issubclass(e, CriuError) for e in errors)


def test_internals_stay_in_their_modules() -> None:
    from criu_rpc.session import Session
    from criu_rpc.transport import SwrkProcess

    assert Session and SwrkProcess
    for name in ("Session", "SwrkProcess", "HARMLESS_ERRORS", "DEADLINE_BASE", "kill_criu"):
        assert name not in criu_rpc.__all__
