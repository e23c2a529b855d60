"""The exit statuses of ``criu-cr``: one scheme for every command.

Scripts branch on these numbers, so they never change meaning; a new kind
of failure gets a new number. The man pages and docs/cli-json.md list them
from :data:`DESCRIPTIONS`. Which error maps to which status is decided in
one place (:func:`runtime.cli.errormap.classify`), never per command.

A signal ends the command with 128 + its number, as shells report a
process killed by it (so SIGTERM gives 143, not 130): a caller can tell
which signal it was. A dump or restore under way is finished (or rolled
back) first.

``exec`` and ``run`` (without ``-d``) are the exception: on success they
return the container process's own exit status, as runc and podman do.
"""

from __future__ import annotations

import enum

__all__ = ["Exit", "DESCRIPTIONS"]


class Exit(enum.IntEnum):
    """``criu-cr``'s exit statuses."""

    OK = 0
    FAILED = 1
    USAGE = 2
    NOT_FOUND = 3
    WRONG_STATE = 4
    CRIU_FAILED = 5
    ENVIRONMENT = 6
    PARTIAL = 7
    HANGUP = 129
    INTERRUPTED = 130
    TERMINATED = 143

    @property
    def description(self) -> str:
        """One line saying when this status is returned."""
        return DESCRIPTIONS[self]


DESCRIPTIONS: dict[Exit, str] = {
    Exit.OK: "success",
    Exit.FAILED: "any other failure (an unexpected error, a damaged checkpoint or archive, a bad config.json)",
    Exit.USAGE: "usage error: unknown option, missing or conflicting arguments",
    Exit.NOT_FOUND: "no such container, checkpoint or file",
    Exit.WRONG_STATE: "the container's state does not allow the command (e.g. restore a running one), "
                      "it already exists, or another operation holds its lock",
    Exit.CRIU_FAILED: "CRIU refused or failed the dump/restore (the error names CRIU's log and its first error)",
    Exit.ENVIRONMENT: "this machine cannot do it: not root, no usable CRIU, a missing kernel feature",
    Exit.PARTIAL: "a command over several containers where some succeeded and some failed",
    Exit.HANGUP: "stopped by SIGHUP (128 + 1); the error says what state the container was left in",
    Exit.INTERRUPTED: "interrupted by SIGINT, e.g. Ctrl-C (128 + 2); the error says what state the container "
                      "was left in",
    Exit.TERMINATED: "stopped by SIGTERM (128 + 15); the error says what state the container was left in",
}
