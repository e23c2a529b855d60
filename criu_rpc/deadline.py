"""How long to give CRIU: a deadline scaled to the size of the images.

A fixed timeout is wrong both ways: 300 s lets a CRIU that loops on a
truncated ``pages-*.img`` write 15 GB of log, and is too short for a large
container on a slow disk.  :func:`deadline_for` gives ``base`` seconds for
the fixed costs plus the images' size at a deliberately conservative
``rate``:

* ``DEADLINE_BASE`` = 60 s: a restore of the small reference container
  takes ~0.3 s here, a dump ~0.3 s; the base absorbs notify hooks, mounts,
  network setup and a loaded machine, a 200-fold margin on the fixed part.
* ``DEADLINE_RATE`` = 50 MB/s.  Measured here with one process holding
  1 GiB of touched memory (1.08 GB of images, on the VM's disk): a dump
  took 0.8-4.6 s (230-1350 MB/s), a restore 0.7-1.1 s from the page cache
  (1.0-1.6 GB/s) and 3.1 s with the images evicted from it (350 MB/s);
  first touch of memory runs at ~0.3 GB/s in these VMs.  50 MB/s is about
  a sixth of the slowest of those, room for a busy host or a slower disk,
  while a 1 GiB restore still gets under 82 s and a 10 GiB one under 5 min.
  (A CRIU looping at log level 4 writes ~30-50 MB/s of log until then.)

For a dump the images do not exist yet: pass the tree's memory (e.g. the
cgroup's ``memory.current``) as ``size``.
"""

from __future__ import annotations

import os

__all__ = ["DEADLINE_BASE", "DEADLINE_RATE", "deadline_for", "images_size"]

#: Seconds every request gets whatever its size.
DEADLINE_BASE = 60.0
#: Bytes per second CRIU is assumed to move at least.
DEADLINE_RATE = 50e6


def deadline_for(size: int | str | os.PathLike[str], *, base: float = DEADLINE_BASE,
                 rate: float = DEADLINE_RATE) -> float:
    """Seconds to give a CRIU request moving ``size`` bytes: ``base + size / rate``.

    ``size`` is a byte count, or an images directory whose size
    :func:`images_size` measures.  Raises ValueError for a negative size,
    a negative base or a rate that is not positive; OSError when a
    directory cannot be read.
    """
    nbytes = size if isinstance(size, int) else images_size(size)
    if nbytes < 0:
        raise ValueError(f"size must not be negative, not {nbytes}")
    if base < 0:
        raise ValueError(f"base must not be negative, not {base}")
    if not rate > 0:
        raise ValueError(f"rate must be positive bytes per second, not {rate}")
    return base + nbytes / rate


def images_size(images_dir: str | os.PathLike[str]) -> int:
    """Bytes in the regular files directly inside ``images_dir``.

    Symlinks are not followed (a ``parent`` link to pre-dump images is not
    counted: those pages are read only when the final dump's are missing),
    nor are subdirectories (CRIU's images are flat).  Raises OSError
    (naming the directory) when it cannot be listed.
    """
    total = 0
    with os.scandir(images_dir) as entries:
        for entry in entries:
            try:
                if entry.is_file(follow_symlinks=False):
                    total += entry.stat(follow_symlinks=False).st_size
            except FileNotFoundError:  # removed while we looked
                continue
    return total
