"""The text view of ``criu-cr inspect``: a tree in checkpointctl's style, from a :class:`Report`. Pure."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from runtime.inspect.model import Fd, Memory, Mount, Network, Overview, Process, Report, Socket

__all__ = ["Node", "render", "draw", "human_bytes", "report_tree"]


@dataclass
class Node:
    label: str
    children: list["Node"] = field(default_factory=list)

    def add(self, label: str, children: Iterable["Node"] = ()) -> "Node":
        node = Node(label, list(children))
        self.children.append(node)
        return node


def draw(root: Node) -> str:
    """``root`` and its descendants as lines joined by box-drawing characters."""
    lines = [root.label]

    def walk(node: Node, prefix: str) -> None:
        for i, child in enumerate(node.children):
            last = i == len(node.children) - 1
            lines.append(f"{prefix}{'└── ' if last else '├── '}{child.label}")
            walk(child, prefix + ("    " if last else "│   "))

    walk(root, "")
    return "\n".join(lines) + "\n"


def human_bytes(n: int | None) -> str:
    if n is None:
        return "?"
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{int(size)} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"  # pragma: no cover


def _us(n: int) -> str:
    return f"{n} µs" if n < 1000 else f"{n / 1000:.3f} ms" if n < 1_000_000 else f"{n / 1e6:.3f} s"


_STAT_LABELS = {"freezing_time": ("Freezing time", _us), "frozen_time": ("Frozen time", _us),
                "memdump_time": ("Memdump time", _us), "memwrite_time": ("Memwrite time", _us),
                "pages_scanned": ("Pages scanned", str), "pages_written": ("Pages written", str),
                "pages_skipped_parent": ("Pages skipped (in parent)", str), "pages_lazy": ("Pages lazy", str),
                "irmap_resolve": ("Inotify path resolving", _us), "page_pipes": ("Page pipes", str),
                "page_pipe_bufs": ("Page pipe buffers", str), "shpages_scanned": ("Shared pages scanned", str),
                "shpages_skipped_parent": ("Shared pages skipped (in parent)", str),
                "shpages_written": ("Shared pages written", str)}


def _overview(root: Node, o: Overview) -> None:
    ctr = root.add("Container")
    for label, value in (("ID", o.container_id), ("Name", o.name if o.name != o.container_id else ""),
                         ("Engine", o.engine), ("Image", o.image), ("Created", o.created),
                         ("Checkpointed", o.checkpointed)):
        if value:
            ctr.add(f"{label}: {value}")
    ck = root.add("Checkpoint")
    if o.sizes:
        size = ck.add(f"Size: {human_bytes(o.sizes.total)}")
        size.add(f"Memory pages: {human_bytes(o.sizes.pages)}")
        if o.sizes.rootfs_diff is not None:
            size.add(f"Root FS diff: {human_bytes(o.sizes.rootfs_diff)}")
    if o.criu_image_version is not None:
        ck.add(f"CRIU image version: {o.criu_image_version}")
    if o.network_lock:
        ck.add(f"Network lock: {o.network_lock}")
    if o.tcp:
        ck.add("TCP: " + ("established connections dumped" if o.tcp == "established" else "connections not kept"))
    if o.leave_running is not None:
        ck.add(f"Left running: {'yes' if o.leave_running else 'no'}")
    if o.file_locks:
        ck.add("File locks: dumped")
    if o.joined_namespaces:
        ns = ck.add("Joined namespaces")
        for kind, path in sorted(o.joined_namespaces.items()):
            ns.add(f"{kind}: {path}")


def _socket_label(s: Socket) -> str:
    if s.family in ("inet", "inet6"):
        queues = ""
        if s.send_queue is not None or s.recv_queue is not None:
            queues = f" (send queue {s.send_queue or 0} B, recv queue {s.recv_queue or 0} B)"
        remote = f" -> {s.remote}" if s.remote else ""
        return f"[{s.proto.upper()} {s.state}] {s.local}{remote}{queues}"
    if s.family == "unix":
        peer = f" -> {s.peer}" if s.peer else f" -> ino {s.peer_inode}" if s.peer_inode else ""
        return f"[UNIX {s.proto} {s.state}] {s.local or '(unnamed)'}{peer}"
    return f"[{s.family.upper()} {s.proto}] {s.local}"


def _fd_label(f: Fd) -> str:
    name = {-1: "cwd", -2: "root", -3: "exe"}.get(f.fd, str(f.fd))
    return f"[{f.kind} {name}] {f.target}"


def _memory(node: Node, m: Memory, vmas: bool) -> None:
    mem = node.add(f"Memory: {human_bytes(m.size)} mapped ({human_bytes(m.private)} private, "
                   f"{human_bytes(m.shared)} shared), {human_bytes(m.dumped)} dumped, {human_bytes(m.not_dumped)} "
                   "not dumped (file pages, zero or never touched)")
    if not vmas:
        return
    for v in m.vmas:
        backing = v.backing + (f" + {v.offset:#x}" if v.offset else "")
        mem.add(f"{v.start:012x}-{v.end:012x} {v.prot}{'s' if v.shared else 'p'} {human_bytes(v.size):>10} "
                f"dumped {human_bytes(v.dumped):>10}  {backing}".rstrip())


def _process(node: Node, p: Process, children: dict[int, list[Process]], details: bool, vmas: bool) -> None:
    cmd = " ".join(p.cmdline) if p.cmdline else p.comm
    me = node.add(f"[{p.pid}] {cmd}")
    if details:
        if p.state and p.state != "alive":
            me.add(f"State: {p.state}")
        if len(p.threads) > 1:
            me.add(f"Threads: {', '.join(map(str, p.threads))}")
        me.add(f"cwd: {p.cwd or '?'}  root: {p.root or '?'}")
        if p.creds:
            c = p.creds
            line = f"Credentials: uid {c.uid} gid {c.gid} euid {c.euid} egid {c.egid}"
            if c.groups:
                line += f" groups {','.join(map(str, c.groups))}"
            if c.cap_eff is not None:
                line += f" caps {c.cap_eff:#x}"
            if c.seccomp:
                line += f" seccomp {c.seccomp}"
            me.add(line)
        if p.namespaces:
            me.add("Namespaces: " + " ".join(f"{k}:{v}" for k, v in sorted(p.namespaces.items())))
        if p.environ:
            env = me.add("Environment")
            for e in p.environ:
                env.add(e)
    if p.fds is not None:
        files = me.add("Open files")
        for f in p.fds:
            files.add(_fd_label(f))
    if p.sockets:
        socks = me.add("Open sockets")
        for s in p.sockets:
            socks.add(f"fd {s.fd}: {_socket_label(s)}")
    if p.memory is not None:
        _memory(me, p.memory, vmas)
    for child in children.get(p.pid, []):
        _process(me, child, children, details, vmas)


def _mounts(root: Node, mounts: tuple[Mount, ...]) -> None:
    node = root.add("Mounts" if mounts else "Mounts: none dumped (no mount namespace of its own)")
    for m in mounts:
        ext = f" (external, key {m.external})" if m.external else ""
        node.add(f"{m.mountpoint}: {m.fstype} from {m.source or '-'}{ext}")


def _network(root: Node, n: Network) -> None:
    node = root.add(f"Network ({n.origin or 'not recorded'})")
    if n.netns:
        node.add(f"Namespace: {n.netns}")
    for i in n.interfaces:
        state = "up" if i.up else "down"
        iface = node.add(f"{i.name} ({i.kind}, {state}{', mtu ' + str(i.mtu) if i.mtu else ''})")
        if i.mac:
            iface.add(f"MAC: {i.mac}")
        for a in i.addresses:
            iface.add(f"Address: {a}")
        if i.peer:
            iface.add(f"Peer: {i.peer}")
    for r in n.routes:
        node.add(f"Route: {r}")


def report_tree(report: Report, *, details: bool = False, vmas: bool = False) -> Node:
    """The tree of ``report``; ``details``: each process's environment, cwd, creds, namespaces;
    ``vmas``: each mapping under a process's memory line."""
    o = report.overview
    root = Node(f"Checkpoint {o.source} ({o.source_kind})")
    _overview(root, o)
    if report.stats:
        st = root.add("CRIU dump statistics")
        for key, value in report.stats.items():
            label, fmt = _STAT_LABELS.get(key, (key, str))
            st.add(f"{label}: {fmt(value)}")
    tree = root.add("Process tree")
    pids = {p.pid for p in report.processes}
    children: dict[int, list[Process]] = {}
    for p in report.processes:
        children.setdefault(p.ppid if p.ppid in pids else 0, []).append(p)
    for p in children.get(0, []):
        _process(tree, p, children, details, vmas)
    if report.mounts is not None:
        _mounts(root, report.mounts)
    if report.network is not None:
        _network(root, report.network)
    if report.notes:
        notes = root.add("Notes")
        for n in report.notes:
            notes.add(n)
    return root


def render(report: Report, *, details: bool = False, vmas: bool = False) -> str:
    return draw(report_tree(report, details=details, vmas=vmas))
