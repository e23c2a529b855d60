"""The inspected checkpoint as plain values: what the text tree, the JSON document and diff are made from.

Frozen, keyword-only dataclasses; no I/O. :mod:`runtime.inspect.collect`
builds them from CRIU's images, :mod:`runtime.inspect.ourmeta` adds what lies
beside them. Sizes are bytes, addresses ints; a field that a checkpoint does
not record is ``None`` (not read) or empty (read: there is none).
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Creds", "Fd", "Socket", "Vma", "Memory", "Process", "Mount", "Interface", "Network", "Sizes",
           "Overview", "Report", "PAGE"]

PAGE = 4096


@dataclass(frozen=True, kw_only=True)
class Creds:
    uid: int
    gid: int
    euid: int
    egid: int
    groups: tuple[int, ...] = ()
    cap_eff: int | None = None  # the effective capability mask (bit n: capability n)
    no_new_privs: bool | None = None
    seccomp: str = ""  # "disabled", "strict", "filter", "" (not recorded)


@dataclass(frozen=True, kw_only=True)
class Fd:
    """An open file descriptor: ``kind`` is CRIU's file type (REG, PIPE, INETSK, UNIXSK, TTY, EVENTFD...),
    ``target`` what it is open on (a path, ``pipe:[inode]``, a socket's one-line description)."""

    fd: int
    kind: str
    target: str
    flags: int = 0
    pos: int | None = None  # a regular file's offset


@dataclass(frozen=True, kw_only=True)
class Socket:
    """A socket a process holds. ``family``: inet, inet6, unix, packet, netlink; ``proto``: tcp, udp,
    stream, dgram, seqpacket (unix); addresses ``ip:port`` ([ip6]:port) or a unix path (``@name``:
    abstract). Queue bytes come from the dumped TCP stream (None: not dumped, e.g. a listener)."""

    fd: int
    family: str
    proto: str
    state: str
    inode: int
    local: str = ""
    remote: str = ""
    send_queue: int | None = None
    recv_queue: int | None = None
    unsent: int | None = None
    peer_inode: int | None = None  # unix: the inode of the other end
    peer: str = ""  # unix: the other end's name (or "pid N fd M" when it is in the checkpoint)


@dataclass(frozen=True, kw_only=True)
class Vma:
    """A mapping. ``backing``: a path, ``[heap]``, ``[stack]``, ``[vdso]``, ``[vvar]``, ``[vsyscall]``,
    ``shmem``, ``sysvipc`` or "" (anonymous). Bytes: ``dumped`` (in pages-*.img), ``lazy`` (left for
    lazy-pages), ``parent`` (in a parent checkpoint), the rest never touched or zero."""

    start: int
    end: int
    prot: str  # "rwx" / "r--"...
    shared: bool
    backing: str
    offset: int = 0  # in the backing file
    dumped: int = 0
    lazy: int = 0
    parent: int = 0

    @property
    def size(self) -> int:
        return self.end - self.start

    @property
    def not_dumped(self) -> int:
        return max(0, self.size - self.dumped - self.lazy - self.parent)


@dataclass(frozen=True, kw_only=True)
class Memory:
    vmas: tuple[Vma, ...]
    exe: str = ""

    @property
    def size(self) -> int:
        return sum(v.size for v in self.vmas)

    @property
    def dumped(self) -> int:
        return sum(v.dumped for v in self.vmas)

    @property
    def shared(self) -> int:
        return sum(v.size for v in self.vmas if v.shared)

    @property
    def private(self) -> int:
        return sum(v.size for v in self.vmas if not v.shared)

    @property
    def not_dumped(self) -> int:
        """Mapped but not dumped: file pages CRIU leaves to the file, zero or never-touched memory."""
        return sum(v.not_dumped for v in self.vmas)


@dataclass(frozen=True, kw_only=True)
class Process:
    pid: int
    ppid: int
    pgid: int
    sid: int
    comm: str
    threads: tuple[int, ...] = ()
    state: str = ""  # "alive", "dead", "stopped", "zombie"...
    cmdline: tuple[str, ...] | None = None  # from memory (None: the pages were not read or not there)
    environ: tuple[str, ...] | None = None
    cwd: str = ""
    root: str = ""
    creds: Creds | None = None
    namespaces: dict[str, int] = field(default_factory=dict)  # type -> CRIU's namespace id
    fds: tuple[Fd, ...] | None = None  # None: not read (the section was not asked for)
    sockets: tuple[Socket, ...] | None = None
    memory: Memory | None = None


@dataclass(frozen=True, kw_only=True)
class Mount:
    mnt_id: int
    parent_id: int
    mountpoint: str
    fstype: str
    source: str
    root: str = "/"
    external: str | None = None  # the key an external mount was dumped with
    options: str = ""
    shared_id: int = 0
    master_id: int = 0


@dataclass(frozen=True, kw_only=True)
class Interface:
    name: str
    kind: str
    mac: str = ""
    mtu: int = 0
    up: bool = False
    addresses: tuple[str, ...] = ()
    peer: str = ""  # a veth's other end, when recorded


@dataclass(frozen=True, kw_only=True)
class Network:
    """``origin``: "netns image" (CRIU dumped the namespace), "network.status" (criu-cr's record of the
    pre-created namespace it joined), or "" (neither)."""

    origin: str
    netns: str = ""
    interfaces: tuple[Interface, ...] = ()
    routes: tuple[str, ...] = ()  # "10.0.0.0/24 dev eth0", "default via 10.0.0.1 dev eth0" (netns images only)


@dataclass(frozen=True, kw_only=True)
class Sizes:
    total: int  # every file of the checkpoint
    pages: int  # pages-*.img
    rootfs_diff: int | None = None


@dataclass(frozen=True, kw_only=True)
class Overview:
    """The checkpoint as a whole: where it came from, who made it, how."""

    source_kind: str
    source: str
    engine: str = ""
    container_id: str = ""
    name: str = ""
    image: str = ""
    created: str = ""
    checkpointed: str = ""
    criu_image_version: int | None = None
    network_lock: str = ""
    tcp: str = ""
    leave_running: bool | None = None
    file_locks: bool | None = None
    joined_namespaces: dict[str, str] = field(default_factory=dict)
    sizes: Sizes | None = None


@dataclass(frozen=True, kw_only=True)
class Report:
    """Everything ``inspect`` shows; sections not asked for are None (not read)."""

    overview: Overview
    processes: tuple[Process, ...]
    mounts: tuple[Mount, ...] | None = None
    network: Network | None = None
    stats: dict[str, int] | None = None
    notes: tuple[str, ...] = ()

    def process(self, pid: int) -> Process | None:
        return next((p for p in self.processes if p.pid == pid), None)
