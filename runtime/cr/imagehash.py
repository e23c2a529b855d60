"""How a checkpoint's files are hashed for its manifest (runtime.cr.manifest): fast, and while CRIU writes.

XXH3-128 (the ``xxhash`` library) over 64 MiB chunks: a file's hash is the
XXH3-128 of its chunks' 16-byte hashes, so chunks can be hashed on several
threads (reads and XXH3 release the GIL) and the result does not depend on
how many. :class:`Follower` hashes CRIU's pages images as CRIU appends to
them during the dump, so that only their last bytes are left afterwards.
"""

from __future__ import annotations

import os
import stat
import threading
from typing import Any, Callable, TypeVar

import xxhash

__all__ = ["CHUNK", "ALGORITHM", "PAGES_PREFIX", "file_digests", "Follower", "follow"]

CHUNK = 64 << 20
ALGORITHM = "xxh3-128-chunks-64MiB"  # the manifest's name for this way of hashing (CHUNK included)
_BUFFER = 1 << 20  # per read: fits the cache the hash then reads it from
_MAX_THREADS = 4
T = TypeVar("T")
R = TypeVar("R")


def file_digests(image_dir: str, names: list[str], *, threads: int | None = None) -> dict[str, str]:
    """The hash (hex) of each of ``names`` in ``image_dir``. Raises OSError."""
    threads = threads or min(_MAX_THREADS, os.cpu_count() or 1)
    fds: dict[str, int] = {}
    try:
        tasks = []
        for name in names:
            fd = os.open(os.path.join(image_dir, name), os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
            fds[name] = fd
            size = os.fstat(fd).st_size
            tasks += [(name, off) for off in range(0, size, CHUNK)]

        def chunk(task: tuple[str, int]) -> bytes:
            name, off = task
            return _chunk_digest(fds[name], off)

        digests = _map(chunk, tasks, threads)
    finally:
        for fd in fds.values():
            os.close(fd)
    parts: dict[str, list[bytes]] = {name: [] for name in names}
    for (name, _), d in zip(tasks, digests):
        parts[name].append(d)
    return {name: xxhash.xxh3_128(b"".join(p)).hexdigest() for name, p in parts.items()}


def _map(fn: Callable[[T], R], items: list[T], threads: int) -> list[R]:
    """``[fn(i) for i in items]`` on up to ``threads`` threads; the first error is raised.

    (Plain threads: concurrent.futures would add ~5 ms of imports to every command.)
    """
    if threads <= 1 or len(items) <= 1:
        return [fn(i) for i in items]
    results: list[Any] = [None] * len(items)
    todo = iter(enumerate(items))
    lock = threading.Lock()
    errors: list[BaseException] = []

    def work() -> None:
        while not errors:
            with lock:
                nxt = next(todo, None)
            if nxt is None:
                return
            try:
                results[nxt[0]] = fn(nxt[1])
            except BaseException as exc:  # noqa: BLE001 - re-raised by the caller's thread
                errors.append(exc)

    workers = [threading.Thread(target=work, name="criu-cr-hash", daemon=True)
               for _ in range(min(threads, len(items)))]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    if errors:
        raise errors[0]
    return results


def _chunk_digest(fd: int, offset: int) -> bytes:
    h = xxhash.xxh3_128()
    buf = bytearray(_BUFFER)
    view = memoryview(buf)
    end = offset + CHUNK
    while offset < end:
        n = os.preadv(fd, [view[:min(_BUFFER, end - offset)]], offset)
        if n == 0:
            break
        h.update(view[:n])
        offset += n
    return h.digest()


# -- the pages, hashed while CRIU writes them ------------------------------------------
# CRIU writes a big container's memory during the dump, while the tree is frozen
# (measured at 1 GiB: ~440 ms of CRIU's ~700 ms frozen time), by splicing page
# pipes onto the end of pages-N.img. A thread that follows those files as they
# grow reads each block just after CRIU wrote it, so once the dump returns only
# the last bytes and the small images are left to hash.

PAGES_PREFIX = "pages-"  # CRIU's pages-N.img: appended to, in order
_POLL = 0.002  # seconds between looks at files that did not grow


class _Stream:
    """One file hashed from its start as it grows, chunk by chunk (as :func:`file_digests` does)."""

    __slots__ = ("fd", "ino", "offset", "chunk", "digests")

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.ino = os.fstat(fd).st_ino
        self.offset = 0
        self.chunk = xxhash.xxh3_128()
        self.digests: list[bytes] = []

    def advance(self, view: memoryview) -> bool:
        """Hash what was appended since the last call; True if there was something."""
        size = os.fstat(self.fd).st_size
        start = self.offset
        while self.offset < size:
            room = CHUNK - self.offset % CHUNK
            n = os.preadv(self.fd, [view[:min(len(view), room, size - self.offset)]], self.offset)
            if n == 0:
                break
            self.chunk.update(view[:n])
            self.offset += n
            if self.offset % CHUNK == 0:
                self.digests.append(self.chunk.digest())
                self.chunk = xxhash.xxh3_128()
        return self.offset > start

    def digest(self) -> str:
        tail = [self.chunk.digest()] if self.offset % CHUNK else []
        return xxhash.xxh3_128(b"".join(self.digests + tail)).hexdigest()


class Follower:
    """A thread hashing ``image_dir``'s pages-*.img as CRIU appends to them.

    :meth:`stop` it when CRIU is done (or failed); :func:`build_manifest`
    then finishes what it followed. Any trouble (a file replaced, an error
    in the thread) only means that file is hashed again whole.
    """

    def __init__(self, image_dir: str, *, poll: float = _POLL) -> None:
        self.image_dir = image_dir
        self._poll = poll
        self._streams: dict[str, _Stream] = {}
        self._failed = False
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="criu-cr-pages-hash", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        view = memoryview(bytearray(_BUFFER))
        try:
            while not self._stopping.is_set():
                with os.scandir(self.image_dir) as it:
                    for entry in it:
                        if entry.name.startswith(PAGES_PREFIX) and entry.name not in self._streams:
                            self._streams[entry.name] = _Stream(
                                os.open(entry.path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW))
                grew = [s.advance(view) for s in self._streams.values()]
                if not any(grew):
                    self._stopping.wait(self._poll)
        except OSError:
            self._failed = True

    def stop(self) -> None:
        """End the thread (idempotent); the files stay open for :meth:`finish`."""
        self._stopping.set()
        self._thread.join()

    def finish(self, found: dict[str, os.stat_result]) -> dict[str, str]:
        """Hash the rest of each followed file that is still the one in ``found``; closes them.

        Returns name -> hash (hex). Raises OSError.
        """
        self.stop()
        out: dict[str, str] = {}
        view = memoryview(bytearray(_BUFFER))
        try:
            for name, stream in self._streams.items():
                st = found.get(name)
                if self._failed or st is None or st.st_ino != stream.ino or not stat.S_ISREG(st.st_mode):
                    continue
                stream.advance(view)
                if stream.offset == st.st_size:
                    out[name] = stream.digest()
        finally:
            self.close()
        return out

    def __enter__(self) -> "Follower":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop and close the files (idempotent)."""
        self.stop()
        for stream in self._streams.values():
            os.close(stream.fd)
        self._streams.clear()


def follow(image_dir: str) -> Follower:
    """Start hashing ``image_dir``'s pages-*.img as they are written (before CRIU's dump)."""
    return Follower(image_dir)
