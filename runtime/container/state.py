"""Container state on disk: ``<root>/<id>/state.json`` and the per-container lock.

The state root is an explicit path, else ``$CRIU_CR_ROOT``, else
``/run/criu-cr``. Writes are atomic (temporary file + rename in the same
directory). The lock is an ``flock`` on the container directory itself, so
deleting the container leaves no lock file behind.
"""

from __future__ import annotations

import dataclasses
import enum
import errno
import fcntl
import json
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from typing import Any, Iterator

from runtime.errors import ContainerBusyError, ContainerExistsError, ContainerNotFoundError, ContainerStateError
from runtime.linux.fsmode import makedirs_private, open_private
from runtime.linux.procfs import mounts_under, process_alive

__all__ = [
    "DEFAULT_ROOT", "ROOT_ENV", "Status", "Action", "STATUSES", "next_status", "allowed", "ContainerState",
    "StateStore", "ContainerLock", "state_root", "validate_id", "live", "LIVE_STATUSES", "now_rfc3339", "mark_stopped",
]

DEFAULT_ROOT = "/run/criu-cr"
ROOT_ENV = "CRIU_CR_ROOT"
STATE_FILE = "state.json"
ROOT_MODE = 0o711  # others may pass through (to a container's files they are given a path to), not list
_MARK_POLL = 0.02  # seconds between a monitor's tries for a busy lock


_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


class Status(enum.StrEnum):
    """A container's status; the values are what state.json and ``state`` show."""

    CREATING = "creating"  # only while `create` holds the lock
    CREATED = "created"
    RUNNING = "running"
    PAUSED = "paused"
    STOPPED = "stopped"
    CHECKPOINTED = "checkpointed"


STATUSES = tuple(Status)


class Action(enum.Enum):
    """What is done to a container; ``verb`` is how refusals name it."""

    CREATE = "create"
    START = "start"
    PAUSE = "pause"
    RESUME = "resume"
    KILL = "kill"
    EXEC = "exec in"
    DELETE = "delete"
    FORCE_DELETE = "delete --force"
    CHECKPOINT = "checkpoint"
    COPY = "checkpoint --leave-running"  # also a failed checkpoint whose container runs on
    RESTORE = "restore"
    RESTORE_FAILED = "keep the checkpoint"  # a failed or interrupted restore
    EXIT = "exit"  # init exited (the monitor saw it, or its pid is gone)

    @property
    def verb(self) -> str:
        return _VERBS.get(self, self.value)


_VERBS = {Action.FORCE_DELETE: "delete", Action.COPY: "checkpoint", Action.RESTORE_FAILED: "restore",
          Action.EXIT: "stop"}

_LIVE = (Status.CREATED, Status.RUNNING, Status.PAUSED)
_DEAD = (Status.STOPPED, Status.CHECKPOINTED)

# The only place that says which action is legal in which status, and what the status becomes.
_STEPS: dict[tuple[Status, Action], Status] = {
    (Status.CREATING, Action.CREATE): Status.CREATED,
    (Status.CREATED, Action.START): Status.RUNNING,
    (Status.RUNNING, Action.PAUSE): Status.PAUSED,
    (Status.PAUSED, Action.RESUME): Status.RUNNING,
    (Status.RUNNING, Action.EXEC): Status.RUNNING,
    (Status.RUNNING, Action.CHECKPOINT): Status.CHECKPOINTED,
    (Status.RUNNING, Action.COPY): Status.RUNNING,
    **{(s, Action.KILL): s for s in _LIVE},  # the monitor records the exit (Action.EXIT)
    **{(s, Action.EXIT): Status.STOPPED for s in (Status.CREATING, *_LIVE)},
    **{(s, Action.RESTORE): Status.RUNNING for s in _DEAD},
    **{(s, Action.RESTORE_FAILED): Status.CHECKPOINTED for s in _DEAD},
    **{(s, Action.DELETE): Status.STOPPED for s in (Status.CREATING, Status.CREATED, *_DEAD)},
    **{(s, Action.FORCE_DELETE): Status.STOPPED for s in Status},
}


