"""The Checkpoint view of the stored real checkpoint: what a user asks of it."""

from __future__ import annotations

import pytest

from criu_image import Checkpoint, MissingImage
from tests.unit.image.sources import MemSource, stored


@pytest.fixture
def ckpt() -> Checkpoint:
    return Checkpoint(stored())


def test_process_tree(ckpt: Checkpoint) -> None:
    root, *children = ckpt.processes
    assert root.ppid == 0 and root.pid == root.pgid == root.sid and root.threads == (root.pid,)
    assert len(children) == 3 and all(c.ppid == root.pid for c in children)
    comms = sorted(ckpt.core(p.pid).tc.comm for p in ckpt.processes)
    assert comms == ["busybox"] * 4  # comm is the executable's name, whatever argv[0] says


def test_fds_joined_with_their_files(ckpt: Checkpoint) -> None:
    root = ckpt.processes[0].pid
    fds = {f.fd: f for f in ckpt.fds(root)}
    assert [fds[n].type for n in range(3, 17)] == [
        "PIPE", "PIPE", "UNIXSK", "UNIXSK", "INETSK", "INETSK", "INETSK", "INETSK", "REG", "FIFO",
        "EVENTFD", "EVENTPOLL", "REG", "REG"]
    assert all(f.file is not None and f.file.id == f.id for f in fds.values())
    listener = fds[7].file.isk
    assert (listener.state, listener.src_port, listener.src_addr) == (10, 7001, [0x0100007F])  # LISTEN
    established = sorted((fds[n].file.isk.src_port, fds[n].file.isk.dst_port) for n in (8, 9))
    assert 7001 in established[0] + established[1] and all(fds[n].file.isk.state == 1 for n in (8, 9))
    assert fds[13].file.efd.counter == 5
    assert fds[3].file.pipe.pipe_id == fds[4].file.pipe.pipe_id
    assert fds[15].file.reg.name.endswith("/work/regular")
    # the deleted files are named as CRIU saw them, their content in ghost-file-*.img
    assert fds[11].file.reg.name.endswith("/work/ghost") and fds[16].file.reg.name.endswith("/work/sparse")


def test_mm_and_inventory(ckpt: Checkpoint) -> None:
    root = ckpt.processes[0].pid
    assert ckpt.inventory.img_version == 2
    mm = ckpt.mm(root)
    assert mm.vmas and mm.mm_arg_start < mm.mm_arg_end
    assert ckpt.ids(root).files_id > 0


def test_network_namespace_and_stats(ckpt: Checkpoint) -> None:
    (ns,) = ckpt.netns()
    assert [d.name for d in ns.devices] == ["lo"]
    assert ns.addresses and ns.netns is not None
    stats = ckpt.stats()
    assert stats.dump is not None and stats.dump.pages_written > 0 and stats.restore is None
    assert ckpt.mounts() == ()  # the tree shared CRIU's mount namespace: none dumped


def test_missing_image_is_named() -> None:
    with pytest.raises(MissingImage, match="core-999999.img"):
        Checkpoint(stored()).core(999999)


def test_metadata_never_opens_pages() -> None:
    src = MemSource.copy_of(stored())
    ckpt = Checkpoint(src)
    for p in ckpt.processes:
        ckpt.core(p.pid), ckpt.mm(p.pid), ckpt.fds(p.pid)
        memory = ckpt.memory(p.pid)
        assert memory.vmas and memory.pagemap and memory.dumped_bytes() > 0
    ckpt.files(), ckpt.mounts(), ckpt.netns(), ckpt.stats()
    assert src.opened and not [n for n in src.opened if n.startswith("pages-")]
    # and each image is read once
    assert len(src.opened) == len(set(src.opened))


def test_a_zombie_has_no_fds() -> None:
    from criu_image import read_image
    from tests.unit.image.sources import encode

    src = MemSource.copy_of(stored())
    pid = Checkpoint(src).processes[-1].pid
    (core,) = [e.msg for e in read_image(src, f"core-{pid}.img").entries()]
    core.tc.task_state = 3
    core.ClearField("ids")
    src.files[f"core-{pid}.img"] = encode("CORE", core)
    src.files.pop(f"ids-{pid}.img", None)
    assert Checkpoint(src).fds(pid) == ()
