"""Stored replies of CRIU 4.2.1, recorded from real swrk sessions.

``data/criu_replies/<name>.bin`` holds one serialized ``criu_resp`` each:
version, feature_check, check, cpuinfo_dump, dump, restore,
restore_failed, single_pre_dump_failed, invalid_request (CRIU's EMPTY
answer), page_server, page_server_chld, wait_pid, and the notifies seen on
a dump and a restore (notify_<script>).
"""

from __future__ import annotations

from pathlib import Path

REPLIES = Path(__file__).resolve().parents[1] / "data" / "criu_replies"


def reply(name: str) -> bytes:
    """The stored bytes of reply ``name``."""
    return (REPLIES / f"{name}.bin").read_bytes()


def names() -> list[str]:
    return sorted(p.stem for p in REPLIES.glob("*.bin"))