def next_status(status: Status | str, action: Action) -> Status | None:
    """What ``status`` becomes after ``action``; ``None`` when the action is not allowed there. Pure."""
    return _STEPS.get((Status(status), action))


def allowed(status: Status | str, action: Action) -> bool:
    """Whether ``action`` is legal in ``status``. Pure."""
    return next_status(status, action) is not None



def state_root(explicit: str | os.PathLike[str] | None = None) -> str:
    """The state root: ``explicit``, else ``$CRIU_CR_ROOT``, else ``/run/criu-cr``."""
    if explicit:
        return os.path.abspath(os.fspath(explicit))
    return os.path.abspath(os.environ.get(ROOT_ENV) or DEFAULT_ROOT)


def validate_id(container_id: str) -> str:
    """Return ``container_id`` if usable as a directory name; raise ``ValueError`` otherwise."""
    if not isinstance(container_id, str) or not _ID_RE.match(container_id):
        raise ValueError(f"invalid container id {container_id!r}: use letters, digits, '_', '.', '-' "
                         "(starting with a letter or digit, at most 128 characters)")
    return container_id


@dataclass(kw_only=True)
class ContainerState:
    """What criu-cr records about one container (``state.json``)."""

    id: str
    status: Status  # a plain string is converted (state.json holds the value)
    bundle: str
    rootfs: str = ""  # host mount point of the container's root (overlay), CRIU's restore root
    created: str = ""  # RFC 3339, UTC
    init_pid: int = 0
    init_start_time: int = 0
    monitor_pid: int = 0
    namespaces: dict[str, str] = field(default_factory=dict)  # OCI type -> path (joined or /proc/PID/ns/X)
    joined_namespaces: dict[str, str] = field(default_factory=dict)  # OCI type -> path given by the spec
    cgroups: dict[str, Any] = field(default_factory=dict)  # Cgroups.to_dict()
    stdio: dict[str, str] = field(default_factory=dict)  # stdin/stdout/stderr -> "pipe:[inode]" or path
    exit_status: int | None = None
    adopted_from: str | None = None
    annotations: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)  # for later issues (checkpoint info...)

    def __post_init__(self) -> None:
        try:
            self.status = Status(self.status)
        except ValueError:
            raise ValueError(f"unknown container status {self.status!r}") from None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ContainerState":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def replace(self, **changes: Any) -> "ContainerState":
        return dataclasses.replace(self, **changes)

    def check(self, action: Action, detail: str = "") -> Status:
        """The status ``action`` leads to from this one. Raises ContainerStateError (naming the
        status and the action) when it is not allowed; nothing changes then."""
        after = next_status(self.status, action)
        if after is None:
            raise ContainerStateError(self.id, self.status, action.verb, detail)
        return after

    def advance(self, action: Action, detail: str = "", **changes: Any) -> "ContainerState":
        """This state after ``action`` (with ``changes``). Raises ContainerStateError as :meth:`check`."""
        return self.replace(status=self.check(action, detail), **changes)


