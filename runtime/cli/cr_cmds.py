"""Container checkpoint and restore commands, with podman's flag names.

``checkpoint`` prints the image directory (or, with ``--print-stats``, JSON
statistics shaped like podman's). ``restore`` prints the restored init's pid
(or the statistics). ``restore --image-path DIR ID`` with an ID that does not
exist makes container ID from the checkpoint (from ``--bundle``, default the
checkpointed container's bundle) -- the way to make a copy of a container
checkpointed with ``--leave-running``, or to bring one back after delete.
``checkpoint --export FILE`` also writes the checkpoint as one archive in
podman's layout, ``--create-image oci:DIR[:TAG]`` as an OCI image (for
Kubernetes); ``restore --import FILE|oci:DIR[:TAG]`` makes a new container
from one (on this or another machine; see runtime.cr.portable, runtime.cr.ociimage).

This module holds the parsers and what the handlers share; each command's
handler is in its own module (``checkpoint_cmd``, ``restore_cmd``, and
``import_cmd`` for ``restore --import``), imported only when it runs.
"""

from __future__ import annotations

import argparse
import contextlib
import json
from collections.abc import Iterator
from typing import Any

from runtime.cli.handlers import Handler
from runtime.cli.output import Result
from runtime.cli.progress import progress_for

__all__ = ["register", "stats_json", "result_json", "print_result", "progress"]


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("checkpoint", help="checkpoint a running container",
                              description="Checkpoint a running container with CRIU (over RPC).")
    p.add_argument("id", nargs="?", help="container id")
    _batch_flags(p)
    p.add_argument("--image-path", help="where to write the checkpoint (default: <state>/<id>/checkpoint)")
    p.add_argument("-e", "--export", metavar="FILE",
                   help="also write the checkpoint as one archive (podman's layout, readable by checkpointctl)")
    p.add_argument("--create-image", metavar="oci:DIR[:TAG]",
                   help="also write the checkpoint as an OCI image for Kubernetes/CRI-O "
                        "(oci:DIR[:TAG] or oci-archive:FILE[:TAG], as skopeo names them)")
    p.add_argument("-c", "--compress", choices=("zstd", "gzip", "none"), default="zstd",
                   help="compression of the --export archive and the --create-image layer (default: zstd)")
    p.add_argument("-R", "--leave-running", action="store_true", help="leave the container running")
    p.add_argument("--tcp-skip-in-flight", action="store_true", default=None,
                   help="drop connections the container has not accepted yet instead of failing "
                        "(the default with --leave-running, where the container keeps them)")
    _common(p, "checkpoint")
    p.set_defaults(func=Handler("checkpoint_cmd:run", when=_batch("checkpoint")))

    p = subparsers.add_parser("restore", help="restore a checkpointed container",
                              description="Restore a checkpointed container with CRIU (over RPC).")
    p.add_argument("id", nargs="?", help="container id (with --import: the new container's, as --name)")
    _batch_flags(p)
    p.add_argument("--image-path", help="the checkpoint to restore (default: the container's last one)")
    p.add_argument("-i", "--import", dest="import_", metavar="FILE",
                   help="restore a new container from a checkpoint archive (checkpoint --export) "
                        "or image (oci:DIR[:TAG], oci-archive:FILE[:TAG]: checkpoint --create-image)")
    p.add_argument("-n", "--name", help="with --import: the new container's id (default: the archive's)")
    p.add_argument("--netns", metavar="PATH",
                   help="restore into this pre-created network namespace instead of the checkpointed one")
    p.add_argument("--rootfs", metavar="DIR",
                   help="with --import: the root filesystem, when the archive's is not on this machine")
    p.add_argument("--import-limit", type=_size, metavar="SIZE",
                   help="with --import: the most the archive may unpack to (default 64G; K/M/G/T suffixes)")
    p.add_argument("-b", "--bundle", help="bundle for a new container (default: the checkpointed one's)")
    p.add_argument("--tcp-close", action="store_true", help="restore established TCP connections closed")
    p.add_argument("--no-verify", dest="verify", action="store_false",
                   help="do not check the images against the checkpoint's manifest before CRIU reads them")
    p.add_argument("--lazy", action="store_true",
                   help="run the container before its memory is back: CRIU's lazy-pages daemon fills it in "
                        "from the checkpoint while it runs (the command returns once all of it is in)")
    _common(p, "restore")
    p.set_defaults(func=Handler("restore_cmd:run", when={**_batch("restore"), "import_": "import_cmd:run"}))


