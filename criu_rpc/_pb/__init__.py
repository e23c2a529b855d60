"""Protobuf modules generated from proto/ by scripts/gen-proto (never edit).

``rpc_pb2`` holds CRIU's RPC messages (``criu_req``, ``criu_resp``,
``criu_opts``, ...), ``stats_pb2`` the stats image messages.

Each is imported on first use (PEP 562): loading protobuf and registering a
file's descriptors costs ~10 ms, which a command that only names image
files, or only reads the stats, need not pay for the other.
"""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["rpc_pb2", "stats_pb2"]


def __getattr__(name: str) -> ModuleType:
    if name in __all__:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
