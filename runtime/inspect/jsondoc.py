"""The JSON document of ``criu-cr inspect --json`` (and of ``diff --json``): one stable shape.

docs/inspect.md describes it and docs/schemas/inspect.json is its JSON
Schema. Every key is always there; a section that was not asked for is
``null``. Addresses are hex strings (``"0x7ffd4e346000"``: JSON numbers lose
precision past 2**53); sizes are numbers of bytes. A change that removes or
renames a key, or changes a type, raises :data:`SCHEMA_VERSION`.
"""

from __future__ import annotations

from typing import Any

from runtime.inspect.model import Creds, Fd, Memory, Mount, Network, Overview, Process, Report, Socket, Vma

__all__ = ["SCHEMA_VERSION", "document", "process_doc", "vma_doc"]

SCHEMA_VERSION = 1


def _hex(n: int) -> str:
    return f"{n:#x}"


def _creds(c: Creds | None) -> dict[str, Any] | None:
    if c is None:
        return None
    return {"uid": c.uid, "gid": c.gid, "euid": c.euid, "egid": c.egid, "groups": list(c.groups),
            "cap_eff": None if c.cap_eff is None else _hex(c.cap_eff), "no_new_privs": c.no_new_privs,
            "seccomp": c.seccomp}


def _fd(f: Fd) -> dict[str, Any]:
    return {"fd": f.fd, "type": f.kind, "target": f.target, "flags": f.flags, "pos": f.pos}


def _socket(s: Socket) -> dict[str, Any]:
    return {"fd": s.fd, "family": s.family, "proto": s.proto, "state": s.state, "inode": s.inode,
            "local": s.local, "remote": s.remote, "send_queue": s.send_queue, "recv_queue": s.recv_queue,
            "unsent": s.unsent, "peer_inode": s.peer_inode, "peer": s.peer}


def vma_doc(v: Vma) -> dict[str, Any]:
    return {"start": _hex(v.start), "end": _hex(v.end), "size": v.size, "prot": v.prot, "shared": v.shared,
            "backing": v.backing, "offset": v.offset, "dumped": v.dumped, "lazy": v.lazy, "parent": v.parent,
            "not_dumped": v.not_dumped}


def _memory(m: Memory | None) -> dict[str, Any] | None:
    if m is None:
        return None
    return {"exe": m.exe, "size": m.size, "dumped": m.dumped, "private": m.private, "shared": m.shared,
            "not_dumped": m.not_dumped, "vmas": [vma_doc(v) for v in m.vmas]}


def process_doc(p: Process) -> dict[str, Any]:
    return {"pid": p.pid, "ppid": p.ppid, "pgid": p.pgid, "sid": p.sid, "comm": p.comm, "state": p.state,
            "threads": list(p.threads),
            "cmdline": None if p.cmdline is None else list(p.cmdline),
            "environ": None if p.environ is None else list(p.environ),
            "cwd": p.cwd, "root": p.root, "creds": _creds(p.creds), "namespaces": dict(p.namespaces),
            "fds": None if p.fds is None else [_fd(f) for f in p.fds],
            "sockets": None if p.sockets is None else [_socket(s) for s in p.sockets],
            "memory": _memory(p.memory)}


def _mount(m: Mount) -> dict[str, Any]:
    return {"mnt_id": m.mnt_id, "parent_id": m.parent_id, "mountpoint": m.mountpoint, "fstype": m.fstype,
            "source": m.source, "root": m.root, "external": m.external, "options": m.options,
            "shared_id": m.shared_id, "master_id": m.master_id}


def _network(n: Network | None) -> dict[str, Any] | None:
    if n is None:
        return None
    return {"origin": n.origin, "netns": n.netns,
            "interfaces": [{"name": i.name, "kind": i.kind, "mac": i.mac, "mtu": i.mtu, "up": i.up,
                            "addresses": list(i.addresses), "peer": i.peer} for i in n.interfaces],
            "routes": list(n.routes)}


def _overview(o: Overview) -> dict[str, Any]:
    sizes = o.sizes
    return {
        "container": {"engine": o.engine, "id": o.container_id, "name": o.name, "image": o.image,
                      "created": o.created, "checkpointed": o.checkpointed},
        "checkpoint": {"criu_image_version": o.criu_image_version, "network_lock": o.network_lock, "tcp": o.tcp,
                       "leave_running": o.leave_running, "file_locks": o.file_locks,
                       "joined_namespaces": dict(o.joined_namespaces),
                       "size": None if sizes is None else {"total": sizes.total, "pages": sizes.pages,
                                                           "rootfs_diff": sizes.rootfs_diff}},
    }


def document(report: Report) -> dict[str, Any]:
    """The JSON document of ``report`` (a dict ready for json.dumps). Pure."""
    o = report.overview
    return {"schema_version": SCHEMA_VERSION, "source": {"kind": o.source_kind, "path": o.source},
            **_overview(o),
            "processes": [process_doc(p) for p in report.processes],
            "mounts": None if report.mounts is None else [_mount(m) for m in report.mounts],
            "network": _network(report.network),
            "stats": None if report.stats is None else dict(report.stats),
            "notes": list(report.notes)}