class ContainerLock:
    """An exclusive ``flock`` on a container directory; a context manager."""

    def __init__(self, container_id: str, directory: str, *, blocking: bool = False) -> None:
        self.container_id = container_id
        self.directory = directory
        try:
            self._fd: int | None = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise ContainerNotFoundError(container_id, os.path.dirname(directory)) from None
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except OSError as exc:
            os.close(self._fd)
            self._fd = None
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise ContainerBusyError(container_id) from None
            raise

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "ContainerLock":
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class StateStore:
    """The containers under one state root."""

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        self.root = state_root(root)

    def dir(self, container_id: str) -> str:
        return os.path.join(self.root, validate_id(container_id))

    def path(self, container_id: str, *parts: str) -> str:
        return os.path.join(self.dir(container_id), *parts)

    def exists(self, container_id: str) -> bool:
        return os.path.isdir(self.dir(container_id))

    def create_dir(self, container_id: str) -> str:
        """Make the container's directory (0700). Raises ContainerExistsError."""
        makedirs_private(self.root, ROOT_MODE)
        d = self.dir(container_id)
        try:
            os.mkdir(d, 0o700)
        except FileExistsError:
            raise ContainerExistsError(container_id, self.root) from None
        os.chmod(d, 0o700)  # whatever the umask
        return d

    def lock(self, container_id: str, *, blocking: bool = False) -> ContainerLock:
        """Take the container's lock. Raises ContainerNotFoundError, ContainerBusyError."""
        return ContainerLock(container_id, self.dir(container_id), blocking=blocking)

    def read(self, container_id: str) -> ContainerState:
        """Load state.json. Raises ContainerNotFoundError when there is none."""
        try:
            with open(self.path(container_id, STATE_FILE), encoding="utf-8") as f:
                return ContainerState.from_dict(json.load(f))
        except FileNotFoundError:
            raise ContainerNotFoundError(container_id, self.root) from None

    def write(self, state: ContainerState) -> None:
        """Atomically replace state.json (tmp file + fsync + rename)."""
        final = self.path(state.id, STATE_FILE)
        tmp = f"{final}.tmp.{os.getpid()}"
        with open_private(tmp, "w", encoding="utf-8") as f:
            json.dump(state.to_dict(), f, indent=2, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, final)

    def ids(self) -> list[str]:
        """Ids of the containers that have a state.json, sorted."""
        try:
            names = os.listdir(self.root)
        except FileNotFoundError:
            return []
        return sorted(n for n in names if _ID_RE.match(n) and os.path.isfile(os.path.join(self.root, n, STATE_FILE)))

    def remove(self, container_id: str) -> None:
        """Remove the container's directory and everything in it (must be unmounted first).

        Raises OSError (EBUSY) rather than descend into something still mounted there.
        """
        top = self.dir(container_id)
        left = mounts_under(top)
        if left:
            raise OSError(errno.EBUSY, "still mounted; not removing what it shows", left[0])
        shutil.rmtree(top, ignore_errors=False)

    def iter_states(self) -> Iterator[ContainerState]:
        for cid in self.ids():
            try:
                yield self.read(cid)
            except ContainerNotFoundError:  # deleted meanwhile
                continue


def mark_stopped(root: str, container_id: str, init_pid: int, exit_status: int) -> None:
    """Record that init ``init_pid`` exited (run by the monitor; waits for the lock).

    Only a live record of that same init is changed (not a checkpointed one,
    nor one whose init was replaced by a restore). A deleted container is fine.
    """
    store = StateStore(root)

    def applies(st: ContainerState) -> bool:
        return st.init_pid == init_pid and allowed(st.status, Action.EXIT)

    # Poll rather than block on the lock: while a checkpoint (which made this
    # init exit) holds it, a blocked monitor would grab the lock right after
    # and make the user's next operation fail as busy. A record that no
    # longer concerns this init is left alone without locking.
    try:
        while applies(store.read(container_id)):
            try:
                with store.lock(container_id):
                    st = store.read(container_id)
                    if applies(st):
                        store.write(st.advance(Action.EXIT, exit_status=exit_status))
                    return
            except ContainerBusyError:
                time.sleep(_MARK_POLL)
    except (ContainerNotFoundError, OSError):
        pass


LIVE_STATUSES = frozenset(_LIVE)  # an init process runs


def live(st: ContainerState) -> ContainerState:
    """``st`` with the status its init says: a recorded live init that is gone means ``stopped``."""
    if allowed(st.status, Action.EXIT) and not process_alive(st.init_pid, st.init_start_time):
        return st.advance(Action.EXIT)
    return st


def now_rfc3339() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
