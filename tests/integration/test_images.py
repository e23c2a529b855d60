"""criu_image against crit 4.2.1 on a real container's checkpoint (issue 11, section 1).

The busybox service container is checkpointed (left running) while a client
holds an established TCP connection to it; then every file of the images
directory is decoded by criu_image and by CRIU's own ``crit decode``
(python3-pycriu 4.2.1, scripts/install-peers), plain and --pretty, and the
two must be equal field for field.  Memory read through the pagemap is
checked against crit's pagemap and ``crit x DIR mems``.
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from criu_image import PAGE_SIZE, Checkpoint, DirSource, ImageError, UnknownImage, image_to_dict, read_image
from runtime.testing.net import wait_tcp
from tests.conftest import require
from tests.integration.container_helpers import echo

pytestmark = pytest.mark.usefixtures("container_prereqs")

CRIT = os.path.join(os.environ.get("CRIU_CR_PEERS", "/opt/criu-cr/peers"), "bin", "crit")


def crit(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, CRIU_CR_PYTHON=sys.executable)
    return subprocess.run([CRIT, *args], capture_output=True, text=True, env=env, timeout=60)


@pytest.fixture
def checkpoint(service, tmp_path):
    """(images dir, the client's (ip, port), the container's ip) of a checkpoint holding a live TCP connection."""
    require(os.access(CRIT, os.X_OK), f"needs crit at {CRIT} (scripts/install-peers)")
    ctr, net = service
    wait_tcp(net.ip, 7000, timeout=10)
    images = tmp_path / "ckpt"
    with socket.create_connection((net.ip, 7000), timeout=5) as sock:
        assert echo(sock, b"before\n") == b"before\n"
        ctr.checkpoint(leave_running=True, tcp_established=True, image_path=str(images))
        client = sock.getsockname()
    return images, client, net.ip


# ``crit decode -i FILE -o OUT [--pretty]`` for many files in one Python: crit's
# own main(), argv and all, without paying its start-up 100 times.
_CRIT_MANY = r"""
import json, os, sys
from crit.__main__ import main
out, files = sys.argv[1], sys.argv[2:]
result = {}
for path in files:
    result[path] = {}
    for mode, extra in (("plain", []), ("pretty", ["--pretty"])):
        sys.argv = ["crit", "decode", "-i", path, "-o", out + ".one", *extra]
        try:
            main()
            with open(out + ".one") as f:
                result[path][mode] = json.load(f)
        except BaseException:  # crit refuses it (exits, or raises on an image it cannot handle)
            result[path] = None
            break
with open(out, "w") as f:
    json.dump(result, f)
