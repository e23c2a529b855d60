"""The exception hierarchy of criu-cr's container runtime.

Every error raised by :mod:`runtime` derives from :class:`ContainerError`.
Errors keep their facts as attributes (never only inside the message); the
message says what went wrong and, where there is one, how to fix it.
Underlying ``OSError``\\ s are chained with ``raise ... from``.
"""

from __future__ import annotations

__all__ = [
    "ContainerError",
    "CheckpointError",
    "RestoreError",
    "CheckpointNotFoundError",
    "SpecError",
    "CgroupError",
    "NetnsError",
    "ContainerNotFoundError",
    "ContainerExistsError",
    "ContainerBusyError",
    "ContainerStateError",
    "criu_message",
    "ImageIntegrityError",
    "ArchiveError",
    "state_hint",
    "InspectError",
]


class ContainerError(Exception):
    """Root of every error raised by criu-cr's container runtime."""


class SpecError(ContainerError, ValueError):
    """An OCI ``config.json`` is missing, malformed or asks for something unsupported.

    ``field`` is the JSON path of the offending field (``"linux.namespaces[2].type"``),
    ``problem`` what is wrong with it and ``hint`` how to fix it (may be empty).
    """

    def __init__(self, field: str, problem: str, hint: str = "") -> None:
        self.field = field
        self.problem = problem
        self.hint = hint
        msg = f"config.json: {field}: {problem}"
        if hint:
            msg += f" ({hint})"
        super().__init__(msg)


