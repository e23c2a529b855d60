"""What a checkpoint says beside CRIU's images: criu-cr.json, network.status, config.dump, spec.dump.

Each file is parsed by its one reader (:func:`runtime.cr.meta.parse_meta`,
and :func:`runtime.net.snapshot.parse_network_status`); this module only gathers them into one view. A file
that is there but cannot be read becomes a note, not a failure: inspect
must still show what CRIU's images hold.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from runtime.cr import archive
from runtime.cr.layout import METADATA_FILE, NETWORK_FILE, ROOTFS_DIFF
from runtime.cr.meta import CheckpointMeta, parse_meta
from runtime.errors import ContainerError
from runtime.inspect.sources import Source
from runtime.net.snapshot import NetworkStatus, parse_network_status

__all__ = ["Metadata", "read_metadata"]

# spec.dump's manager annotation (see runtime.cr.export_members) -> the engine's name
_ENGINES = {"libpod": "podman", "cri-o": "cri-o", "criu-cr": "criu-cr"}


@dataclass(frozen=True, kw_only=True)
class Metadata:
    """criu-cr's and the engine's view of a checkpoint (empty strings: not recorded)."""

    engine: str = ""
    container_id: str = ""
    name: str = ""
    image: str = ""
    created: str = ""  # RFC 3339
    checkpointed: str = ""  # RFC 3339
    meta: CheckpointMeta | None = None  # criu-cr.json
    network: NetworkStatus | None = None
    rootfs_diff_bytes: int | None = None
    notes: tuple[str, ...] = ()  # files that were there but could not be read

    @property
    def network_lock(self) -> str:
        return self.meta.network_lock if self.meta else ""

    @property
    def tcp_mode(self) -> str:
        """"established" (connections dumped), "closed" (none kept), or "" (not criu-cr's)."""
        if self.meta is None:
            return ""
        return "established" if self.meta.tcp_established else "closed"


def _iso(ts: float) -> str:
    import time

    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts)) if ts else ""


def _json(src: Source, name: str, notes: list[str]) -> dict[str, Any]:
    try:
        raw = src.beside(name)
        data = json.loads(raw) if raw is not None else {}
    except (ValueError, ContainerError) as exc:
        notes.append(f"{name}: {exc}")
        return {}
    if not isinstance(data, dict):
        notes.append(f"{name}: not a JSON object")
        return {}
    return data


def read_metadata(src: Source) -> Metadata:
    """Everything beside CRIU's images that ``src`` holds. Never raises for a damaged file (see notes)."""
    notes: list[str] = []
    meta = None
    raw = src.read(METADATA_FILE)
    if raw is not None:
        try:
            meta = parse_meta(raw, f"{src.where}: {METADATA_FILE}")
        except ContainerError as exc:
            notes.append(str(exc))
    network = None
    raw = src.read(NETWORK_FILE)
    if raw is not None:
        if raw.strip() == b"null":
            notes.append(f"{NETWORK_FILE} is null (the engine did not know the container's network namespace)")
        else:
            try:
                network = parse_network_status(raw, f"{src.where}: {NETWORK_FILE}")
            except ContainerError as exc:
                notes.append(str(exc))
    config = _json(src, archive.CONFIG_DUMP, notes)
    spec = _json(src, archive.SPEC_DUMP, notes)
    manager = str((spec.get("annotations") or {}).get("io.container.manager", ""))
    engine = "criu-cr" if meta else _ENGINES.get(manager, manager or str(config.get("runtime", "")))
    return Metadata(
        engine=engine,
        container_id=str(config.get("id") or (meta.container_id if meta else "")),
        name=str(config.get("name") or ""),
        image=str(config.get("rootfsImageName") or (meta.rootfs if meta else "")),
        created=str(config.get("createdTime") or ""),
        checkpointed=str(config.get("checkpointedTime") or (_iso(meta.created) if meta else "")),
        meta=meta, network=network,
        rootfs_diff_bytes=src.size(ROOTFS_DIFF) if src.exists(ROOTFS_DIFF) else None,
        notes=tuple(notes))
