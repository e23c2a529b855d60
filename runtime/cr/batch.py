"""Checkpoint or restore many containers at once (podman's ``-a/--all``), a bounded number at a time.

Each container goes through the same :func:`runtime.cr.checkpoint.checkpoint`
or :func:`runtime.cr.restore.restore` as alone, under its own lock, so each
keeps its own guarantees (a failed checkpoint leaves that container running;
an interrupted one is settled by the next command). A failure is that
container's outcome, never the others': every container is tried and the
:class:`BatchResult` says which failed and why.

The work runs on threads: a checkpoint or restore mostly waits for CRIU
(another process), so threads give the parallelism without a Python start-up
per container. Signals (SIGINT/SIGTERM/SIGHUP) are held by the calling (main)
thread while a batch runs: no container not yet begun is started after one,
the ones in flight finish, and the result says which signal stopped it
(``BatchResult.signal``; the CLI then exits 128 + its number).
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from runtime.container.state import Status, StateStore, live
from runtime.cr.options import CheckpointOptions, RestoreOptions
from runtime.errors import ContainerError
from runtime.linux.signals import deferred

__all__ = ["Outcome", "BatchResult", "NotBegun", "run_each", "default_parallel", "select", "checkpoint_all",
           "restore_all"]

MAX_PARALLEL = 64  # beyond this, CRIU runs only compete for the same cores and disks


def default_parallel() -> int:
    """Twice as many at once as this process may use cores: a checkpoint or restore also waits
    (the freezer, CRIU's start, the network lock), so one per core leaves them idle. Measured
    with 16 small containers on 2 cores (checkpoint/restore --all, seconds): 1 at a time
    1.56/1.55, 2: 1.16/0.98, 4: 1.02/0.82, 8: 0.96/0.82."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return max(1, 2 * cores)


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    """One container's share of a batch: its result, or the error that stopped it.

    ``skipped``: never begun (the batch was interrupted first); ``error`` then
    says so.
    """

    container_id: str
    result: Any = None
    error: BaseException | None = None
    seconds: float = 0.0
    skipped: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchResult:
    """Every container's :class:`Outcome`, in the order asked, and the batch's wall time."""

    outcomes: tuple[Outcome, ...]
    seconds: float
    parallel: int
    # The signal (SIGINT/SIGTERM/SIGHUP) that stopped the batch early: the containers not
    # begun are ``skipped``. Reported here rather than raised, so the outcomes are not lost.
    signal: int | None = None

    @property
    def ok(self) -> bool:
        return all(o.ok for o in self.outcomes)

    @property
    def failed(self) -> tuple[Outcome, ...]:
        return tuple(o for o in self.outcomes if not o.ok)

    @property
    def succeeded(self) -> tuple[Outcome, ...]:
        return tuple(o for o in self.outcomes if o.ok)

    def summary(self) -> str:
        """``"3 of 4 succeeded, 1 failed (2.1 s, 1.9 containers/s, 2 at a time)"``."""
        n, good = len(self.outcomes), len(self.succeeded)
        rate = good / self.seconds if self.seconds > 0 else 0.0
        return (f"{good} of {n} succeeded, {n - good} failed ({self.seconds:.1f} s, "
                f"{rate:.1f} containers/s, {self.parallel} at a time)")


class NotBegun(Exception):
    """The batch was interrupted before this container was begun."""


def run_each(ids: Sequence[str], operation: Callable[[str], Any], *, parallel: int | None = None,
             stop: Callable[[], bool] = lambda: False) -> BatchResult:
    """``operation(id)`` for every id, at most ``parallel`` at a time; never raises for one id.

    An exception from ``operation`` becomes that id's :class:`Outcome`
    (BaseExceptions too, e.g. a KeyboardInterrupt in a worker). Once
    ``stop()`` is true, ids not yet begun are skipped. Raises ValueError
    for ``parallel < 1`` or an id given twice.
    """
    if len(set(ids)) != len(ids):
        raise ValueError("a container is named more than once")
    if parallel is not None and parallel < 1:
        raise ValueError(f"parallel must be at least 1, not {parallel}")
    parallel = min(parallel or default_parallel(), MAX_PARALLEL, max(len(ids), 1))
    started = time.monotonic()
    stopped = threading.Event()

    def one(cid: str) -> Outcome:
        if stopped.is_set() or stop():
            stopped.set()
            return Outcome(container_id=cid, error=NotBegun("not begun: the batch was interrupted"),
                           skipped=True)
        t = time.monotonic()
        try:
            res = operation(cid)
        except BaseException as exc:  # noqa: BLE001 - one container's failure is its outcome
            return Outcome(container_id=cid, error=exc, seconds=time.monotonic() - t)
        return Outcome(container_id=cid, result=res, seconds=time.monotonic() - t)

    with ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="criu-cr-batch") as pool:
        outcomes = tuple(pool.map(one, ids))
    return BatchResult(outcomes=outcomes, seconds=time.monotonic() - started, parallel=parallel)


def select(store: StateStore, status: Status) -> list[str]:
    """The ids of the containers now in ``status``, sorted (a recorded live init that is gone
    counts as stopped; an operation in flight is left to the container's own lock to refuse)."""
    found = []
    for cid in store.ids():
        try:
            if live(store.read(cid)).status == status:
                found.append(cid)
        except (ContainerError, OSError, ValueError):
            continue  # gone, or half made, since the listing: not part of "all"
    return sorted(found)


def _batch(ids: Iterable[str], operation: Callable[[str], Any], parallel: int | None, what: str) -> BatchResult:
    ids = list(ids)
    with deferred(what) as received:
        res = run_each(ids, operation, parallel=parallel, stop=lambda: bool(received))
        held = received[:1]
        received.clear()  # not delivered afterwards: it is in the result, with what it stopped
    return dataclasses.replace(res, signal=held[0]) if held else res


def checkpoint_all(store: StateStore, opts: CheckpointOptions = CheckpointOptions(), *,
                   ids: Iterable[str] | None = None, parallel: int | None = None,
                   criu_path: str | None = None) -> BatchResult:
    """Checkpoint ``ids`` (default: every running container), ``parallel`` at a time (default: cores).

    ``opts.image_path``, ``export`` and ``create_image`` name one place and
    cannot be shared: each container uses its own default directory. Raises
    ValueError for such options; every container's error is in its Outcome.
    """
    if opts.image_path or opts.export or opts.create_image:
        raise ValueError("a batch checkpoint writes each container's own image directory: "
                         "no image_path, export or create_image")
    from runtime.cr.checkpoint import checkpoint

    chosen = select(store, Status.RUNNING) if ids is None else ids
    return _batch(chosen, lambda cid: checkpoint(store, cid, opts, criu_path=criu_path), parallel,
                  "the checkpoints in flight")


def restore_all(store: StateStore, opts: RestoreOptions = RestoreOptions(), *,
                ids: Iterable[str] | None = None, parallel: int | None = None,
                criu_path: str | None = None) -> BatchResult:
    """Restore ``ids`` (default: every checkpointed container) from their last checkpoints.

    ``opts.image_path``, ``bundle`` and ``netns`` name one place: not in a
    batch (ValueError). Every container's error is in its Outcome.
    """
    if opts.image_path or opts.bundle or opts.netns:
        raise ValueError("a batch restore uses each container's own checkpoint: no image_path, bundle or netns")
    from runtime.cr.restore import restore

    chosen = select(store, Status.CHECKPOINTED) if ids is None else ids
    return _batch(chosen, lambda cid: restore(store, cid, opts, criu_path=criu_path), parallel,
                  "the restores in flight")