"""


def crit_decode_all(paths: list[Path], work: Path) -> dict[str, dict[str, object] | None]:
    """{path: {"plain": .., "pretty": ..} or None where crit refuses the file}."""
    out = work / "crit.json"
    env = dict(os.environ, PYTHONPATH=str(Path(CRIT).parents[1] / "usr/lib/python3/dist-packages"))
    run = subprocess.run([sys.executable, "-c", _CRIT_MANY, str(out), *map(str, paths)],
                         capture_output=True, text=True, env=env, timeout=120)
    assert run.returncode == 0, run.stderr
    return json.loads(out.read_text())


def test_every_image_agrees_with_crit_decode(checkpoint, tmp_path) -> None:
    images, _, _ = checkpoint
    src = DirSource(images)
    names = src.names()
    decoded = crit_decode_all([images / n for n in names], tmp_path)
    theirs = {n: decoded[str(images / n)] for n in names}
    # the CLI itself agrees with its main() run this way
    assert json.loads(crit("decode", "-i", str(images / "pstree.img")).stdout) == theirs["pstree.img"]["plain"]
    compared = []
    for name in names:
        if theirs[name] is None:
            # crit refuses it (a raw image, a log, our own metadata): so must we, or it is one crit lacks.
            try:
                image = read_image(src, name)
            except ImageError:
                continue
            image_to_dict(image)  # decodable by us alone (e.g. a kind crit has no handler for)
            continue
        image = read_image(src, name)
        for mode in ("plain", "pretty"):
            assert image_to_dict(image, pretty=mode == "pretty") == theirs[name][mode], f"{name} ({mode})"
        compared.append(image.magic_name)
    assert {"INVENTORY", "PSTREE", "CORE", "MM", "PAGEMAP", "FILES", "FDINFO", "TCP_STREAM", "MNTS",
            "CGROUP", "UTSNS", "IPC_VAR", "NETNS"} <= set(compared), (names, compared)


def test_the_established_connection_shows_its_4_tuple(checkpoint) -> None:
    images, (cip, cport), ip = checkpoint
    ckpt = Checkpoint(DirSource(images))
    tcp = [f.isk for f in ckpt.files().values() if f.HasField("isk") and f.isk.state == 1]  # ESTABLISHED
    assert [(s.src_port, s.dst_port) for s in tcp] == [(7000, cport)]
    as_dict = image_to_dict(read_image(DirSource(images), "files.img"), pretty=True)
    (isk,) = [e["isk"] for e in as_dict["entries"] if e.get("isk", {}).get("state") == "ESTABLISHED"]
    # busybox nc listens dual-stack: the addresses are IPv4-mapped IPv6 ones.
    assert [_v4(a) for a in isk["src_addr"] + isk["dst_addr"]] == [ip, cip]


def _v4(text: str) -> str:
    addr = ipaddress.ip_address(text)
    return str(getattr(addr, "ipv4_mapped", None) or addr)


def test_memory_reads_agree_with_crits_mm_and_pagemap(checkpoint) -> None:
    images, _, _ = checkpoint
    ckpt = Checkpoint(DirSource(images))

    def decoded(name: str) -> list[dict]:
        run = crit("decode", "-i", str(images / name), "--pretty")
        assert run.returncode == 0, run.stderr
        return json.loads(run.stdout)["entries"]

    # (crit x DIR mems would do for the VMAs, but it stops at the first zombie, which has no mm.)
    alive = [p.pid for p in ckpt.processes if ckpt.core(p.pid).tc.task_state != 3]
    assert alive
    for pid in alive:
        mem = ckpt.memory(pid)
        (mm,) = decoded(f"mm-{pid}.img")
        assert [(int(v["start"], 16), int(v["end"], 16)) for v in mm["vmas"]] == [(v.start, v.end) for v in mem.vmas]
        # Page data at offsets computed from crit's own pagemap decoding.
        head, *entries = decoded(f"pagemap-{pid}.img")
        pages = (images / f"pages-{head['pages_id']}.img").read_bytes()
        offset = 0
        for e in entries:
            if "PE_PRESENT" not in e.get("flags", "PE_PRESENT"):
                continue
            vaddr = int(e["vaddr"], 16)
            assert mem.read(vaddr, 64) == pages[offset:offset + 64]
            offset += e["nr_pages"] * PAGE_SIZE
        assert offset == mem.dumped_bytes() == len(pages)


def test_the_root_command_line_is_read_from_its_memory(checkpoint) -> None:
    images, _, _ = checkpoint
    ckpt = Checkpoint(DirSource(images))
    root = ckpt.processes[0].pid
    mm = ckpt.mm(root)
    argv = ckpt.memory(root).read(mm.mm_arg_start, mm.mm_arg_end - mm.mm_arg_start).rstrip(b"\0").split(b"\0")
    assert argv[:2] == [b"sh", b"-c"] and b"httpd -p 80" in argv[2]
    with pytest.raises(UnknownImage):
        read_image(DirSource(images), f"pages-{1}.img")


# A process with anonymous memory, shared and private, some pages touched and
# some not; it writes the mappings' addresses to the file named by argv[1].
_MAPPINGS = r"""
import ctypes, mmap, os, sys, time
shared = mmap.mmap(-1, 3 * 4096, flags=mmap.MAP_SHARED)
shared[0:13] = b"shared page 0"
shared[8192:8205] = b"shared page 2"
private = mmap.mmap(-1, 2 * 4096, flags=mmap.MAP_PRIVATE)
private[4096:4110] = b"private page 1"
where = [ctypes.addressof(ctypes.c_char.from_buffer(m)) for m in (shared, private)]
with open(sys.argv[1] + ".new", "w") as f:
    f.write(" ".join(map(str, where)))
os.rename(sys.argv[1] + ".new", sys.argv[1])
while True:
    time.sleep(1)
"""


@pytest.fixture
def mappings_dumped(tmp_path):
    """(images dir, pid, shared address, private address) of a dumped process with anonymous mappings."""
    from criu_rpc import CriuClient, CriuOptions
    from tests.conftest import require_criu

    where = tmp_path / "where"
    proc = subprocess.Popen([sys.executable, "-c", _MAPPINGS, str(where)], start_new_session=True,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):
            if where.exists() or proc.poll() is not None:
                break
            time.sleep(0.05)
        assert where.exists(), "the process did not start"
        shared, private = map(int, where.read_text().split())
        images = tmp_path / "images"
        images.mkdir()
        CriuClient(require_criu()).dump(CriuOptions(images_dir=images, pid=proc.pid))
        yield images, proc.pid, shared, private
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def test_shared_and_private_anonymous_memory(mappings_dumped) -> None:
    images, pid, shared, private = mappings_dumped
    mem = Checkpoint(DirSource(images)).memory(pid)
    assert mem.read(shared, 13) == b"shared page 0"
    assert mem.read(shared + 4096, 4096) == bytes(4096)  # never touched
    assert mem.read(shared + 8192, 13) == b"shared page 2"
    assert mem.read(private, 4096) == bytes(4096)
    assert mem.read(private + 4096, 14) == b"private page 1"
    # a read across both pages of the private mapping
    assert mem.read(private + 4090, 20) == bytes(6) + b"private page 1"
