"""The manifest of a checkpoint: every image file's size and hash, checked before a restore.

After a successful dump, while the images are still in the work directory,
:func:`write_manifest` records each file of the image directory (CRIU's
images, ``criu-cr.json``, ``network.status``, ``rootfs-diff.tar``) in
``criu-cr.manifest``. Before CRIU reads a checkpoint, :func:`verify_manifest`
checks it and names the first bad file: missing, of another size, of
another content, or an image file the dump did not write. A restore
splits that check (:func:`verify_but_pages`): all of it but the pages
images' hashes before CRIU runs, and those hashes on a thread
(:class:`HashCheck`) while CRIU restores, awaited before the restored tree
may run (runtime.cr.restore). Logs and
statistics (``dump.log``, ``restore.log``, ``stats-*``) are left out: they
are written, kept and removed after the manifest.

The hash is XXH3-128 over 64 MiB chunks (:mod:`runtime.cr.imagehash`). It
finds damage -- a truncated or flipped page, a lost or stray file -- not
tampering: whoever can rewrite the images can rewrite the manifest beside
them. It was chosen over BLAKE3 by measurement on this project's 2-core
machines (1 GiB on tmpfs, scripts/bench-manifest): reading the file costs as
much as hashing it; XXH3 over two threads took 40-75 ms, BLAKE3 with its own
threads 120-190 ms. During a checkpoint the pages are hashed while CRIU
writes them (:func:`follow`), which brought the manifest's cost at 1 GiB
from ~5-9% of the checkpoint time to ~1%.
"""

from __future__ import annotations

import json
import logging
import os
import stat
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from runtime.cr.imagehash import ALGORITHM, PAGES_PREFIX, Follower, file_digests, follow
from runtime.errors import CheckpointError, ImageIntegrityError
from runtime.linux.fsmode import FILE_MODE, open_private

__all__ = ["MANIFEST_FILE", "MANIFEST_VERSION", "ALGORITHM", "FileEntry", "Manifest",
           "build_manifest", "write_manifest", "seal", "follow", "Follower", "read_manifest", "verify_manifest",
           "verify_but_pages", "unhashed_pages", "Unhashed", "HashCheck", "compare", "file_digests"]

_log = logging.getLogger("criu_cr.cr")

from runtime.cr.layout import MANIFEST_FILE, OWN_FILES, RUN_FILES  # noqa: E402 - names in one place

MANIFEST_VERSION = 1
# Written after the manifest, or only for debugging: never listed, never "extra".
UNLISTED = RUN_FILES | {MANIFEST_FILE}
# Files a restore reads besides CRIU's *.img: one that the dump did not write is refused.
_OWN_FILES = OWN_FILES


@dataclass(frozen=True, slots=True, kw_only=True)
class FileEntry:
    """One file of a checkpoint: its size in bytes and hash (hex)."""

    size: int
    digest: str


@dataclass(frozen=True, kw_only=True)
class Manifest:
    """The contents of ``criu-cr.manifest``: file name -> :class:`FileEntry`."""

    files: dict[str, FileEntry] = field(default_factory=dict)
    algorithm: str = ALGORITHM

    def to_dict(self) -> dict[str, object]:
        return {"version": MANIFEST_VERSION, "algorithm": self.algorithm,
                "files": {n: {"size": e.size, "digest": e.digest} for n, e in sorted(self.files.items())}}

    @classmethod
    def from_dict(cls, data: object) -> "Manifest":
        """Raises ValueError (with what is wrong) for anything but a manifest this version writes."""
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        if data.get("version") != MANIFEST_VERSION:
            raise ValueError(f"version {data.get('version')!r}; this criu-cr reads {MANIFEST_VERSION}")
        if data.get("algorithm") != ALGORITHM:
            raise ValueError(f"hash {data.get('algorithm')!r}; this criu-cr knows {ALGORITHM}")
        files = data.get("files")
        if not isinstance(files, dict):
            raise ValueError("no file list")
        out = {}
        for name, entry in files.items():
            if (not isinstance(entry, dict) or type(entry.get("size")) is not int
                    or not isinstance(entry.get("digest"), str) or "/" in name):
                raise ValueError(f"bad entry for {name!r}")
            out[name] = FileEntry(size=entry["size"], digest=entry["digest"])
        return cls(files=out)


def _listed(name: str, mode: int) -> bool:
    return stat.S_ISREG(mode) and name not in UNLISTED


