"""CRIU's images (through ``criu_image``) and what lies beside them -> a :class:`Report`.

Only the images a section needs are read: pstree, core, ids, fs and
files.img always; fdinfo for files and sockets; tcp-stream for the queues of
established connections; mm and pagemap for memory; mountpoints; the netns
images. Page data is read only for each process's command line (and, with
``details``, its environment): the few pages between ``mm_arg_start`` and
``mm_env_end``, as checkpointctl reads them. Nothing else of ``pages-*.img``.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any

from criu_image import Checkpoint, ImageError, MissingImage
from criu_image.memory import PE_LAZY, PE_PARENT, PE_PRESENT
from runtime.inspect import network as netview
from runtime.inspect.model import Creds, Fd, Memory, Mount, Overview, Process, Report, Sizes, Socket, Vma
from runtime.inspect.ourmeta import Metadata, read_metadata
from runtime.inspect.sockets import SOCKET_KINDS, describe, socket_of
from runtime.inspect.sources import Source

__all__ = ["Sections", "collect", "vma_backing", "ARGS_LIMIT"]

ARGS_LIMIT = 1 << 20  # at most this much of a command line or environment is read
_TASK_STATES = {1: "alive", 2: "dead", 3: "stopped", 4: "helper", 5: "thread", 6: "zombie"}
_SECCOMP = {0: "disabled", 1: "strict", 2: "filter"}
# CRIU's own numbering in inventory.img (not rpc.proto's); absent: CRIU's default, which a restore uses too
_NETWORK_LOCKS = {0: "iptables", 1: "nftables", 2: "skip"}
_NS_FIELDS = ("pid", "net", "ipc", "uts", "mnt", "user", "cgroup", "time")
# VMA status bits (criu/include/image.h)
_VMA_STACK, _VMA_VSYSCALL, _VMA_VDSO, _VMA_HEAP = 1 << 1, 1 << 2, 1 << 3, 1 << 5
_VMA_FILE_PRIVATE, _VMA_FILE_SHARED, _VMA_ANON_SHARED = 1 << 6, 1 << 7, 1 << 8
_VMA_SYSVIPC, _VMA_SOCKET, _VMA_VVAR, _VMA_AIORING, _VMA_MEMFD = 1 << 10, 1 << 11, 1 << 12, 1 << 13, 1 << 14
_MAP_SHARED, _MAP_GROWSDOWN = 0x01, 0x0100


@dataclass(frozen=True, kw_only=True)
class Sections:
    """What to read beside the process tree (each flag is a command-line option of the same name)."""

    details: bool = False  # environment, and the details shown under --ps-tree
    files: bool = False
    sockets: bool = False
    mounts: bool = False
    memory: bool = False
    net: bool = False
    stats: bool = False
    args: bool = True  # command lines from memory

    @classmethod
    def everything(cls) -> "Sections":
        return cls(details=True, files=True, sockets=True, mounts=True, memory=True, net=True, stats=True)


def _file_name(files: dict[int, Any], fid: int) -> str:
    f = files.get(fid)
    if f is not None and f.HasField("reg"):
        return f.reg.name
    return f"file {fid}" if fid else ""


def _fd_target(kind: str, file: Any, files: dict[int, Any], sock: Socket | None) -> str:
    if sock is not None:
        return describe(sock)
    if file is None:
        return f"{kind} (not in files.img)"
    if kind == "REG":
        return file.reg.name
    if kind == "PIPE":
        return f"pipe:[{file.pipe.pipe_id}]"
    if kind == "FIFO":
        return f"fifo:[{file.fifo.pipe_id}] {_file_name(files, file.fifo.regf_id)}".rstrip()
    if kind == "TTY":
        return f"tty (info {file.tty.tty_info_id})"
    if kind == "EVENTFD":
        return f"eventfd (counter {file.efd.counter})"
    if kind == "NS":
        return f"namespace {file.nsf.ns_id}"
    return f"{kind.lower()}:[{file.id}]"


def _creds(core: Any, ck: Checkpoint, pid: int) -> Creds | None:
    tc = core.thread_core if core.HasField("thread_core") else None
    cr = tc.creds if tc is not None and tc.HasField("creds") else None
    if cr is None:
        name = f"creds-{pid}.img"
        if not ck.src.exists(name):
            return None
        cr = ck.entries(name)[0]
    cap = sum(w << (32 * i) for i, w in enumerate(cr.cap_eff))
    return Creds(uid=cr.uid, gid=cr.gid, euid=cr.euid, egid=cr.egid, groups=tuple(cr.groups), cap_eff=cap,
                 no_new_privs=bool(cr.no_new_privs) if cr.HasField("no_new_privs") else None,
                 seccomp=_SECCOMP.get(tc.seccomp_mode, "") if tc is not None and tc.HasField("seccomp_mode") else "")


def vma_backing(vma: Any, files: dict[int, Any]) -> str:
    st = vma.status
    if st & _VMA_SYSVIPC:
        return "sysvipc"
    if st & _VMA_ANON_SHARED:
        return "shmem"
    if st & _VMA_SOCKET:
        return "packet socket"
    if st & _VMA_AIORING:
        return "[aio]"
    if st & (_VMA_FILE_PRIVATE | _VMA_FILE_SHARED | _VMA_MEMFD):
        return _file_name(files, vma.shmid) or "memfd"
    for bit, name in ((_VMA_STACK, "[stack]"), (_VMA_VSYSCALL, "[vsyscall]"), (_VMA_VDSO, "[vdso]"),
                      (_VMA_VVAR, "[vvar]"), (_VMA_HEAP, "[heap]")):
        if st & bit:
            return name
    return "[stack]" if vma.flags & _MAP_GROWSDOWN else ""


def _prot(p: int) -> str:
    return ("r" if p & 1 else "-") + ("w" if p & 2 else "-") + ("x" if p & 4 else "-")


def _memory(mem: Any, mm: Any, files: dict[int, Any]) -> Memory:
    """VMAs with the bytes the pagemap gives each (one sweep: both are sorted by address)."""
    runs, i = mem.pagemap, 0
    vmas = []
    for v in mem.vmas:
        counts = {PE_PRESENT: 0, PE_LAZY: 0, PE_PARENT: 0}
        while i < len(runs) and runs[i].end <= v.start:
            i += 1
        j = i
        while j < len(runs) and runs[j].vaddr < v.end:
            r = runs[j]
            overlap = min(r.end, v.end) - max(r.vaddr, v.start)
            kind = PE_PRESENT if r.flags & PE_PRESENT else PE_PARENT if r.flags & PE_PARENT else PE_LAZY
            counts[kind] += max(0, overlap)
            j += 1
        vmas.append(Vma(start=v.start, end=v.end, prot=_prot(v.prot), shared=bool(v.flags & _MAP_SHARED),
                        backing=vma_backing(v, files), offset=v.pgoff, dumped=counts[PE_PRESENT],
                        lazy=counts[PE_LAZY], parent=counts[PE_PARENT]))
    return Memory(vmas=tuple(vmas), exe=_file_name(files, mm.exe_file_id))


def _strings(mem: Any, start: int, end: int) -> tuple[str, ...]:
    raw = mem.read(start, min(max(0, end - start), ARGS_LIMIT))
    return tuple(s.decode("utf-8", "backslashreplace") for s in raw.rstrip(b"\0").split(b"\0")) if raw else ()


class _Collector:
    def __init__(self, src: Source, sections: Sections) -> None:
        self.src, self.sections = src, sections
        self.ck = Checkpoint(src)
        self.notes: list[str] = []
        self.args: dict[int, tuple[tuple[str, ...], tuple[str, ...] | None]] = {}

    def _tcp_queues(self, ino: int) -> Any | None:
        name = f"tcp-stream-{ino:x}.img"
        if not self.src.exists(name):
            return None
        entries = self.ck.entries(name)
        return entries[0] if entries else None

    def _fds(self, pid: int, files: dict[int, Any]) -> tuple[tuple[Fd, ...], tuple[Socket, ...]]:
        fds, socks = [], []
        for f in self.ck.fds(pid):
            sock = socket_of(f.fd, f.type, f.file, self._tcp_queues) if f.type in SOCKET_KINDS else None
            if sock is not None:
                socks.append(sock)
            pos = f.file.reg.pos if f.file is not None and f.type == "REG" else None
            fds.append(Fd(fd=f.fd, kind=f.type, target=_fd_target(f.type, f.file, files, sock), flags=f.flags, pos=pos))
        return tuple(fds), tuple(socks)

    def read_args(self, processes: tuple[Any, ...]) -> None:
        """Every process's command line (and environment), read in the order their pages lie in the
        source: a compressed archive is then decompressed once, not once per process."""
        todo = []
        for p in processes:
            if _TASK_STATES.get(self.ck.core(p.pid).tc.task_state) == "zombie":
                continue
            try:
                mem = self.ck.memory(p.pid)
            except ImageError as exc:
                self.notes.append(f"process {p.pid}: command line not read: {exc}")
                continue
            todo.append((self.src.position(mem.pages_name), p.pid, mem))
        for _, pid, mem in sorted(todo, key=lambda t: t[:2]):
            mm = self.ck.mm(pid)
            try:
                cmd = _strings(mem, mm.mm_arg_start, mm.mm_arg_end)
                env = _strings(mem, mm.mm_env_start, mm.mm_env_end) if self.sections.details else None
                self.args[pid] = (cmd, env)
            except ImageError as exc:
                self.notes.append(f"process {pid}: command line not read: {exc}")

    def process(self, p: Any, files: dict[int, Any]) -> Process:
        s, pid = self.sections, p.pid
        core = self.ck.core(pid)
        state = _TASK_STATES.get(core.tc.task_state, str(core.tc.task_state))
        ids = self.ck.ids(pid)
        namespaces = {n: getattr(ids, f"{n}_ns_id") for n in _NS_FIELDS if ids.HasField(f"{n}_ns_id")}
        cwd = root = ""
        if self.src.exists(f"fs-{pid}.img"):
            fs = self.ck.entries(f"fs-{pid}.img")[0]
            cwd, root = _file_name(files, fs.cwd_id), _file_name(files, fs.root_id)
        cmdline = environ = None
        fds = socks = memory = None
        if state != "zombie":  # a zombie has no memory, files or fs images
            mm = self.ck.mm(pid)
            cmdline, environ = self.args.get(pid, (None, None))
            if s.files or s.sockets:
                fds, socks = self._fds(pid, files)
                if not s.files:
                    fds = None
                if not s.sockets:
                    socks = None
            if s.memory:
                memory = _memory(self.ck.memory(pid), mm, files)
        return Process(pid=pid, ppid=p.ppid, pgid=p.pgid, sid=p.sid, comm=core.tc.comm, threads=p.threads,
                       state=state, cmdline=cmdline, environ=environ, cwd=cwd, root=root,
                       creds=_creds(core, self.ck, pid), namespaces=namespaces, fds=fds, sockets=socks,
                       memory=memory)

    def mounts(self) -> tuple[Mount, ...]:
        out = []
        for m in self.ck.mounts():
            fstype = m.fsname if m.HasField("fsname") and m.fsname else _fstype(m.fstype)
            external = m.ext_key if m.HasField("ext_key") and m.ext_key else (
                m.mountpoint if m.HasField("ext_mount") and m.ext_mount else None)
            out.append(Mount(mnt_id=m.mnt_id, parent_id=m.parent_mnt_id, mountpoint=m.mountpoint, fstype=fstype,
                             source=m.source, root=m.root, external=external, options=m.options,
                             shared_id=m.shared_id, master_id=m.master_id))
        return tuple(sorted(out, key=lambda m: (m.mountpoint, m.mnt_id)))

    def stats(self) -> dict[str, int]:
        dump = self.ck.stats().dump
        return {f.name: v for f, v in dump.ListFields()} if dump is not None else {}


def _fstype(code: int) -> str:
    from criu_image._pb import mnt_pb2

    try:
        return mnt_pb2.fstype.Name(code).lower()
    except ValueError:
        return str(code)


def _with_unix_peers(processes: tuple[Process, ...]) -> tuple[Process, ...]:
    """Name each unix socket's other end by the process and fd holding it, when it is in the checkpoint."""
    holders: dict[int, str] = {}
    for p in processes:
        for s in p.sockets or ():
            holders.setdefault(s.inode, f"pid {p.pid} fd {s.fd}")
    out = []
    for p in processes:
        if p.sockets:
            socks = tuple(dataclasses.replace(s, peer=holders.get(s.peer_inode, f"ino {s.peer_inode} (outside)"))
                          if s.peer_inode else s for s in p.sockets)
            p = dataclasses.replace(p, sockets=socks)
        out.append(p)
    return tuple(out)