class CgroupError(ContainerError):
    """A cgroup operation failed; ``path`` is the cgroup file or directory involved."""

    def __init__(self, path: str, problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(f"cgroup {path}: {problem}")


class NetnsError(ContainerError):
    """A network namespace or link operation failed; ``name`` is the netns or link."""

    def __init__(self, name: str, problem: str) -> None:
        self.name = name
        self.problem = problem
        super().__init__(f"network {name}: {problem}")


class ContainerNotFoundError(ContainerError, LookupError):
    """No container with id ``container_id`` exists (under ``root``, if known)."""

    def __init__(self, container_id: str, root: str = "") -> None:
        self.container_id = container_id
        self.root = root
        where = f" under {root}" if root else ""
        super().__init__(f"container {container_id!r} does not exist{where}")


class ContainerExistsError(ContainerError):
    """A container with id ``container_id`` already exists."""

    def __init__(self, container_id: str, root: str = "") -> None:
        self.container_id = container_id
        self.root = root
        where = f" under {root}" if root else ""
        super().__init__(f"container {container_id!r} already exists{where}; delete it or choose another id")


class ContainerBusyError(ContainerError):
    """Another operation holds the lock of container ``container_id``."""

    def __init__(self, container_id: str, detail: str = "") -> None:
        self.container_id = container_id
        self.detail = detail
        what = detail or "another operation on it is in progress"
        super().__init__(f"container {container_id!r} is busy: {what}; retry later")


class ContainerStateError(ContainerError):
    """The container's status does not allow the operation.

    ``status`` is the status found (``"stopped"``...), ``action`` what was asked;
    ``detail`` adds a reason (e.g. a reused pid).
    """

    def __init__(self, container_id: str, status: str, action: str, detail: str = "") -> None:
        self.container_id = container_id
        self.status = status
        self.action = action
        self.detail = detail or state_hint(status, action)
        detail = self.detail
        msg = f"cannot {action} container {container_id!r}: it is {status}"
        if detail:
            msg += f" ({detail})"
        super().__init__(msg)


def state_hint(status: str, action: str) -> str:
    """What to do when ``action`` is refused in ``status`` (one table: every command says the same). Pure."""
    if (status, action) in (("paused", "pause"), ("running", "start")):
        return "nothing to do"
    if status == "paused":
        return "resume it first"
    if status == "checkpointed":
        return "restore it first, then checkpoint it again" if action == "checkpoint" else "restore it first"
    if status == "created":
        return "start it first"
    if status == "running" and action == "resume":
        return "it is not paused"
    if status == "stopped":
        return "its process has exited: delete it, or restore a checkpoint of it into a new container"
    if status == "creating":
        return "it is being created: retry later"
    return ""


class _CriuFailure(ContainerError):
    """A container operation that CRIU (or its preparation) refused.

    ``log_path`` is CRIU's log (kept), ``log_errors`` its first real error
    lines, ``hint`` how to fix it.
    """

    action = "operate on"

    def __init__(self, container_id: str, problem: str, *, log_path: str | None = None,
                 log_errors: list[str] | None = None, hint: str = "") -> None:
        self.container_id = container_id
        self.problem = problem
        self.log_path = log_path
        self.log_errors = list(log_errors or [])
        self.hint = hint
        msg = f"cannot {self.action} container {container_id!r}: {problem}"
        if self.log_errors and self.log_errors[0] not in problem:
            msg += f"; CRIU: {self.log_errors[0]}"
        if log_path and log_path not in problem:
            msg += f"; log: {log_path}"
        if hint:
            msg += f". {hint}"
        super().__init__(msg)


class CheckpointError(_CriuFailure):
    """A checkpoint failed; the container keeps running."""

    action = "checkpoint"


class RestoreError(_CriuFailure):
    """A restore failed or was refused; the checkpoint stays for another try."""

    action = "restore"


class CheckpointNotFoundError(RestoreError):
    """There is no checkpoint to restore where one was looked for; ``path`` is where."""

    def __init__(self, container_id: str, path: str, problem: str, hint: str = "") -> None:
        self.path = path
        super().__init__(container_id, problem, hint=hint)


def criu_message(exc: BaseException) -> str:
    """A CRIU error as one line, with the cause a notify hook raised (CRIU's abort alone says little)."""
    msg = str(exc)
    cause = exc.__cause__
    if cause is not None and type(exc).__name__ == "NotifyAbortedError":
        msg += f" ({type(cause).__name__}: {cause})"
    return msg


class ImageIntegrityError(RestoreError):
    """A checkpoint does not match its manifest (``criu-cr.manifest``); nothing restored from it ran.

    Raised before CRIU runs, or -- a pages image whose hash differs, checked
    while CRIU restores -- once CRIU was stopped before the restored tree ran.

    ``image_dir`` is the checkpoint, ``file`` the first bad file's name and
    ``reason`` what is wrong with it ("is missing", "has 4096 bytes where...").
    ``container_id`` may be empty (a check outside a restore).
    """

    def __init__(self, image_dir: str, file: str, reason: str, *, container_id: str = "") -> None:
        self.image_dir = image_dir
        self.file = file
        self.reason = reason
        problem = f"the checkpoint at {image_dir} is damaged: {file} {reason}"
        hint = ("Put the file back from a copy, or take a new checkpoint; restore --no-verify "
                "lets CRIU try these images anyway")
        super().__init__(container_id, problem, hint=hint)
        if not container_id:
            self.args = (f"{problem}. {hint}",)


class ArchiveError(ContainerError, ValueError):
    """A checkpoint archive (``--export``/``--import``) that cannot be written or is refused.

    ``archive`` is the archive's path, ``member`` the member involved
    ("checkpoint/pages-1.img", or "" for the archive as a whole) and
    ``problem`` what is wrong with it. An import that fails leaves nothing
    behind; an export that fails leaves no file.
    """

    def __init__(self, archive: str, member: str, problem: str, hint: str = "") -> None:
        self.archive = archive
        self.member = member
        self.problem = problem
        self.hint = hint
        where = f"{archive}: {member}" if member else archive
        msg = f"checkpoint archive {where}: {problem}"
        if hint:
            msg += f" ({hint})"
        super().__init__(msg)


class InspectError(ContainerError, ValueError):
    """A checkpoint that ``criu-cr inspect`` cannot read: ``source`` is what the user named,
    ``problem`` what is wrong, ``hint`` what to do (may be empty)."""

    def __init__(self, source: str, problem: str, hint: str = "") -> None:
        self.source = source
        self.problem = problem
        self.hint = hint
        super().__init__(f"{source}: {problem}" + (f" ({hint})" if hint else ""))
