"""Functions meant to run "on" a lab host (``lab.a.call(lab_ops.run_container, ...)``).

Module-level, so that :meth:`runtime.testing.lab.LabHost.call` can send them
by reference; each returns something picklable. They use the host's own
state root (``/run/criu-cr``) and ``$CRIU_CR_CRIU`` for CRIU.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

__all__ = ["run_container", "receive_once", "migrate_to", "status", "read_file", "HostLeftovers", "leftovers", "occupy_port",
           "criu_path"]


def criu_path() -> str | None:
    return os.environ.get("CRIU_CR_CRIU") or None


def run_container(cid: str, bundle: str) -> int:
    """Create and start ``cid`` from ``bundle`` on this host; its init's pid."""
    from runtime.container import Container

    ctr = Container.create(cid, bundle)
    ctr.start()
    return ctr.refresh().init_pid


def receive_once(port: int, token: bytes, **kwargs: Any) -> Any:
    """One stop-and-copy migration accepted on ``port`` of every address (a ``Received``)."""
    from runtime.cr.migrate import Receiver

    with Receiver(("0.0.0.0", port), token, criu_path=criu_path(), **kwargs) as rx:
        return rx.serve_once()


def migrate_to(cid: str, address: tuple[str, int], token: bytes, **kwargs: Any) -> Any:
    """``runtime.cr.migrate.migrate`` from this host (a ``Migrated``; MigrationError raised)."""
    from runtime.cr.migrate import migrate

    return migrate(cid, address, token, criu_path=criu_path(), **kwargs)


def status(cid: str) -> str:
    """The container's status here, "" when this host has no such container."""
    from runtime.container import Container
    from runtime.errors import ContainerError

    try:
        return str(Container.load(cid).status)
    except ContainerError:
        return ""


def read_file(path: str) -> str:
    with open(path) as f:
        return f.read()


@dataclass(frozen=True, kw_only=True)
class HostLeftovers:
    """What a host still holds of a container that left it (all empty: nothing)."""

    containers: list[str]
    state_entries: list[str]
    mounts: list[str]
    netns_lock: list[str]

    def empty(self) -> bool:
        return not (self.containers or self.state_entries or self.mounts or self.netns_lock)


HOST_FILES = frozenset({".criu-features.json"})  # the state root's host-wide cache, not a container's


def leftovers(netns_path: str | None = None) -> HostLeftovers:
    """This host's containers, state root entries, mounts below the state root, and CRIU's network
    lock in ``netns_path`` (if that netns still exists)."""
    from runtime.container import Container
    from runtime.container.state import DEFAULT_ROOT
    from runtime.linux.procfs import read_mountinfo
    from runtime.net import netlock, netns

    lock = netlock.lock_commands(netns_path) if netns_path and netns.netns_exists(netns_path) else []
    return HostLeftovers(containers=[c.id for c in Container.list()],
                         state_entries=sorted(set(os.listdir(DEFAULT_ROOT)) - HOST_FILES),
                         mounts=[m.mountpoint for m in read_mountinfo() if m.mountpoint.startswith(DEFAULT_ROOT + "/")],
                         netns_lock=lock)


def occupy_port(netns_path: str, port: int, seconds: float = 300.0) -> None:
    """Listen on ``port`` inside the netns ``netns_path`` of this host until killed (a port taken)."""
    import socket
    import time

    from runtime.net.in_netns import in_netns

    def listen() -> socket.socket:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", port))
        s.listen()
        return s

    with in_netns(netns_path, listen):
        time.sleep(seconds)
