"""Pre-copy: PRE_DUMP iterations before the final dump of a migration (issue 10; docs/migration.md).

Each iteration is a PRE_DUMP with ``track_mem``: CRIU copies the pages
written since the previous iteration (the kernel's soft-dirty bits) while the
container runs on, into images dir ``work/N`` whose ``parent_img`` is
``../N-1``. The final dump then names the last iteration as its parent and
sends only what changed since. Where the pages go (a page server on the
destination, one per iteration) is the caller's: ``page_server(n, parent)``.

When to stop (:class:`StopRule`, p.haul's rule as a start): after
``max_iterations``; when an iteration wrote fewer than ``min_pages`` pages
(little left to gain); or when it wrote more than ``grow_percent`` % more
than the one before (the container dirties memory faster than it is copied).

Without soft-dirty tracking (``CONFIG_MEM_SOFT_DIRTY`` off, as on this
project's machines) CRIU's FEATURE_CHECK reports ``mem_track`` false and
nothing here can run: :func:`require_mem_track` says so before anything is
frozen. A PRE_DUMP never stops the container (CRIU lets it run after each
one); a failed iteration removes every images dir made here.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from criu_rpc import CriuClient, CriuOptions, PageServer
from criu_rpc.images import read_stats
from runtime.linux import mounts
from runtime.linux.fsmode import makedirs_private

__all__ = ["StopRule", "PreDumped", "PreCopied", "pre_copy", "final_parent", "require_mem_track",
           "NO_MEM_TRACK", "PreCopyUnavailable"]

#: Why pre-copy cannot run, for users: what CRIU said and what to use instead.
NO_MEM_TRACK = ("pre-copy needs CRIU's memory tracking, and CRIU's FEATURE_CHECK reports mem_track "
                "unavailable on this kernel (no soft-dirty bits: CONFIG_MEM_SOFT_DIRTY is off); "
                "use --lazy (post-copy) for a short downtime, or plain stop-and-copy")


class PreCopyUnavailable(Exception):
    """Pre-copy cannot run here (``reason``: CRIU's feature answer, and what to use instead)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class StopRule:
    """When pre-dump iterations stop (see the module doc). Pure."""

    max_iterations: int
    min_pages: int = 64
    grow_percent: int = 10

    def __post_init__(self) -> None:
        if self.max_iterations < 1:
            raise ValueError(f"max_iterations must be at least 1, not {self.max_iterations}")

    def verdict(self, written: Sequence[int]) -> str | None:
        """Why to stop after iterations that wrote ``written`` pages each, or None to go on."""
        n = len(written)
        if n and written[-1] < self.min_pages:
            return f"iteration {n} wrote {written[-1]} pages (fewer than {self.min_pages})"
        if n >= 2 and written[-1] * 100 > written[-2] * (100 + self.grow_percent):
            return (f"iteration {n} wrote {written[-1]} pages, more than {self.grow_percent}% over the "
                    f"{written[-2]} before: memory changes faster than it is copied")
        if n >= self.max_iterations:
            return f"{n} iterations, the most asked for"
        return None


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class PreDumped:
    index: int  # 1, 2, ...
    images_dir: str
    parent_img: str | None  # relative to images_dir
    pages_written: int


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class PreCopied:
    iterations: tuple[PreDumped, ...]
    stopped: str  # the StopRule's verdict

    @property
    def last_dir(self) -> str:
        return self.iterations[-1].images_dir


def require_mem_track(client: CriuClient) -> None:
    """Ask CRIU (FEATURE_CHECK) whether it can track memory; raises PreCopyUnavailable if not.
    Nothing is frozen or written. Raises CriuError when CRIU cannot be asked."""
    features = client.feature_check()
    if features.mem_track is not True:
        raise PreCopyUnavailable(NO_MEM_TRACK)


def _stats_pages(images_dir: str) -> int:
    return read_stats(images_dir, "dump").pages_written


def pre_copy(session: Any, *, pid: int, work: str, rule: StopRule, base: Mapping[str, Any] | None = None,
             page_server: Callable[[int, str | None], PageServer | None] = lambda n, parent: None,
             pages_written: Callable[[str], int] = _stats_pages) -> PreCopied:
    """PRE_DUMP ``pid`` on ``session`` (a criu_rpc DumpSession) into ``work/1``, ``work/2``... until ``rule``
    says stop. ``base``: the options every iteration shares (namespaces, cgroups...);
    ``page_server(n, parent)``: where iteration n's pages go (None: its images dir);
    ``pages_written(dir)``: what an iteration wrote (CRIU's stats-dump).

    Raises FeatureUnavailableError (no memory tracking), CriuError; on any failure the dirs
    made here are removed (the container runs on: a pre-dump never stops it).
    """
    shared = {k: v for k, v in (base or {}).items() if k not in ("leave_running", "ps", "parent_img", "pid")}
    made_work = not os.path.exists(work)
    makedirs_private(work)
    done: list[PreDumped] = []
    try:
        while True:
            n = len(done) + 1
            images = os.path.join(work, str(n))
            makedirs_private(images)
            parent = f"../{n - 1}" if done else None
            opts = CriuOptions(**{**shared, "images_dir": images, "pid": pid, "track_mem": True,
                                  "parent_img": parent, "ps": page_server(n, parent)})
            session.pre_dump(opts)
            done.append(PreDumped(index=n, images_dir=images, parent_img=parent, pages_written=pages_written(images)))
            why = rule.verdict([d.pages_written for d in done])
            if why is not None:
                return PreCopied(iterations=tuple(done), stopped=why)
    except BaseException:
        for d in [*done, None]:
            path = d.images_dir if d else os.path.join(work, str(len(done) + 1))
            if os.path.isdir(path):
                mounts.remove_tree(path)
        if made_work:
            os.rmdir(work)
        raise


def final_parent(pre: PreCopied, final_dir: str) -> str:
    """The final dump's ``parent_img``: the last iteration, relative to ``final_dir``. Pure."""
    return os.path.relpath(pre.last_dir, final_dir)
