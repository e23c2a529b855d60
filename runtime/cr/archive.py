"""Checkpoint archives in podman's / CRI-O's export layout: the one writer and the one reader.

The archive is a tar (zstd-compressed by default, as podman does; gzip or
none on request) whose top level is what podman, CRI-O and checkpointctl
agree on::

    checkpoint/          CRIU's images (a directory entry: checkpointctl refuses
                         an archive without one) and CRIU's dump.log
    spec.dump            the container's OCI config
    config.dump          id, name, rootfsImageName, runtime, createdTime (RFC 3339)
    network.status       the pre-created netns' interfaces
    stats-dump           CRIU's dump statistics
    rootfs-diff.tar      the overlay's upper layer (when the checkpoint has it)
    deleted.files        files the container deleted from its image (JSON list)
    ctr.log              the container's output so far
    criu-cr.json         our metadata
    criu-cr.manifest     size and hash of every file the restore reads

podman's archives have no criu-cr.json and no manifest (they are read with
a warning: nothing can be checked before CRIU reads the files; the restore
rebuilds the metadata, see :mod:`runtime.cr.podman`) and two members of
their own: ``devshm-checkpoint.tar`` (the container's /dev/shm) and an
``artifacts/`` directory (files only, one level).

In the image directory, criu-cr keeps all of CRIU's images and its own
files side by side; the archive puts the files podman names at the top
level and the rest under ``checkpoint/``. :func:`read_archive` puts them
back the same way, so the manifest checks the result.

Both directions stream: the writer reads each file once into the
compressor and the archive file; the reader writes each member once, into
its final place. An archive is untrusted input: the reader accepts only the
members above, only regular files (and the one directory), each once,
within a size limit, and refuses anything else naming the member.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import stat
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass
from typing import IO, Any

from runtime.cr.compression import (CHUNK, STREAM_ERRORS, Counted, LimitReached, Positioned, compressor, decompressor,
                                    detect_compression)
from runtime.cr.layout import DUMP_STATS, MANIFEST_FILE, METADATA_FILE, NETWORK_FILE, ROOTFS_DIFF
from runtime.cr.manifest import verify_manifest
from runtime.cr.meter import Meter, Metered, Progress
from runtime.errors import ArchiveError, ImageIntegrityError
from runtime.linux.fsmode import DIR_MODE, FILE_MODE

__all__ = ["COMPRESSIONS", "DEFAULT_COMPRESSION", "DEFAULT_IMPORT_LIMIT", "CHECKPOINT_DIR", "SPEC_DUMP",
           "CONFIG_DUMP", "DELETED_FILES", "CTR_LOG", "DEVSHM_TAR", "ARTIFACTS_DIR", "ArchiveInfo",
           "ImportedArchive", "write_archive", "read_archive", "detect_compression", "member_name", "write_stream", "load_json_member",
           "image_file", "check_member"]

COMPRESSIONS = ("zstd", "gzip", "none")
DEFAULT_COMPRESSION = "zstd"  # podman's default
# zstd 3 (its own default) keeps up with a disk on one core; threads take the rest.
# What an import may unpack unless the user allows more (--import-limit).
DEFAULT_IMPORT_LIMIT = 64 << 30
# Beyond the members' declared sizes, what tar headers may take (a header bomb stops here).
HEADER_SLACK = 16 << 20
_log = logging.getLogger("criu_cr.cr")
JSON_LIMIT = 16 << 20  # spec.dump / config.dump / deleted.files are small

CHECKPOINT_DIR = "checkpoint"
SPEC_DUMP = "spec.dump"
CONFIG_DUMP = "config.dump"
DELETED_FILES = "deleted.files"
CTR_LOG = "ctr.log"
DEVSHM_TAR = "devshm-checkpoint.tar"  # podman: the contents of the container's /dev/shm
ARTIFACTS_DIR = "artifacts"  # podman: a directory of files (empty in podman 4.3's own archives)

# Files of the image directory that podman keeps at the archive's top level.
_TOP_FROM_IMAGES = frozenset({METADATA_FILE, MANIFEST_FILE, NETWORK_FILE, ROOTFS_DIFF, DUMP_STATS})
# Top-level members that are not part of the image directory.
_TOP_BESIDE = frozenset({SPEC_DUMP, CONFIG_DUMP, DELETED_FILES, CTR_LOG, DEVSHM_TAR})
_DIRS = frozenset({CHECKPOINT_DIR, ARTIFACTS_DIR})
_JSON_MEMBERS = frozenset({SPEC_DUMP, CONFIG_DUMP, DELETED_FILES})
_REQUIRED = (CHECKPOINT_DIR, SPEC_DUMP, CONFIG_DUMP)  # criu-cr.json and the manifest: not in podman's
_IMAGE_NAME = re.compile(r"[A-Za-z0-9_+-][A-Za-z0-9._+-]*")  # CRIU's image names; no "..", no "/"


@dataclass(frozen=True, slots=True, kw_only=True)
class ArchiveInfo:
    """A written archive: its path, size in bytes, and compression."""

    path: str
    size: int
    compression: str


@dataclass(frozen=True, kw_only=True)
class ImportedArchive:
    """An unpacked archive: ``directory`` (fresh, 0700) holds the top-level files,
    ``image_dir`` (``directory/checkpoint``) the checkpoint as criu-cr restores it.
    ``foreign``: it has no criu-cr.json (podman's); ``verified``: its manifest was checked."""

    directory: str
    image_dir: str
    spec: dict[str, Any]
    config: dict[str, Any]
    members: tuple[str, ...]
    foreign: bool = False
    verified: bool = True


def member_name(image_file: str) -> str:
    """The archive member of the image directory's file ``image_file``. Pure."""
    return image_file if image_file in _TOP_FROM_IMAGES else f"{CHECKPOINT_DIR}/{image_file}"


def image_file(member: str) -> str | None:
    """The image directory's file that archive member ``member`` holds (None: a member beside it). Pure."""
    if member.startswith(f"{CHECKPOINT_DIR}/"):
        return member.split("/", 1)[1]
    return member if member in _TOP_FROM_IMAGES else None


# -- writing ----------------------------------------------------------------------------

def write_archive(path: str, image_dir: str, *, extra: Mapping[str, bytes] | None = None,
                  extra_files: Mapping[str, str] | None = None, compression: str = DEFAULT_COMPRESSION,
                  threads: int = -1, progress: Progress | None = None) -> ArchiveInfo:
    """Write the checkpoint at ``image_dir`` as an archive at ``path``.

    ``extra`` gives top-level members by content (spec.dump, config.dump,
    deleted.files), ``extra_files`` by the host file to copy (ctr.log).
    ``threads``: zstd's worker threads (-1: one per CPU); ``progress``: see
    runtime.cr.meter. The archive is
    written to ``PATH.tmp-PID`` (0600) and renamed on success; a failure
    leaves no file. Raises ArchiveError (unknown compression, a file that
    cannot be read), OSError (writing).
    """
    if compression not in COMPRESSIONS:
        raise ArchiveError(path, "", f"unknown compression {compression!r}", hint=f"one of {', '.join(COMPRESSIONS)}")
    for name in [*(extra or {}), *(extra_files or {})]:
        if name not in _TOP_BESIDE:
            raise ValueError(f"{name!r} is not a top-level member of a checkpoint archive")
    path = os.path.abspath(path)
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        os.unlink(tmp)  # a stale one of a killed export with our pid
    except FileNotFoundError:
        pass
    # O_EXCL: never through a link someone put at this name
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)  # whatever the umask: the pages hold secrets
        with os.fdopen(fd, "wb", buffering=CHUNK) as raw:
            with compressor(raw, compression, threads) as out:
                _write_tar(out, path, image_dir, extra or {}, extra_files or {}, progress)
            raw.flush()
            os.fsync(raw.fileno())
        size = os.stat(tmp).st_size
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return ArchiveInfo(path=path, size=size, compression=compression)