def _scan(image_dir: str) -> dict[str, os.stat_result]:
    """The entries of ``image_dir`` (not followed, not descended: CRIU leaves mounts in here)."""
    out = {}
    with os.scandir(image_dir) as it:
        for entry in it:
            out[entry.name] = entry.stat(follow_symlinks=False)
    return out


def build_manifest(image_dir: str, *, threads: int | None = None,
                   followed: Follower | None = None) -> Manifest:
    """Hash every listed file of ``image_dir`` (see the module doc). Raises OSError.

    Files ``followed`` while they were written are only hashed on from where
    the :class:`Follower` stopped.
    """
    found = _scan(image_dir)
    names = sorted(n for n, st in found.items() if _listed(n, st.st_mode))
    done = followed.finish(found) if followed is not None else {}
    digests = file_digests(image_dir, [n for n in names if n not in done], threads=threads)
    digests.update((n, d) for n, d in done.items() if n in found)
    return Manifest(files={n: FileEntry(size=found[n].st_size, digest=digests[n]) for n in names})


def write_manifest(image_dir: str, *, threads: int | None = None, followed: Follower | None = None) -> Manifest:
    """Write ``criu-cr.manifest`` (0600, atomically) for the files now in ``image_dir``. Raises OSError."""
    manifest = build_manifest(image_dir, threads=threads, followed=followed)
    path = os.path.join(image_dir, MANIFEST_FILE)
    tmp = f"{path}.tmp"
    with open_private(tmp, "w", encoding="utf-8") as f:
        json.dump(manifest.to_dict(), f, indent=1)
        f.write("\n")
    os.replace(tmp, path)
    return manifest


def read_manifest(image_dir: str, *, container_id: str = "") -> Manifest | None:
    """The manifest of ``image_dir``; None when it has none (a checkpoint of an older criu-cr).

    Raises ImageIntegrityError (unreadable or not a manifest), OSError.
    """
    path = os.path.join(image_dir, MANIFEST_FILE)
    try:
        with open(path, encoding="utf-8") as f:
            return Manifest.from_dict(json.load(f))
    except FileNotFoundError:
        return None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ImageIntegrityError(image_dir, MANIFEST_FILE, f"is not a valid manifest ({exc})",
                                  container_id=container_id) from exc


def compare(manifest: Manifest, found: dict[str, tuple[int, int]]) -> tuple[str, str] | None:
    """The first difference between ``manifest`` and the files ``found`` (name -> (mode, size)),
    without hashes: ``(file, problem)``, or None. Pure.

    Checked in this order, each over sorted names: a listed file missing or
    not a regular file; of another size; an image file not listed.
    """
    for name, entry in sorted(manifest.files.items()):
        if name not in found:
            return name, "is missing"
        mode, size = found[name]
        if not stat.S_ISREG(mode):
            return name, "is not a regular file"
        if size != entry.size:
            how = "truncated" if size < entry.size else "grown"
            return name, f"has {size} bytes where the checkpoint wrote {entry.size} ({how})"
    for name, (mode, _) in sorted(found.items()):
        if name in manifest.files or name in UNLISTED or not stat.S_ISREG(mode):
            continue
        if name.endswith(".img") or name in _OWN_FILES:
            return name, "was not written by the checkpoint (an unexpected file)"
    return None


HASH_DIFFERS = "has other contents than the checkpoint wrote (its hash differs)"


def is_pages(name: str) -> bool:
    """CRIU's pages-N.img: the bulk of a checkpoint, read by CRIU only late in a restore."""
    return name.startswith(PAGES_PREFIX) and name.endswith(".img")


@dataclass(frozen=True, kw_only=True)
class Unhashed:
    """Files of a checkpoint found as its manifest lists them (present, same size) whose hash is not checked yet."""

    image_dir: str
    container_id: str = ""
    digests: dict[str, str] = field(default_factory=dict)  # name -> the manifest's hash

    def check(self, *, threads: int | None = None) -> None:
        """Hash the files now. Raises ImageIntegrityError naming the first (by name) that differs, OSError."""
        names = sorted(self.digests)
        found = file_digests(self.image_dir, names, threads=threads)
        for name in names:
            if found[name] != self.digests[name]:
                raise ImageIntegrityError(self.image_dir, name, HASH_DIFFERS, container_id=self.container_id)

    def start(self) -> "HashCheck":
        """:meth:`check` on a thread, while the caller goes on (CRIU restores); see :class:`HashCheck`."""
        return HashCheck(self)


