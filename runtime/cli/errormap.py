"""Which exit status and stable error code each error gets: one table for every command.

:func:`classify` walks the error's class hierarchy (most specific first)
and takes the first class the table names, so a new subclass inherits its
parent's status until it is given its own row. Commands never choose exit
statuses for errors themselves; they raise typed errors and ``main()``
asks this module. The string codes are part of the JSON error object
(docs/cli-json.md) and never change meaning.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass, field
from typing import Any

from runtime.cli.exitcodes import Exit

__all__ = ["ErrorInfo", "UsageError", "NotRootError", "classify", "error_object", "error_codes"]


class UsageError(Exception):
    """Arguments the command cannot take (exit status 2): argparse's own errors, or options that
    argparse accepts one by one but not together. ``usage``: the command's usage line, if known."""

    def __init__(self, message: str, usage: str = "") -> None:
        self.usage = usage
        super().__init__(message)


class NotRootError(Exception):
    """criu-cr runs without the privileges it needs (exit status 6)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ErrorInfo:
    """What the CLI reports for one error: exit status, stable code, message, hint and facts."""

    exit: Exit
    code: str
    message: str
    hint: str = ""
    details: dict[str, Any] = field(default_factory=dict)


def _table() -> dict[type, tuple[Exit, str]]:
    # Imported here: these modules pull in much of the runtime, which `criu-cr --help` need not load.
    from criu_rpc import errors as rpc
    from runtime import errors as rt
    from runtime.container.create import ContainerStartError
    from runtime.cr.meta import ImageDirError, ImageOwnerError
    from runtime.cr.migrate import MigrationError
    from runtime.cr.migrate_proto import ProtocolError

    return {
        UsageError: (Exit.USAGE, "usage"),
        NotRootError: (Exit.ENVIRONMENT, "not_root"),
        # the container runtime
        rt.ContainerNotFoundError: (Exit.NOT_FOUND, "container_not_found"),
        rt.CheckpointNotFoundError: (Exit.NOT_FOUND, "checkpoint_not_found"),
        rt.ContainerExistsError: (Exit.WRONG_STATE, "container_exists"),
        rt.ContainerBusyError: (Exit.WRONG_STATE, "container_busy"),
        rt.ContainerStateError: (Exit.WRONG_STATE, "wrong_state"),
        rt.ImageIntegrityError: (Exit.FAILED, "checkpoint_damaged"),
        rt.CheckpointError: (Exit.FAILED, "checkpoint_refused"),  # CRIU_FAILED when CRIU failed: _criu_ran
        rt.RestoreError: (Exit.FAILED, "restore_refused"),
        rt.SpecError: (Exit.FAILED, "invalid_config"),
        rt.ArchiveError: (Exit.FAILED, "invalid_archive"),
        rt.CgroupError: (Exit.FAILED, "cgroup_failed"),
        rt.NetnsError: (Exit.FAILED, "network_failed"),
        ImageOwnerError: (Exit.WRONG_STATE, "image_path_taken"),
        ImageDirError: (Exit.FAILED, "image_path_unusable"),
        ContainerStartError: (Exit.FAILED, "start_failed"),
        MigrationError: (Exit.FAILED, "migration_failed"),
        ProtocolError: (Exit.FAILED, "migration_protocol"),
        rt.ContainerError: (Exit.FAILED, "runtime_error"),
        # CRIU's client
        rpc.CriuNotFoundError: (Exit.ENVIRONMENT, "criu_not_found"),
        rpc.CriuVersionError: (Exit.ENVIRONMENT, "criu_too_old"),
        rpc.FeatureUnavailableError: (Exit.ENVIRONMENT, "feature_unavailable"),
        rpc.CriuRpcError: (Exit.CRIU_FAILED, "criu_failed"),
        rpc.CriuDiedError: (Exit.CRIU_FAILED, "criu_died"),
        rpc.CriuTimeoutError: (Exit.CRIU_FAILED, "criu_timeout"),
        rpc.NotifyAbortedError: (Exit.CRIU_FAILED, "criu_aborted"),
        rpc.CriuProtocolError: (Exit.CRIU_FAILED, "criu_protocol"),
        rpc.ImageError: (Exit.FAILED, "image_invalid"),
        rpc.InvalidOptionError: (Exit.USAGE, "invalid_option"),
        rpc.CriuError: (Exit.FAILED, "criu_error"),
        # the rest
        ValueError: (Exit.USAGE, "invalid_argument"),
        OSError: (Exit.FAILED, "os_error"),
    }


#: Exit statuses of OSErrors by errno (a missing file is "not found", a refused one an unfit environment).
_OS_ERRNOS: dict[int, tuple[Exit, str]] = {
    errno.ENOENT: (Exit.NOT_FOUND, "file_not_found"),
    errno.EPERM: (Exit.ENVIRONMENT, "permission_denied"),
    errno.EACCES: (Exit.ENVIRONMENT, "permission_denied"),
    errno.ENOSPC: (Exit.ENVIRONMENT, "no_space"),
}

#: An operation CRIU refused or failed: CRIU_FAILED, whatever its runtime class.
_CRIU_FAILED = (Exit.CRIU_FAILED, "criu_failed")

#: What to do, for errors that do not say it themselves.
_HINTS = {
    "container_not_found": "`criu-cr list` shows the containers of this state root (--root, $CRIU_CR_ROOT)",
    "container_busy": "retry once the other operation on it is over",
    "not_root": "run it with sudo",
    "criu_not_found": "install CRIU >= 4.2 (scripts/install-criu) or give --criu PATH",
    "criu_failed": "the log named in the message says why; --keep keeps it after a success too",
}

#: Facts copied from an error's attributes into the JSON error object (when set).
_DETAILS = ("container_id", "status", "action", "request", "cr_errno", "log_path", "log_errors",
            "path", "field", "feature", "file", "archive", "member", "returncode", "searched")


def _criu_ran(exc: BaseException) -> bool:
    """Whether a checkpoint/restore failure is CRIU's own (it names CRIU's log, or chains CRIU's error)."""
    from criu_rpc import errors as rpc

    cause = exc.__cause__
    return bool(getattr(exc, "log_errors", None) or getattr(exc, "log_path", None)) or (
        isinstance(cause, rpc.CriuError) and not isinstance(cause, (rpc.InvalidOptionError, rpc.ImageError)))