def _overview(src: Source, md: Metadata, inv: Any) -> Overview:
    names = src.names()
    sizes = Sizes(total=sum(src.size(n) for n in names),
                  pages=sum(src.size(n) for n in names if re.fullmatch(r"pages-\d+\.img", n)),
                  rootfs_diff=md.rootfs_diff_bytes)
    lock = md.network_lock or (_NETWORK_LOCKS.get(inv.network_lock_method, "")
                               if inv.HasField("network_lock_method") else "iptables")
    tcp = md.tcp_mode or ("established" if any(n.startswith("tcp-stream-") for n in names)
                          else "closed" if inv.HasField("tcp_close") and inv.tcp_close else "")
    meta = md.meta
    return Overview(source_kind=src.kind, source=src.label, engine=md.engine, container_id=md.container_id,
                    name=md.name, image=md.image, created=md.created, checkpointed=md.checkpointed,
                    criu_image_version=inv.img_version, network_lock=lock, tcp=tcp,
                    leave_running=meta.leave_running if meta else None,
                    file_locks=meta.file_locks if meta else None,
                    joined_namespaces=dict(meta.namespaces) if meta else {}, sizes=sizes)


def collect(src: Source, sections: Sections = Sections()) -> Report:
    """The report of the checkpoint ``src`` with ``sections``. Raises criu_image.ImageError for a damaged
    image the sections need (naming the file and offset)."""
    c = _Collector(src, sections)
    md = read_metadata(src)
    inv = c.ck.inventory
    files = c.ck.files()
    if sections.args:
        c.read_args(c.ck.processes)
    processes = _with_unix_peers(tuple(c.process(p, files) for p in c.ck.processes))
    net = None
    if sections.net:
        net = netview.from_netns_images(c.ck.netns()) or netview.from_network_status(md.network)
    try:
        mounts = c.mounts() if sections.mounts else None
    except MissingImage as exc:
        mounts = ()
        c.notes.append(f"no mount images: {exc}")
    return Report(overview=_overview(src, md, inv), processes=processes, mounts=mounts, network=net,
                  stats=c.stats() if sections.stats else None, notes=(*md.notes, *c.notes))

