"""criu_rpc: a typed client for CRIU's RPC protocol.

The names below are what a user of the client needs: the client, its
options, notify hooks, results, the main errors, and the helpers to find
CRIU and size a deadline.  Everything else (the pure session core, the
transports, image constants, fault injection, ...) is imported from its
own module, e.g. ``from criu_rpc.session import Session``.

The names are imported on first use (PEP 562): ``import criu_rpc.images``
(the image-file names, say) does not load the client, its options and
protobuf (~25 ms).
"""

from __future__ import annotations

import importlib
from typing import Any

# Imported now, not on first use: the function ``locate`` shares its name with
# its module, which would otherwise shadow it once ``criu_rpc.locate`` is loaded.
from .locate import CriuVersion, binary_version, locate

# public name -> the module that defines it
_EXPORTS = {
    "CriuClient": "client",
    "deadline_for": "deadline",
    **dict.fromkeys(("CriuDiedError", "CriuError", "CriuNotFoundError", "CriuRpcError", "CriuTimeoutError",
                     "CriuVersionError", "FeatureUnavailableError", "ImageError", "InvalidOptionError",
                     "NotifyAbortedError"), "errors"),
    "has_inventory": "images",
    "read_stats": "images",
    "NotifyContext": "notify",
    "NotifyHandler": "notify",
    **dict.fromkeys(("CgroupRoot", "ExternalMount", "InheritFd", "JoinNamespace", "PageServer"), "option_types"),
    "CriuOptions": "options",
    **dict.fromkeys(("DumpResult", "DumpSequenceResult", "PageServerResult", "PreDumpResult", "RestoreResult"),
                    "results"),
    "Features": "session",
}

__all__ = [
    # the client and what it is given
    "CriuClient", "CriuOptions", "InheritFd", "ExternalMount", "CgroupRoot", "JoinNamespace",
    "PageServer", "NotifyHandler", "NotifyContext",
    # what it returns
    "DumpResult", "PreDumpResult", "DumpSequenceResult", "RestoreResult", "PageServerResult",
    "Features", "CriuVersion",
    # what it raises (all CriuError; the rarer ones live in criu_rpc.errors)
    "CriuError", "CriuNotFoundError", "CriuVersionError", "CriuRpcError", "CriuDiedError",
    "CriuTimeoutError", "NotifyAbortedError", "InvalidOptionError", "FeatureUnavailableError",
    "ImageError",
    # finding CRIU, sizing deadlines, reading images
    "locate", "binary_version", "deadline_for", "has_inventory", "read_stats",
]


def __getattr__(name: str) -> Any:
    try:
        module = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module 'criu_rpc' has no attribute {name!r}") from None
    return getattr(importlib.import_module(f".{module}", __name__), name)


def __dir__() -> list[str]:
    return list(__all__)
