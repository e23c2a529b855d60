"""The exception hierarchy of criu-cr's CRIU client.

Every error raised by :mod:`criu_rpc` derives from :class:`CriuError`.
Errors keep their facts as attributes (never only inside the message) so
callers can act on them; the message says what went wrong and how to fix it.
"""

from __future__ import annotations

import os

__all__ = [
    "CriuError",
    "CriuNotFoundError",
    "CriuVersionError",
    "CriuRpcError",
    "CriuProtocolError",
    "CriuDiedError",
    "CriuTimeoutError",
    "NotifyAbortedError",
    "InvalidOptionError",
    "IllegalStepError",
    "FeatureUnavailableError",
    "ImageError",
]


class CriuError(Exception):
    """Root of every error raised by criu-cr's CRIU client."""


class InvalidOptionError(CriuError, ValueError):
    """An option given to the client is invalid; ``field`` names it."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"invalid option {field!r}: {problem}")


class CriuNotFoundError(CriuError, FileNotFoundError):
    """No usable CRIU binary was found; ``searched`` lists where we looked."""

    def __init__(self, searched: list[str], hint: str = "") -> None:
        self.searched = list(searched)
        msg = "CRIU not found (looked at: " + ", ".join(self.searched) + ")"
        msg += ". " + (hint or "Run scripts/install-criu, or set CRIU_CR_CRIU to the criu binary.")
        super().__init__(msg)


class CriuVersionError(CriuError):
    """CRIU is older than a feature or this machine needs."""

    def __init__(self, found: tuple[int, ...], needed: tuple[int, ...], why: str, path: str = "") -> None:
        self.found = tuple(found)
        self.needed = tuple(needed)
        self.why = why
        self.path = path
        f = ".".join(map(str, self.found))
        n = ".".join(map(str, self.needed))
        where = f" at {path}" if path else ""
        super().__init__(
            f"CRIU {f}{where} is too old: {why} needs CRIU >= {n}. "
            "Run scripts/install-criu to get a newer one."
        )


class CriuRpcError(CriuError):
    """CRIU answered a request with ``success = false``.

    Attributes: ``request`` (request type name, e.g. ``"DUMP"``), ``cr_errno``
    (CRIU's errno, 0 if none), ``cr_errmsg`` (CRIU's message, may be empty),
    ``log_path`` (the CRIU log of this request, if known) and ``log_errors``
    (the first real error lines of that log).
    """

    def __init__(
        self,
        request: str,
        cr_errno: int = 0,
        cr_errmsg: str = "",
        log_path: str | None = None,
        log_errors: list[str] | None = None,
        hint: str = "",
    ) -> None:
        self.request = request
        self.cr_errno = cr_errno
        self.cr_errmsg = cr_errmsg
        self.log_path = log_path
        self.log_errors = list(log_errors or [])
        self.hint = hint
        parts = [f"CRIU {request} failed"]
        if cr_errmsg:
            parts.append(f": {cr_errmsg}")
        if cr_errno:
            parts.append(f" (errno {cr_errno}: {os.strerror(cr_errno)})")
        parts.append(_log_suffix(self.log_errors, log_path))
        if hint:
            parts.append(f". {hint}")
        super().__init__("".join(parts))


class CriuProtocolError(CriuError):
    """CRIU sent something the protocol does not allow (wrong type, truncated...)."""


class CriuDiedError(CriuError):
    """The CRIU process ended before answering.

    ``returncode`` is its exit status, or the negative signal number when a
    signal killed it (as in :mod:`subprocess`).  ``killed``: pids of the
    half-restored tasks CRIU left, which the client SIGKILLed (RESTORE only;
    see :mod:`criu_rpc.restoring`).
    """

    def __init__(self, request: str, returncode: int | None, log_path: str | None = None,
                 log_errors: list[str] | None = None, killed: tuple[int, ...] = ()) -> None:
        self.request = request
        self.returncode = returncode
        self.log_path = log_path
        self.log_errors = list(log_errors or [])
        self.killed = tuple(killed)
        if returncode is None:
            how = "closed its socket"
        elif returncode < 0:
            how = f"was killed by signal {-returncode}"
        else:
            how = f"exited with status {returncode}"
        msg = f"CRIU died during {request}: it {how} before answering"
        if self.killed:
            msg += f"; the {len(self.killed)} task(s) it had restored were killed ({_pids(self.killed)})"
        super().__init__(msg + _log_suffix(self.log_errors, log_path))


class CriuTimeoutError(CriuError):
    """CRIU did not answer a request within its deadline, and was ended.

    Attributes: ``request`` (e.g. ``"RESTORE"``), ``timeout`` (the deadline
    in seconds), ``criu_pid``, ``criu_killed`` (True for a ``criu swrk``
    child: it was SIGKILLed and reaped; False over a ``criu service``
    connection, which the client can only close), ``killed`` (pids of the
    tasks CRIU had started -- e.g. a half-restored tree -- that were
    SIGKILLed with it), ``log_path`` and ``log_errors`` (the log's first
    real errors, from a bounded read).
    """

    def __init__(self, request: str, timeout: float, *, criu_pid: int | None = None,
                 criu_killed: bool = False, killed: tuple[int, ...] = (), log_path: str | None = None,
                 log_errors: list[str] | None = None) -> None:
        self.request = request
        self.timeout = timeout
        self.criu_pid = criu_pid
        self.criu_killed = criu_killed
        self.killed = tuple(killed)
        self.log_path = log_path
        self.log_errors = list(log_errors or [])
        msg = f"CRIU {request} did not finish within {timeout:g} s: "
        if criu_killed:
            msg += f"CRIU (pid {criu_pid}) was killed"
            if self.killed:
                msg += f", with the {len(self.killed)} process(es) it had started ({_pids(self.killed)})"
        else:
            msg += ("the connection to the criu service was closed; the service's worker "
                    "was not killed and may still be running")
            if self.killed:
                msg += f"; the {len(self.killed)} task(s) it had restored were killed ({_pids(self.killed)})"
        super().__init__(msg + _log_suffix(self.log_errors, log_path))


def _log_suffix(log_errors: list[str], log_path: str | None) -> str:
    """What every CRIU error adds about its log: the first real error, and where the log is."""
    return ((f"; first error in log: {log_errors[0]}" if log_errors else "")
            + (f"; full log: {log_path}" if log_path else ""))


def _pids(pids: tuple[int, ...], shown: int = 8) -> str:
    text = ", ".join(map(str, pids[:shown]))
    return text + (", ..." if len(pids) > shown else "")


class NotifyAbortedError(CriuError):
    """A notify handler raised; CRIU was told to abort.

    ``script`` is the notify name (e.g. ``"pre-dump"``); the handler's
    exception is chained as ``__cause__``.
    """

    def __init__(self, request: str, script: str) -> None:
        self.request = request
        self.script = script
        super().__init__(f"CRIU {request} aborted: the {script!r} notify handler raised")


class IllegalStepError(CriuError):
    """A request that the session's state does not allow (nothing was sent)."""


class FeatureUnavailableError(CriuError):
    """This kernel or CRIU lacks a feature the request needs; ``feature`` names it."""

    def __init__(self, feature: str, message: str) -> None:
        self.feature = feature
        super().__init__(message)


class ImageError(CriuError):
    """A CRIU image file is missing, truncated or not what it should be.

    ``path`` is the file, ``problem`` says what is wrong with it.
    """

    def __init__(self, path: str, problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(f"CRIU image {path}: {problem}")
