"""The names of what a checkpoint directory holds: one place for every file name.

CRIU's own images (``*.img``) are named by CRIU. Beside them:
CRIU's log and statistics of each run, criu-cr's metadata, the netns
snapshot, the manifest, and a copy's filesystem changes. An export archive
(podman's layout) reuses the same names.
"""

from __future__ import annotations

from criu_rpc.images import STATS_FILES
from runtime.net.snapshot import \
    NETWORK_FILE  # the pre-created netns' interfaces (podman's name); its reader/writer is there

__all__ = ["DEFAULT_IMAGE_DIR", "DUMP_LOG", "RESTORE_LOG", "DUMP_STATS", "RESTORE_STATS", "METADATA_FILE",
           "NETWORK_FILE", "MANIFEST_FILE", "ROOTFS_DIFF", "RUN_FILES", "OWN_FILES", "LAZY_PAGES_LOG", "LAZY_PAGES_SOCKET"]

DEFAULT_IMAGE_DIR = "checkpoint"  # under the container's directory, as podman does
DUMP_LOG = "dump.log"
RESTORE_LOG = "restore.log"
DUMP_STATS = STATS_FILES["dump"]  # "stats-dump": CRIU writes it only after a successful dump
RESTORE_STATS = STATS_FILES["restore"]
METADATA_FILE = "criu-cr.json"  # what a restore needs that CRIU's images do not say
MANIFEST_FILE = "criu-cr.manifest"  # size and hash of every file
ROOTFS_DIFF = "rootfs-diff.tar"  # the overlay's upper layer (podman's name)

LAZY_PAGES_LOG = "lazy-pages.log"  # criu lazy-pages (runtime.cr.lazy)
LAZY_PAGES_SOCKET = "lazy-pages.socket"  # where a lazy restore meets the daemon (CRIU's name)

# Written by each CRIU run (so not part of what the checkpoint is).
RUN_FILES = frozenset({DUMP_LOG, DUMP_STATS, RESTORE_LOG, RESTORE_STATS, LAZY_PAGES_LOG, LAZY_PAGES_SOCKET})
# criu-cr's own files beside CRIU's images.
OWN_FILES = frozenset({METADATA_FILE, NETWORK_FILE, ROOTFS_DIFF})
