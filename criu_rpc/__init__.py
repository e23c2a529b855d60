"""criu_rpc: a typed client for CRIU's RPC protocol.

The names below are what a user of the client needs: the client, its
options, notify hooks, results, the main errors, and the helpers to find
CRIU and size a deadline.  Everything else (the pure session core, the
transports, image constants, fault injection, ...) is imported from its
own module, e.g. ``from criu_rpc.session import Session``.
"""

from .client import CriuClient
from .deadline import deadline_for
from .errors import (CriuDiedError, CriuError, CriuNotFoundError, CriuRpcError, CriuTimeoutError, CriuVersionError,
                     FeatureUnavailableError, ImageError, InvalidOptionError, NotifyAbortedError)
from .images import has_inventory, read_stats
from .locate import CriuVersion, binary_version, locate
from .notify import NotifyContext, NotifyHandler
from .option_types import CgroupRoot, ExternalMount, InheritFd, JoinNamespace, PageServer
from .options import CriuOptions
from .results import DumpResult, DumpSequenceResult, PageServerResult, PreDumpResult, RestoreResult
from .session import Features

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