def write_stream(out: IO[bytes], label: str, image_dir: str, *, extra: Mapping[str, bytes] | None = None,
                 extra_files: Mapping[str, str] | None = None) -> None:
    """Write the archive's tar, uncompressed, into the stream ``out`` (which the caller compresses,
    hashes, names and closes: an OCI image's layer). ``label`` names it in errors. Raises ArchiveError."""
    for name in [*(extra or {}), *(extra_files or {})]:
        if name not in _TOP_BESIDE:
            raise ValueError(f"{name!r} is not a top-level member of a checkpoint archive")
    _write_tar(out, label, image_dir, extra or {}, extra_files or {})


def _write_tar(out: IO[bytes], path: str, image_dir: str, extra: Mapping[str, bytes],
               extra_files: Mapping[str, str], progress: Progress | None = None) -> None:
    # "w", not the stream mode "w|": the stream mode re-buffers every write (a copy or more of
    # each page); plain "w" only asks the position once and writes straight through.
    with tarfile.open(fileobj=Positioned(out), mode="w", format=tarfile.PAX_FORMAT) as tar:
        tar.copybufsize = CHUNK
        d = tarfile.TarInfo(CHECKPOINT_DIR)
        d.type, d.mode = tarfile.DIRTYPE, DIR_MODE
        tar.addfile(d)
        with os.scandir(image_dir) as it:
            entries = sorted((e for e in it if e.is_file(follow_symlinks=False)), key=lambda e: e.name)
        meter = Meter(progress, sum(e.stat().st_size for e in entries)) if progress else None
        for entry in entries:
            if entry.name.startswith(".") or entry.name in ("restore.log", "stats-restore"):
                continue  # a kept restore's logs are not part of the checkpoint
            _add_file(tar, path, member_name(entry.name), entry.path, meter)
        for name, data in sorted(extra.items()):
            ti = tarfile.TarInfo(name)
            ti.size, ti.mode = len(data), FILE_MODE
            tar.addfile(ti, io.BytesIO(data))
        for name, src in sorted(extra_files.items()):
            if os.path.isfile(src):
                _add_file(tar, path, name, src)
    if meter:
        meter.end()


