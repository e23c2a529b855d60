"""The text tree, the JSON document (validated against docs/schemas/inspect.json) and diff, on hand-made reports."""

from __future__ import annotations

import dataclasses
import json
import socket
import struct
from pathlib import Path

from runtime.inspect import diff as diffmod
from runtime.inspect.jsondoc import SCHEMA_VERSION, document
from runtime.inspect.model import (Creds, Fd, Interface, Memory, Mount, Network, Overview, Process, Report, Sizes,
                                   Socket, Vma)
from runtime.inspect.render import render
from runtime.inspect.sockets import endpoint
from tests.cli_schema import errors, load

DOCS = Path(__file__).resolve().parents[3] / "docs"
SCHEMA = load("inspect.json")
DIFF_SCHEMA = load("diff.json")

TCP = Socket(fd=3, family="inet", proto="tcp", state="ESTABLISHED", inode=77, local="10.231.0.2:7000",
             remote="10.231.0.1:50000", send_queue=12, recv_queue=3)


def _report(*, extra_proc: bool = False, heap_end: int = 0x2000000, state: str = "ESTABLISHED") -> Report:
    heap = Vma(start=0x1000000, end=heap_end, prot="rw-", shared=False, backing="[heap]", dumped=0x4000)
    procs = [Process(pid=1, ppid=0, pgid=1, sid=1, comm="sh", cmdline=("sh", "-c", "serve"), environ=("A=1",),
                     cwd="/", root="/", creds=Creds(uid=0, gid=0, euid=0, egid=0, cap_eff=0x20000420),
                     namespaces={"net": 10, "pid": 9},
                     fds=(Fd(fd=0, kind="REG", target="/dev/null"), Fd(fd=3, kind="INETSK", target="tcp ...")),
                     sockets=(dataclasses.replace(TCP, state=state),),
                     memory=Memory(vmas=(Vma(start=0x400000, end=0x401000, prot="r--", shared=False,
                                             backing="/bin/busybox"), heap,
                                         Vma(start=0xffffffffff600000, end=0xffffffffff601000, prot="--x",
                                             shared=False, backing="[vsyscall]")), exe="/bin/busybox"))]
    if extra_proc:
        procs.append(Process(pid=7, ppid=1, pgid=1, sid=1, comm="sleep", cmdline=("sleep", "9"), fds=(),
                             sockets=(), memory=Memory(vmas=())))
    return Report(
        overview=Overview(source_kind="directory", source="/ck", engine="criu-cr", container_id="web",
                          checkpointed="2026-11-30T10:00:00Z", criu_image_version=2, network_lock="nftables",
                          tcp="established", leave_running=False, file_locks=False,
                          joined_namespaces={"network": "/run/netns/web"},
                          sizes=Sizes(total=1 << 20, pages=1 << 19, rootfs_diff=10240)),
        processes=tuple(procs),
        mounts=(Mount(mnt_id=1, parent_id=0, mountpoint="/", fstype="overlayfs", source="overlay"),
                Mount(mnt_id=2, parent_id=1, mountpoint="/dev/null", fstype="devtmpfs", source="devtmpfs",
                      external="/dev/null")),
        network=Network(origin="network.status", netns="/run/netns/web",
                        interfaces=(Interface(name="eth0", kind="veth", up=True, addresses=("10.231.0.2/30",)),)),
        stats={"freezing_time": 609, "pages_written": 81})


def test_tree_shows_every_section():
    text = render(_report(extra_proc=True), details=True, vmas=True)
    for expected in ("├── ID: web", "Network lock: nftables", "TCP: established connections dumped",
                     "[1] sh -c serve", "[7] sleep 9", "A=1", "Credentials: uid 0 gid 0 euid 0 egid 0 caps 0x20000420",
                     "[INETSK 3]", "fd 3: [TCP ESTABLISHED] 10.231.0.2:7000 -> 10.231.0.1:50000 (send queue 12 B, "
                     "recv queue 3 B)", "/dev/null: devtmpfs from devtmpfs (external, key /dev/null)",
                     "Address: 10.231.0.2/30", "Freezing time: 609 µs", "[heap]", "ffffffffff600000"):
        assert expected in text, expected
    # the child hangs under its parent
    lines = text.splitlines()
    one = next(i for i, line in enumerate(lines) if "[1] sh" in line)
    seven = next(i for i, line in enumerate(lines) if "[7] sleep" in line)
    assert seven > one and lines[seven].index("[7]") > lines[one].index("[1]")


def test_json_document_follows_the_schema():
    doc = json.loads(json.dumps(document(_report(extra_proc=True))))
    assert doc["schema_version"] == SCHEMA_VERSION == SCHEMA["properties"]["schema_version"]["const"]
    assert errors(doc, SCHEMA) == []
    assert doc["processes"][0]["sockets"][0]["remote"] == "10.231.0.1:50000"
    assert doc["processes"][0]["memory"]["vmas"][2]["start"] == "0xffffffffff600000"


def test_json_sections_not_read_are_null_and_still_valid():
    r = dataclasses.replace(_report(), mounts=None, network=None, stats=None,
                            processes=(Process(pid=1, ppid=0, pgid=1, sid=1, comm="sh"),))
    doc = document(r)
    assert doc["mounts"] is None and doc["processes"][0]["fds"] is None
    assert errors(doc, SCHEMA) == []


def test_schema_catches_a_renamed_key():
    doc = document(_report())
    doc["processes"][0]["command"] = doc["processes"][0].pop("cmdline")
    assert any("cmdline" in e for e in errors(doc, SCHEMA))
    assert any("command" in e for e in errors(doc, SCHEMA))


def test_diff_process_came_socket_state_memory_grew():
    a = _report()
    b = _report(extra_proc=True, heap_end=0x3000000, state="CLOSE_WAIT")
    d = diffmod.diff_reports(a, b)
    got = {(c.section, c.change, c.pid) for c in d.changes}
    assert {("process", "added", 7), ("socket", "changed", 1), ("vma", "changed", 1), ("memory", "changed", 1)} <= got
    vma = next(c for c in d.changes if c.section == "vma")
    assert vma.delta == 0x1000000 and vma.after.startswith("grew")
    text = diffmod.render_diff(d)
    assert "+ process: sleep 9 (parent 1) [7]" in text
    assert "ESTABLISHED" in text and "CLOSE_WAIT" in text
    assert errors(diffmod.diff_document(d), DIFF_SCHEMA) == []
    assert diffmod.diff_reports(a, a).changes == ()
    assert "no changes" in diffmod.render_diff(diffmod.diff_reports(a, a))


def test_stack_matched_by_its_end():
    s1 = Vma(start=0x7ff0000, end=0x8000000, prot="rw-", shared=False, backing="[stack]")
    s2 = dataclasses.replace(s1, start=0x7fe0000)
    pairs, added, removed = diffmod._match_vmas((s1,), (s2,))
    assert pairs == [(s1, s2)] and not added and not removed


def test_inet_endpoints():
    v4mapped = [0, 0, 0xffff0000, struct.unpack("<I", socket.inet_aton("10.231.2.2"))[0]]
    assert endpoint(v4mapped, 7000, socket.AF_INET6) == "10.231.2.2:7000"
    assert endpoint([0, 0, 0, 0], 80, socket.AF_INET6) == "[::]:80"
    assert endpoint([struct.unpack("<I", socket.inet_aton("127.0.0.1"))[0]], 53, socket.AF_INET) == "127.0.0.1:53"
