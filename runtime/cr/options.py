"""Options and results of container checkpoint/restore (runtime.cr.checkpoint, runtime.cr.restore)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from runtime.cr.layout import DEFAULT_IMAGE_DIR, DUMP_LOG, RESTORE_LOG

__all__ = ["LazyPages", "CheckpointOptions", "RestoreOptions", "CheckpointResult", "RestoreResult", "criu_us",
           "RESTORE_TIMEOUT", "REPORT_MARGIN", "DEFAULT_IMAGE_DIR", "LOG_LEVEL", "DUMP_LOG", "RESTORE_LOG", "CTR_LOG"]

RESTORE_TIMEOUT = 300.0  # kept for callers; a restore's deadline now scales with its images
REPORT_MARGIN = 30.0  # seconds beyond CRIU's deadline for the restoring monitor to report
LOG_LEVEL = 4  # CRIU's most detailed: the logs are what an operator debugs with
CTR_LOG = "ctr.log"


@dataclass(frozen=True, kw_only=True)
class LazyPages:
    """Where a lazy restore's memory comes from (runtime.cr.lazy): the page server at ``address``:``port``
    (a post-copy migration's source), or, with neither, the checkpoint's own pages files."""

    address: str | None = None
    port: int | None = None

    def __post_init__(self) -> None:
        if (self.address is None) != (self.port is None):
            raise ValueError("give both address and port of the page server, or neither (the local images)")
        if self.port is not None and not 0 < self.port < 65536:
            raise ValueError(f"page server port {self.port} is not within 1..65535")


@dataclass(frozen=True, kw_only=True)
class CheckpointOptions:
    """How to checkpoint (podman's flag names). ``image_path`` defaults to ``<ctr>/checkpoint``."""

    image_path: str | None = None
    leave_running: bool = False
    tcp_established: bool = False
    # Drop connections not yet accepted instead of failing. None: only with
    # leave_running, where the running container keeps them anyway.
    tcp_skip_in_flight: bool | None = None
    file_locks: bool = False
    keep: bool = False
    network_lock: str | None = None  # None: chosen by what the host has
    log_level: int = LOG_LEVEL
    # Seconds CRIU may take before it is killed (the container then runs on).
    # None: criu_rpc.deadline_for the container's memory.
    timeout: float | None = None
    # Also write the checkpoint as one archive in podman's layout (runtime.cr.archive).
    export: str | None = None
    compress: str = "zstd"  # zstd (podman's default), gzip, none
    # Also write the checkpoint as an OCI image, oci:DIR[:TAG] or oci-archive:FILE[:TAG] (runtime.cr.ociimage).
    create_image: str | None = None
    # Told (bytes done, total) while the export is written (runtime.cr.meter.Progress).
    progress: Any = field(default=None, compare=False, repr=False)
    # Migration (runtime.cr.migrate): a criu_rpc.PageServer the pages go to instead of the images dir,
    # the pre-dump images the pages build on (parent_img, relative to the images dir), and
    # before_kill(work_dir): called at CRIU's post-dump notify, the images complete (manifest
    # included) and the tree still frozen; raising makes CRIU resume the tree (the checkpoint
    # fails, the container runs on).
    page_server: Any = field(default=None, compare=False)
    parent_img: str | None = None
    before_kill: Any = field(default=None, compare=False, repr=False)
    # Post-copy: the lazy memory is not written; after the dump CRIU serves it from its page server on
    # this port (every address) until a lazy-pages daemon has taken all of it, then kills the tree.
    lazy_port: int | None = None

    def __post_init__(self) -> None:
        if self.before_kill is not None and self.leave_running:
            raise ValueError("before_kill is for a checkpoint that stops the container, not leave_running")
        if self.image_path is not None:
            # abspath also drops a trailing slash ("DIR/" would make "DIR/.new-PID" a child of DIR)
            object.__setattr__(self, "image_path", os.path.abspath(self.image_path))
        if self.lazy_port is not None and (not 0 < self.lazy_port < 65536 or self.leave_running):
            raise ValueError(f"lazy_port {self.lazy_port}: a port within 1..65535, and not with leave_running")
        if self.compress not in ("zstd", "gzip", "none"):
            raise ValueError(f"compress must be zstd, gzip or none, not {self.compress!r}")
        if self.export is not None:
            object.__setattr__(self, "export", os.path.abspath(self.export))
        if self.create_image is not None:
            from runtime.cr.ocilayout import parse_reference  # only then: it loads the compressors

            ref = parse_reference(self.create_image)  # ValueError: a bad path or tag
            if ref is None:
                raise ValueError(f"create_image must be oci:DIR[:TAG] or oci-archive:FILE[:TAG], "
                                 f"not {self.create_image!r}")
            object.__setattr__(self, "create_image", str(ref))

    @property
    def portable(self) -> bool:
        """The checkpoint leaves the machine (an archive, an image, a migration): it carries the rootfs diff."""
        return bool(self.export or self.create_image or self.page_server is not None or self.lazy_port)


@dataclass(frozen=True, kw_only=True)
class RestoreOptions:
    """How to restore. ``bundle`` is needed only to restore into a new container."""

    image_path: str | None = None
    tcp_established: bool = False
    tcp_close: bool = False
    file_locks: bool = False
    keep: bool = False
    network_lock: str | None = None
    bundle: str | None = None
    log_level: int = LOG_LEVEL
    # Seconds CRIU may take before it and what it restored are killed.
    # None: criu_rpc.deadline_for the image directory.
    timeout: float | None = None
    verify: bool = True  # check the images against the checkpoint's manifest before CRIU reads them
    # Join this pre-created network namespace instead of the checkpointed one (a second copy's own).
    netns: str | None = None
    # Told (bytes done, total) while an archive is unpacked (restore_import; runtime.cr.meter.Progress).
    progress: Any = field(default=None, compare=False, repr=False)
    # Restore without the memory CRIU marked lazy; it arrives from there while the container runs.
    lazy: LazyPages | None = None

    def __post_init__(self) -> None:
        if self.tcp_established and self.tcp_close:
            raise ValueError("tcp_established and tcp_close exclude each other: restore the "
                             "connections, or close them")
        if self.image_path is not None:
            # abspath also drops a trailing slash ("DIR/" would make "DIR/.new-PID" a child of DIR)
            object.__setattr__(self, "image_path", os.path.abspath(self.image_path))


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckpointResult:
    """A finished checkpoint. ``stats``: CRIU's dump statistics (podman's field names)."""

    container_id: str
    image_dir: str
    log_path: str | None
    stats: dict[str, int]
    duration_us: int
    criu_duration_us: int | None
    archive: str | None = None  # the exported archive (CheckpointOptions.export)
    image: str | None = None  # the OCI image written (CheckpointOptions.create_image)


@dataclass(frozen=True, slots=True, kw_only=True)
class RestoreResult:
    """A finished restore: ``pid`` is the restored init, on the host."""

    container_id: str
    pid: int
    image_dir: str
    log_path: str | None
    stats: dict[str, int]
    duration_us: int
    criu_duration_us: int | None
    # A lazy restore's runtime.cr.lazy.LazyPagesDaemon, still delivering memory: the caller waits for it
    # (``wait()``: every page arrived) and closes it.
    lazy: Any = field(default=None, compare=False, repr=False)


def criu_us(stats: dict[str, int], kind: str) -> int | None:
    """CRIU's own duration from its statistics (dump: frozen_time, restore: restore_time)."""
    if kind == "dump":
        keys = ("frozen_time",)
    else:
        keys = ("restore_time",)
    vals = [stats[k] for k in keys if stats.get(k) is not None]
    return vals[0] if vals else None