def _add_file(tar: tarfile.TarFile, path: str, name: str, src: str, meter: Meter | None = None) -> None:
    try:
        with open(src, "rb") as f:
            st = os.fstat(f.fileno())
            ti = tarfile.TarInfo(name)
            ti.size, ti.mode, ti.mtime = st.st_size, FILE_MODE, int(st.st_mtime)
            tar.addfile(ti, Metered(f, meter) if meter else f)
    except OSError as exc:
        raise ArchiveError(path, name, f"cannot read {src}: {exc.strerror or exc}") from exc


# -- reading ----------------------------------------------------------------------------

def read_archive(path: str, directory: str, *, limit: int = DEFAULT_IMPORT_LIMIT,
                 progress: Progress | None = None) -> ImportedArchive:
    """Unpack the archive at ``path`` into ``directory``, which must not exist (it is made 0700).

    Refuses (ArchiveError naming the member) absolute paths, ``..``, links,
    device nodes, FIFOs, setuid/setgid files, duplicate and unexpected
    members, more than ``limit`` bytes unpacked, a corrupt or truncated
    archive, and files that differ from the archive's manifest. On any
    failure ``directory`` is removed again. ``progress``: see runtime.cr.meter.
    Raises ArchiveError, OSError
    (``path`` unreadable, ``directory`` exists).
    """
    os.mkdir(directory, DIR_MODE)
    os.chmod(directory, DIR_MODE)
    try:
        return _read(path, directory, limit, progress)
    except BaseException:
        _remove_unpacked(directory)
        raise


