"""``inspect``, ``inspect memory`` and ``diff``: read a checkpoint in-process (runtime.inspect).

``inspect [--json] [--ps-tree] [--files] [--sockets] [--mounts] [--memory]
[--net] [--stats] [--all] SOURCE`` prints a tree (or one JSON document,
docs/inspect.md). ``inspect memory SOURCE --pid P [--search S | --regex RE]
[--dump ADDR:LEN]`` searches or dumps a process's memory. ``diff A B`` says
what changed between two checkpoints. SOURCE: an image directory, an export
archive, ``oci:DIR:TAG`` / ``oci-archive:FILE:TAG``, or a container id. None
of them needs root beyond being allowed to read the files.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

__all__ = ["register"]

_SECTIONS = ("files", "sockets", "mounts", "memory", "net", "stats")
_SOURCE_HELP = ("an image directory, an export archive, oci:DIR[:TAG], oci-archive:FILE[:TAG], "
                "or a container id (its newest checkpoint)")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "inspect", help="show what a checkpoint holds (processes, files, sockets, mounts, memory, network)",
        usage="criu-cr inspect [--json] [--ps-tree] [--files] [--sockets] [--mounts] [--memory] [--net] "
              "[--stats] [--all] SOURCE\n       criu-cr inspect memory SOURCE --pid PID "
              "[--search STRING | --regex RE] [--dump ADDR:LEN]",
        description="Show a checkpoint as a tree (as checkpointctl does), read in-process without unpacking "
                    "it. The tree reads no page data but each process's command line (a few pages). "
                    f"SOURCE: {_SOURCE_HELP}. `inspect memory` searches or dumps a process's memory.")
    p.add_argument("--json", action="store_true", help="one JSON document (docs/inspect.md)")
    p.add_argument("--ps-tree", action="store_true",
                   help="each process's environment, cwd, root, credentials and namespaces")
    p.add_argument("--files", action="store_true", help="open files per fd")
    p.add_argument("--sockets", action="store_true", help="sockets: TCP 4-tuple, state, queued bytes; unix peers")
    p.add_argument("--mounts", action="store_true", help="mounts, with the keys of external ones")
    p.add_argument("--memory", action="store_true", help="memory per process: mappings, dumped bytes")
    p.add_argument("--net", action="store_true", help="interfaces and addresses")
    p.add_argument("--stats", action="store_true", help="CRIU's dump statistics")
    p.add_argument("--all", action="store_true", help="everything above")
    g = p.add_argument_group("inspect memory")
    g.add_argument("--pid", type=int, help="the process whose memory to read")
    g.add_argument("--search", metavar="STRING", help="find STRING (its UTF-8 bytes)")
    g.add_argument("--regex", metavar="RE", help="find matches of a Python regular expression (bytes)")
    g.add_argument("--dump", metavar="ADDR:LEN", help="hex dump LEN bytes at ADDR (0x... or decimal)")
    g.add_argument("--limit", type=int, default=0, help="stop after this many matches (default: all)")
    p.add_argument("target", nargs="+", metavar="SOURCE", help=_SOURCE_HELP)
    p.set_defaults(func=_inspect, needs_root=False)

    p = subparsers.add_parser("diff", help="what changed between two checkpoints of one container",
                              description="Compare two checkpoints (each a SOURCE as for inspect): processes "
                                          "that came or went, file descriptors, socket states, memory per mapping.")
    p.add_argument("--json", action="store_true", help="one JSON document (docs/inspect.md)")
    p.add_argument("a", metavar="A", help="the earlier checkpoint")
    p.add_argument("b", metavar="B", help="the later checkpoint")
    p.set_defaults(func=_diff, needs_root=False)


def _inspect(args: argparse.Namespace) -> int:
    if args.target[0] == "memory" and len(args.target) == 2:
        return _memory(args, args.target[1])
    if len(args.target) != 1:
        raise ValueError("inspect takes one SOURCE (or: inspect memory SOURCE --pid PID ...)")
    if args.pid is not None or args.search or args.regex or args.dump:
        raise ValueError("--pid, --search, --regex and --dump belong to `inspect memory SOURCE`")
    from runtime.inspect.collect import Sections, collect
    from runtime.inspect.sources import open_source

    if args.all:
        sections = Sections.everything()
    else:
        sections = Sections(details=args.ps_tree, **{name: getattr(args, name) for name in _SECTIONS})
    with open_source(args.target[0], root=args.root) as src:
        report = collect(src, sections)
    if args.json:
        from runtime.inspect.jsondoc import document

        json.dump(document(report), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        from runtime.inspect.render import render

        sys.stdout.write(render(report, details=sections.details, vmas=sections.memory))
    return 0


def _memory(args: argparse.Namespace, source: str) -> int:
    from criu_image import Checkpoint, MissingImage

    from runtime.errors import InspectError
    from runtime.inspect import memsearch
    from runtime.inspect.collect import vma_backing
    from runtime.inspect.sources import open_source

    if args.pid is None:
        raise ValueError("inspect memory needs --pid PID")
    if args.search is not None and args.regex is not None:
        raise ValueError("give --search or --regex, not both")
    print(memsearch.WARNING, file=sys.stderr)
    with open_source(source, root=args.root) as src:
        ck = Checkpoint(src)
        try:
            mem = ck.memory(args.pid)
        except MissingImage:
            pids = ", ".join(str(p.pid) for p in ck.processes)
            raise InspectError(source, f"has no memory of process {args.pid}", hint=f"its processes: {pids}") from None
        files = ck.files()

        def label(addr: int) -> str:
            v = mem.vma_at(addr)
            return f"{v.start:#x}-{v.end:#x} {vma_backing(v, files) or '[anon]'}" if v is not None else "?"

        if args.search is not None or args.regex is not None:
            pattern, window = memsearch.compile_pattern(string=args.search, regex=args.regex)
            started, count = time.monotonic(), 0
            for hit in memsearch.search(mem, pattern, window, label, limit=args.limit):
                count += 1
                print(f"{hit.address:#018x}  {hit.pages_file}+{hit.pages_offset:#x}  in {hit.vma}  "
                      f"{memsearch.printable(hit.before)}[{memsearch.printable(hit.match)}]"
                      f"{memsearch.printable(hit.after)}")
            spent = time.monotonic() - started
            size = mem.dumped_bytes()
            print(f"criu-cr: {count} match{'es' if count != 1 else ''} in {size} bytes of dumped memory "
                  f"({spent:.3f} s, {size / spent / 1e9 if spent else 0:.2f} GB/s)", file=sys.stderr)
        if args.dump:
            addr, length = memsearch.parse_range(args.dump)
            sys.stdout.write(memsearch.hexdump(mem.read(addr, length), addr))
        if args.search is None and args.regex is None and not args.dump:
            for v in mem.vmas:
                print(f"{v.start:#014x}-{v.end:#014x}  {vma_backing(v, files) or '[anon]'}")
    return 0


def _diff(args: argparse.Namespace) -> int:
    from runtime.inspect.collect import Sections, collect
    from runtime.inspect.diff import diff_document, diff_reports, render_diff
    from runtime.inspect.sources import open_source

    sections = Sections(files=True, sockets=True, mounts=True, memory=True)
    reports = []
    for name in (args.a, args.b):
        with open_source(name, root=args.root) as src:
            reports.append(collect(src, sections))
    d = diff_reports(*reports)
    if args.json:
        json.dump(diff_document(d), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(render_diff(d))
    return 0
