"""criu-cr's own log (the ``criu_cr.*`` loggers) on stderr, at the level the CLI was asked for.

The library only logs; this module decides what an operator sees:
WARNING and up by default (``criu-cr: warning: ...``), ERROR and up with
``--quiet``, everything down to DEBUG with ``--debug`` -- what is asked of
CRIU, the fds handed to it, each phase's time -- then with the time since
start and the logger's name. With ``--format json`` each record is one
JSON object per line (``{"log": {...}}``), so stderr stays machine-readable.
The ``criu_cr`` logger's own level is set too: a disabled DEBUG call costs
one level comparison, nothing is formatted.
"""

from __future__ import annotations

import json
import logging
import sys
import time

__all__ = ["OperatorHandler", "configure_logging", "level_for"]

ROOT_LOGGER = "criu_cr"


class OperatorHandler(logging.Handler):
    """Log records as one line each on stderr (looked up at each record: tests replace it)."""

    def __init__(self, level: int = logging.WARNING, *, fmt: str = "text") -> None:
        super().__init__(level)
        self.fmt = fmt
        self.started = time.time()  # the clock of record.created

    def emit(self, record: logging.LogRecord) -> None:
        try:
            level = record.levelname.lower()
            if self.fmt == "json":
                line = json.dumps({"log": {"level": level, "logger": record.name, "message": record.getMessage(),
                                           "elapsed_s": round(record.created - self.started, 6)}})
            elif self.level < logging.WARNING:  # verbose: when and where, for timings and grepping
                line = (f"criu-cr: {level}: [+{record.created - self.started:.3f}s] {record.name}: "
                        f"{record.getMessage()}")
            else:
                line = f"criu-cr: {level}: {record.getMessage()}"
            print(line, file=sys.stderr, flush=True)
        except Exception:  # noqa: BLE001 - logging's own convention
            self.handleError(record)


def level_for(log_level: str | None, quiet: bool) -> int:
    """The level shown: ``--log-level``/``--debug`` if given, else ERROR when quiet, else WARNING."""
    if log_level:
        return logging.getLevelName(log_level.upper())
    return logging.ERROR if quiet else logging.WARNING


def configure_logging(level: int = logging.WARNING, fmt: str = "text") -> OperatorHandler:
    """Show the ``criu_cr`` loggers on stderr from ``level`` on, in ``fmt``; one handler per process
    (a second call reconfigures it). Returns the handler."""
    logger = logging.getLogger(ROOT_LOGGER)
    handler = next((h for h in logger.handlers if isinstance(h, OperatorHandler)), None)
    if handler is None:
        handler = OperatorHandler(level, fmt=fmt)
        logger.addHandler(handler)
    handler.setLevel(level)
    handler.fmt = fmt
    logger.setLevel(level)
    return handler
