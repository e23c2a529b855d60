"""What the client tells the debug log: each request as one line, and phase timings.

The client only logs, on the ``criu_cr.rpc`` logger at DEBUG; whoever
runs it (the ``criu-cr`` CLI with ``--debug``) decides whether that is
shown. Callers guard the work with ``log.isEnabledFor(DEBUG)``, so a
disabled log costs one comparison per request and formats nothing.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from typing import Any

__all__ = ["LOGGER", "log", "describe_message", "timed"]

LOGGER = "criu_cr.rpc"
log = logging.getLogger(LOGGER)

#: Fields never written to a log whatever the level: where TLS keys live is no one's business there.
_HIDDEN = frozenset({"tls_key", "tls_cacrl", "tls_cacert", "tls_cert"})


def describe_message(msg: Any) -> str:
    """A protobuf message's set fields as ``name=value`` pairs (sub-messages in braces). Pure."""
    if msg is None:
        return "-"
    parts = []
    for fd, value in msg.ListFields():
        if fd.name in _HIDDEN:
            parts.append(f"{fd.name}=<hidden>")
        elif fd.message_type is not None and _repeated(fd):
            parts.append(f"{fd.name}=[{', '.join('{' + describe_message(v) + '}' for v in value)}]")
        elif fd.message_type is not None:
            parts.append(f"{fd.name}={{{describe_message(value)}}}")
        elif _repeated(fd):
            parts.append(f"{fd.name}={list(value)!r}")
        else:
            parts.append(f"{fd.name}={value!r}")
    return " ".join(parts)


def _repeated(fd: Any) -> bool:
    # protobuf >= 5: is_repeated; older: label == LABEL_REPEATED (3)
    flag = getattr(fd, "is_repeated", None)
    return bool(flag) if flag is not None else fd.label == 3


@contextlib.contextmanager
def timed(logger: logging.Logger, what: str, *args: object) -> Iterator[None]:
    """Log at DEBUG how long the block took: ``<what % args> took 0.123 s`` (also when it raised)."""
    if not logger.isEnabledFor(logging.DEBUG):
        yield
        return
    started = time.monotonic()
    ok = False
    try:
        yield
        ok = True
    finally:
        logger.debug(what + " %s %.3f s", *args, "took" if ok else "failed after", time.monotonic() - started)