class HashCheck:
    """:meth:`Unhashed.check` running on one thread of its own; :meth:`wait` gives its verdict.

    One thread: it runs beside CRIU's restore, which works on one CPU, so
    more hashing threads would only take CPU time from CRIU on a 2-core machine.
    """

    def __init__(self, unhashed: Unhashed) -> None:
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(unhashed,), name="criu-cr-verify", daemon=True)
        self._thread.start()

    def _run(self, unhashed: Unhashed) -> None:
        try:
            unhashed.check(threads=1)
        except BaseException as exc:  # noqa: BLE001 - raised again by wait(), in the waiting thread
            self._error = exc

    def wait(self) -> None:
        """Until the hashes are checked. Raises ImageIntegrityError (the first bad file), OSError."""
        self._thread.join()
        if self._error is not None:
            raise self._error


def verify_manifest(image_dir: str, *, container_id: str = "", threads: int | None = None) -> Manifest | None:
    """Check ``image_dir`` against its manifest; None (nothing checked) when it has none.

    ``container_id`` (the container being restored) goes into the error.
    Raises ImageIntegrityError naming the first bad file, OSError.
    """
    checked = _verify(image_dir, container_id=container_id, threads=threads, later=lambda name: False)
    return checked[0] if checked is not None else None


def verify_but_pages(image_dir: str, *, container_id: str = "", threads: int | None = None) -> Unhashed | None:
    """:func:`verify_manifest` but for the pages images' hashes: those are returned, to be checked
    while CRIU restores (their presence and sizes are checked here). None when there is no manifest.

    Raises ImageIntegrityError naming the first bad file, OSError.
    """
    checked = _verify(image_dir, container_id=container_id, threads=threads, later=is_pages)
    return checked[1] if checked is not None else None


def unhashed_pages(image_dir: str, *, container_id: str = "") -> Unhashed | None:
    """The pages images' hashes as the manifest gives them, nothing checked (see :func:`verify_but_pages`);
    None when there is no manifest. Raises ImageIntegrityError (a bad manifest), OSError."""
    manifest = read_manifest(image_dir, container_id=container_id)
    if manifest is None:
        return None
    return Unhashed(image_dir=image_dir, container_id=container_id,
                    digests={n: e.digest for n, e in manifest.files.items() if is_pages(n)})


def _verify(image_dir: str, *, container_id: str, threads: int | None,
            later: Callable[[str], bool]) -> tuple[Manifest, Unhashed] | None:
    """Names, sizes, then the hashes of the files not ``later``: (the manifest, the files left to hash)."""
    manifest = read_manifest(image_dir, container_id=container_id)
    if manifest is None:
        return None
    found = {n: (st.st_mode, st.st_size) for n, st in _scan(image_dir).items()}
    bad = compare(manifest, found)
    if bad is not None:
        raise ImageIntegrityError(image_dir, bad[0], bad[1], container_id=container_id)
    now = Unhashed(image_dir=image_dir, container_id=container_id,
                   digests={n: e.digest for n, e in manifest.files.items() if not later(n)})
    now.check(threads=threads)
    return manifest, Unhashed(image_dir=image_dir, container_id=container_id,
                              digests={n: e.digest for n, e in manifest.files.items() if later(n)})


def seal(image_dir: str, *, container_id: str, strict: bool, followed: Follower | None = None) -> None:
    """Make a finished dump's files in ``image_dir`` private (0600) and write its manifest.

    CRIU creates its images and logs 0644 less the umask: they hold the
    container's memory. (The directory is 0700 already; this is for when
    the files are copied or the directory opened up.)

    ``strict`` (the container still runs, so nothing is lost by failing):
    a manifest that cannot be written fails the checkpoint. Otherwise CRIU
    has already stopped the container and its images are all there is: the
    checkpoint is kept without a manifest, with a RuntimeWarning (a restore
    then warns that it cannot check the files). ``followed``: the pages
    hashed while CRIU wrote them (see :func:`follow`). Raises CheckpointError.
    """
    try:
        with os.scandir(image_dir) as it:
            for entry in it:
                if entry.is_file(follow_symlinks=False):
                    os.chmod(entry.path, FILE_MODE)
        write_manifest(image_dir, followed=followed)
    except OSError as exc:
        if strict:
            raise CheckpointError(container_id, f"cannot write the checkpoint's {MANIFEST_FILE}: {exc}") from exc
        _log.warning("container %r: checkpoint taken, but its %s could not be written (%s): a restore cannot "
                     "check its files", container_id, MANIFEST_FILE, exc)