def _lookup(exc: BaseException) -> tuple[Exit, str] | None:
    from runtime.errors import CheckpointError, RestoreError

    table = _table()
    for cls in type(exc).__mro__:
        if cls in table:
            found = table[cls]
            if cls in (CheckpointError, RestoreError) and _criu_ran(exc):
                return _CRIU_FAILED
            if cls is OSError and isinstance(exc, OSError) and exc.errno in _OS_ERRNOS:
                return _OS_ERRNOS[exc.errno]
            return found
    return None


def classify(exc: BaseException) -> ErrorInfo | None:
    """The CLI's report of ``exc``, or None for an error the CLI does not expect (a bug: let it show)."""
    found = _lookup(exc)
    if found is None:
        return None
    status, code = found
    details = {}
    for name in _DETAILS:
        value = getattr(exc, name, None)
        if value not in (None, "", [], ()):
            details[name] = _plain(value)
    if isinstance(exc, OSError) and exc.filename and "path" not in details:
        details["path"] = str(exc.filename)
    # ContainerStateError's ``detail`` is what to do (state_hint); ContainerBusyError's is not
    hint = getattr(exc, "hint", "") or (getattr(exc, "detail", "") if code == "wrong_state" else "")
    return ErrorInfo(exit=status, code=code, message=str(exc) or type(exc).__name__,
                     hint=str(hint or _HINTS.get(code, "")), details=details)


def _plain(value: Any) -> Any:
    """A fact as JSON has it: numbers and strings as they are, sequences as lists of strings."""
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    return value if isinstance(value, (bool, int, float, str)) else str(value)


def error_object(info: ErrorInfo) -> dict[str, Any]:
    """The JSON error object written on stderr in ``--format json`` (docs/schemas/error.json)."""
    return {"error": {"code": info.code, "exit": int(info.exit), "message": info.message,
                      "hint": info.hint, **info.details}}


def error_codes() -> dict[str, Exit]:
    """Every stable code and its exit status (for the docs and their test)."""
    out = {code: status for status, code in _table().values()}
    out.update({code: status for status, code in _OS_ERRNOS.values()})
    out.update({"criu_failed": Exit.CRIU_FAILED, "internal": Exit.FAILED, "interrupted": Exit.INTERRUPTED})
    return out