def _batch(verb: str) -> dict[str, str]:
    """--all or further ids take the batch handler (batch_cmds)."""
    return {"all": f"batch_cmds:{verb}", "more_ids": f"batch_cmds:{verb}"}


def _batch_flags(p: argparse.ArgumentParser) -> None:
    """--all, --parallel and further ids for a checkpoint/restore parser."""
    p.add_argument("more_ids", nargs="*", metavar="ID...", help="further containers (done in parallel)")
    p.add_argument("-a", "--all", action="store_true",
                   help="every running container (checkpoint) / every checkpointed one (restore)")
    p.add_argument("--parallel", type=_positive, metavar="N",
                   help="with --all or several ids: at most N at a time (default: twice the number of cores)")


def _positive(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"not a positive number: {text!r}")
    return n


def _size(text: str) -> int:
    """``"64G"`` -> bytes (K, M, G, T: powers of 1024)."""
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    t = text.strip().upper().removesuffix("B")
    try:
        if t and t[-1] in units:
            return int(float(t[:-1]) * units[t[-1]])
        return int(t)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 128G)") from None


def _common(p: argparse.ArgumentParser, verb: str) -> None:
    """The flags checkpoint and restore share (podman's names)."""
    p.add_argument("--tcp-established", action="store_true", help=f"{verb} established TCP connections")
    p.add_argument("--file-locks", action="store_true", help=f"{verb} file locks")
    p.add_argument("-k", "--keep", action="store_true", help="keep CRIU's log and statistics files")
    p.add_argument("--print-stats", action="store_true",
                   help="print statistics as JSON (podman's shape; with --format json: under \"statistics\")")
    p.add_argument("-q", "--quiet", action="store_true",
                   help="no progress line for --export/--import (it is shown only when stderr is a terminal)")
    p.add_argument("--network-lock", choices=("iptables", "nftables", "skip"),
                   help="CRIU's network-lock method (default: nftables if CRIU supports it, else iptables; "
                        "a restore uses the checkpoint's)")


def stats_json(kind: str, result: Any) -> dict[str, Any]:
    """Statistics in podman's shape: total duration, and per container CRIU's figures."""
    return {
        f"criu_cr_{kind}_duration": result.duration_us,
        "container_statistics": [{
            "id": result.container_id,
            f"runtime_{kind}_duration": result.duration_us,
            "criu_statistics": dict(result.stats),
        }],
    }


def result_json(kind: str, result: Any) -> dict[str, Any]:
    """A checkpoint's or restore's result for ``--format json`` (docs/schemas/checkpoint.json, restore.json)."""
    out: dict[str, Any] = {"id": result.container_id}
    if kind == "restore":
        out["pid"] = result.pid
    out.update(image_dir=result.image_dir, log_path=result.log_path, duration_us=result.duration_us,
               criu_duration_us=result.criu_duration_us, criu_statistics=dict(result.stats))
    if kind == "checkpoint":
        out.update(archive=result.archive, image=result.image)
    return out


@contextlib.contextmanager
def progress(args: argparse.Namespace, label: str, wanted: object) -> Iterator[Any]:
    """A progress line on stderr for an export/import (``wanted``), when stderr is a terminal and
    not --quiet; the line is ended (newline) however the command ends."""
    # JSON mode keeps stderr to JSON lines: no progress line there
    line = progress_for(label, quiet=args.quiet or args.format == "json") if wanted else None
    try:
        yield line
    finally:
        if line is not None:
            line.close()


def print_result(args: argparse.Namespace, kind: str, res: Any, plain: object) -> Result:
    """Text: --print-stats: podman-shaped JSON; else one line (the image dir, or the restored pid)."""
    data = result_json(kind, res)
    if args.print_stats:
        data["statistics"] = stats_json(kind, res)
        return Result(data=data, text=json.dumps(data["statistics"], indent=2))
    return Result(data=data, text=str(plain))