def _read(path: str, directory: str, limit: int, progress: Progress | None = None) -> ImportedArchive:
    image_dir = os.path.join(directory, CHECKPOINT_DIR)
    seen: list[str] = []
    current = ""
    with open(path, "rb") as f:
        compression = detect_compression(f.peek(4)[:4])
        meter = Meter(progress, os.fstat(f.fileno()).st_size) if progress else None
        try:
            with decompressor(f, compression) as plain:
                counted = Counted(plain, limit + HEADER_SLACK)
                with tarfile.open(fileobj=counted, mode="r|", bufsize=CHUNK) as tar:
                    budget = limit
                    for member in tar:
                        current = member.name
                        name = check_member(path, member, seen)
                        seen.append(name)
                        if name in _DIRS:
                            sub = os.path.join(directory, name)
                            if not os.path.isdir(sub):  # checkpoint/ may exist: podman's order
                                os.mkdir(sub, DIR_MODE)
                            os.chmod(sub, DIR_MODE)
                            continue
                        if member.size > budget:
                            raise _too_big(path, name, limit)
                        budget -= member.size
                        _extract(tar, member, _target(directory, image_dir, name), path, name,
                                 meter and (lambda: meter.at(f.tell())))
                    current = ""
                    if meter:
                        meter.end()
        except ArchiveError:
            raise
        except LimitReached:
            raise _too_big(path, current, limit) from None
        except (tarfile.TarError, *STREAM_ERRORS, OSError) as exc:
            if isinstance(exc, OSError) and exc.errno is not None:
                raise  # our own disk, not the archive
            what = "is truncated" if "end of" in str(exc) or isinstance(exc, EOFError) else "is corrupt"
            raise ArchiveError(path, current, f"{what} ({exc})",
                               hint="the archive was damaged or not completely copied") from exc
    for name in _REQUIRED:
        if name not in seen:
            raise ArchiveError(path, name, "is missing: this is not a complete checkpoint archive")
    verified = MANIFEST_FILE in seen
    if verified:
        try:
            verify_manifest(image_dir)
        except ImageIntegrityError as exc:
            raise ArchiveError(path, member_name(exc.file), exc.reason,
                               hint="the archive was damaged or not completely copied") from exc
    else:
        _log.warning("the archive %s has no %s (not written by criu-cr): its files cannot be checked "
                     "before CRIU reads them", path, MANIFEST_FILE)
    return ImportedArchive(directory=directory, image_dir=image_dir,
                           spec=load_json_member(path, directory, SPEC_DUMP, dict),
                           config=load_json_member(path, directory, CONFIG_DUMP, dict), members=tuple(seen),
                           foreign=METADATA_FILE not in seen, verified=verified)


def _too_big(path: str, member: str, limit: int) -> ArchiveError:
    return ArchiveError(path, member, f"unpacks to more than the limit of {limit} bytes",
                        hint="if the archive is trusted, raise the limit (--import-limit)")


def check_member(path: str, member: tarfile.TarInfo, seen: list[str]) -> str:
    """The member's normalized name, or ArchiveError saying why it is refused. Pure."""
    raw = member.name
    name = raw[2:] if raw.startswith("./") else raw
    name = name.rstrip("/") if member.isdir() else name
    parts = name.split("/")
    if raw.startswith("/"):
        raise ArchiveError(path, raw, "has an absolute path")
    if ".." in parts:
        raise ArchiveError(path, raw, "leads outside the archive ('..')")
    if member.issym() or member.islnk():
        target = member.linkname
        base = os.path.dirname(name) if member.issym() else ""
        if os.path.isabs(target) or os.path.normpath(os.path.join(base, target)).startswith(".."):
            raise ArchiveError(path, raw, f"is a link leading outside the archive (to {target})")
        raise ArchiveError(path, raw, f"is a link (to {target}); a checkpoint archive holds only files")
    if member.ischr() or member.isblk():
        raise ArchiveError(path, raw, "is a device node")
    if member.isfifo():
        raise ArchiveError(path, raw, "is a FIFO")
    if not (member.isreg() or member.isdir()):
        raise ArchiveError(path, raw, "is of an unexpected type")
    if member.mode & (stat.S_ISUID | stat.S_ISGID):
        raise ArchiveError(path, raw, "has the setuid or setgid bit")
    if member.isdir():
        if name not in _DIRS:
            raise ArchiveError(path, raw, "is an unexpected directory")
    elif not (name in _TOP_FROM_IMAGES or name in _TOP_BESIDE
              or (len(parts) == 2 and parts[0] == CHECKPOINT_DIR and _IMAGE_NAME.fullmatch(parts[1])
                  and parts[1] not in _TOP_FROM_IMAGES)
              or (len(parts) == 2 and parts[0] == ARTIFACTS_DIR and _IMAGE_NAME.fullmatch(parts[1]))):
        raise ArchiveError(path, raw, "is not a member of a checkpoint archive (unexpected)")
    if name in seen:
        raise ArchiveError(path, raw, "appears twice (a duplicate member)")
    for d in _DIRS:
        if name.startswith(f"{d}/") and d not in seen:
            raise ArchiveError(path, raw, f"comes before the {d}/ directory entry")
    return name


