"""What the client's operations return: frozen, keyword-only dataclasses.

Every result that had a CRIU log names it in ``log_path`` so callers can
keep or remove it.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DumpResult", "PreDumpResult", "DumpSequenceResult", "RestoreResult", "PageServerResult"]


@dataclass(frozen=True, slots=True, kw_only=True)
class DumpResult:
    """A finished dump: the tree rooted at ``pid`` is in ``images_dir``."""

    pid: int | None
    images_dir: str | None
    log_path: str | None
    leave_running: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class PreDumpResult:
    """A finished pre-dump (memory only) of ``pid`` into ``images_dir``."""

    pid: int | None
    images_dir: str | None
    log_path: str | None
    parent_img: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class DumpSequenceResult:
    """Pre-dumps, then the final dump, done on one CRIU session."""

    pre_dumps: tuple[PreDumpResult, ...]
    dump: DumpResult


@dataclass(frozen=True, slots=True, kw_only=True)
class RestoreResult:
    """A restored tree; ``pid`` is its root task (in our pid namespace)."""

    pid: int
    images_dir: str | None
    log_path: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class PageServerResult:
    """A page server CRIU started: its ``pid`` and the ``port`` it listens on."""

    pid: int | None
    port: int | None
    address: str | None
    log_path: str | None