def _target(directory: str, image_dir: str, name: str) -> str:
    if name.startswith(f"{CHECKPOINT_DIR}/"):
        return os.path.join(image_dir, name.split("/", 1)[1])
    if name.startswith(f"{ARTIFACTS_DIR}/"):
        return os.path.join(directory, ARTIFACTS_DIR, name.split("/", 1)[1])
    if name in _TOP_FROM_IMAGES:
        if not os.path.isdir(image_dir):
            os.mkdir(image_dir, DIR_MODE)  # podman writes checkpoint/ after the top-level files
            os.chmod(image_dir, DIR_MODE)
        return os.path.join(image_dir, name)
    return os.path.join(directory, name)


def _extract(tar: tarfile.TarFile, member: tarfile.TarInfo, target: str, path: str, name: str,
             tick: Any = None) -> None:
    if name in _JSON_MEMBERS and member.size > JSON_LIMIT:
        raise ArchiveError(path, name, f"has {member.size} bytes; more than {JSON_LIMIT} is not a {name}")
    # The member's data straight from tarfile's stream (it stands at the data after the header,
    # and skips the padding itself at the next member): extractfile() would add a buffered
    # layer and a copy of every page.
    src = tar.fileobj
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, FILE_MODE)
    with os.fdopen(fd, "wb", buffering=0) as out:
        left = member.size
        while left:
            data = src.read(min(CHUNK, left))
            if not data:
                raise ArchiveError(path, name, "is truncated (the archive ends inside it)",
                                   hint="the archive was damaged or not completely copied")
            out.write(data)
            left -= len(data)
            if tick:
                tick()


def load_json_member(path: str, directory: str, name: str, kind: type, *, member: str = "",
                     missing: Any = None) -> Any:
    """The JSON member ``name`` of archive ``path``, unpacked in ``directory``; of type ``kind``.

    ``missing`` (when not None) stands for a member that is not there.
    Raises ArchiveError naming ``member`` (default: ``name``).
    """
    member = member or name
    try:
        with open(os.path.join(directory, name), encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        if missing is not None:
            return missing
        raise ArchiveError(path, member, "is missing") from None
    except (OSError, ValueError) as exc:
        raise ArchiveError(path, member, f"is not valid JSON ({exc})") from exc
    if not isinstance(data, kind):
        raise ArchiveError(path, member, f"is not a JSON {kind.__name__}")
    return data


def _remove_unpacked(directory: str) -> None:
    """Remove what an import unpacked (only regular files and three directories: nothing was mounted)."""
    for sub in (*(os.path.join(directory, d) for d in sorted(_DIRS)), directory):
        try:
            names = os.listdir(sub)
        except FileNotFoundError:
            continue
        for n in names:
            p = os.path.join(sub, n)
            if not (os.path.isdir(p) and not os.path.islink(p)):
                os.unlink(p)
        if sub != directory:
            os.rmdir(sub)
    os.rmdir(directory)
