"""Faults injected into real CRIU 4.2 at its notify points, and deadlines
that end it (criu_rpc.faults, CriuClient(timeout=...)).

Each test records what CRIU really did (the notifies seen) and what is left
afterwards: the dumped tree, its freezer cgroup, CRIU's nft lock table, and
any restored task.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from criu_rpc import CriuClient, CriuDiedError, CriuOptions, CriuTimeoutError, InheritFd
from criu_rpc.faults import FaultAt, KillCriuAt
from criu_rpc.logs import LOG_SCAN_BYTES
from criu_rpc.proctree import process_table

from .rpc_helpers import Counter, criu_path, stat_fields, wait_until

PLAIN_DUMP = ["pre-dump", "query-ext-files", "post-dump"]
NET_DUMP = ["pre-dump", "network-lock", "query-ext-files", "post-dump"]
PLAIN_RESTORE = ["pre-restore", "post-restore", "pre-resume", "post-resume"]
NET_RESTORE = ["pre-restore", "setup-namespaces", "post-setup-namespaces", "post-restore", "network-unlock",
               "pre-resume", "post-resume"]


@pytest.fixture
def client() -> CriuClient:
    return CriuClient(criu_path())


@pytest.fixture
def images(tmp_path: Path) -> Path:
    d = tmp_path / "images"
    d.mkdir(mode=0o700)
    return d


@pytest.fixture
def counter(client: CriuClient, tmp_path: Path):
    c = Counter(tmp_path)
    try:
        yield c
    finally:
        c.cleanup()


@pytest.fixture
def freezer(tmp_path: Path):
    """A freezer cgroup of our own (v1 freezer hierarchy, or v2), thawed and removed afterwards."""
    v1 = "/sys/fs/cgroup/freezer"
    path = os.path.join(v1 if os.path.isdir(v1) else "/sys/fs/cgroup", f"criu-cr-test-faults-{os.getpid()}")
    os.mkdir(path)
    try:
        yield path
    finally:
        if os.path.exists(os.path.join(path, "freezer.state")):
            Path(path, "freezer.state").write_text("THAWED")
        elif os.path.exists(os.path.join(path, "cgroup.freeze")):
            Path(path, "cgroup.freeze").write_text("0")
        wait_until(lambda: _rmdir(path), 10, f"{path} to be removable")


def _rmdir(path: str) -> bool:
    try:
        os.rmdir(path)
    except FileNotFoundError:
        return True
    except OSError:
        return False
    return True


@pytest.fixture
def net_counter(netns, freezer: str, tmp_path: Path):
    c = Counter(tmp_path, netns=netns.path, cgroup=freezer)
    try:
        yield c
    finally:
        c.cleanup()


def frozen(cgroup: str) -> bool:
    state = Path(cgroup, "freezer.state")
    if state.exists():
        return state.read_text().strip() != "THAWED"
    return Path(cgroup, "cgroup.freeze").read_text().strip() == "1"


def criu_nft_tables(netns_path: str) -> list[str]:
    out = subprocess.run(["nsenter", f"--net={netns_path}", "nft", "list", "tables"],
                         capture_output=True, text=True, check=True).stdout
    return [line for line in out.splitlines() if "CRIU" in line]


def net_dump_opts(images: Path, c: Counter, netns, freezer: str) -> CriuOptions:
    """As the runtime dumps a container: external netns, nftables lock, cgroups, freezer."""
    # On cgroup v1 the tree sits in the host's root cgroup of every other
    # controller, whose whole subtree CRIU would dump (~8 MB, seconds).
    only = ("freezer",) if freezer.startswith("/sys/fs/cgroup/freezer/") else ()
    return CriuOptions(images_dir=images, pid=c.pid, external=(f"net[{os.stat(netns.path).st_ino}]:extnet",),
                       network_lock="nftables", manage_cgroups=True, manage_cgroups_mode="soft",
                       freeze_cgroup=freezer, cgroup_dump_controller=only)


def seen_scripts(handler: FaultAt) -> list[str]:
    return [script for _, script, _ in handler.seen]


def never_fires() -> FaultAt:
    return FaultAt("status-ready", lambda ctx: None)  # only records what CRIU sends


# --- dump -----------------------------------------------------------------------


def test_notifies_of_a_plain_dump_and_restore(client: CriuClient, counter: Counter, images: Path) -> None:
    on_dump = never_fires()
    client.dump(CriuOptions(images_dir=images, pid=counter.pid), notify=on_dump)
    assert seen_scripts(on_dump) == PLAIN_DUMP
    counter.wait_dumped_away()
    on_restore = never_fires()
    restored = client.restore(CriuOptions(images_dir=images), notify=on_restore)
    counter.restored(restored.pid)
    assert seen_scripts(on_restore) == PLAIN_RESTORE
    assert counter.keeps_counting()


@pytest.mark.parametrize("point", PLAIN_DUMP)
def test_criu_killed_at_a_dump_notify_leaves_the_tree_running(client: CriuClient, counter: Counter,
                                                              images: Path, point: str) -> None:
    fault = KillCriuAt(point)
    with pytest.raises(CriuDiedError) as info:
        client.dump(CriuOptions(images_dir=images, pid=counter.pid), notify=fault)
    assert fault.fired and seen_scripts(fault) == PLAIN_DUMP[:PLAIN_DUMP.index(point) + 1]
    assert info.value.returncode == -signal.SIGKILL and info.value.killed == ()
    # Even after post-dump (images complete) CRIU dies before it kills the
    # tree: ptrace lets go of it and it runs on.
    assert counter.proc.poll() is None and counter.keeps_counting()
    assert Path(f"/proc/{counter.pid}/status").read_text().count("TracerPid:\t0") == 1


def test_notifies_of_a_netns_dump_and_restore(client: CriuClient, net_counter: Counter, images: Path,
                                              netns, freezer: str) -> None:
    on_dump = never_fires()
    client.dump(net_dump_opts(images, net_counter, netns, freezer), notify=on_dump)
    assert seen_scripts(on_dump) == NET_DUMP
    assert criu_nft_tables(netns.path)  # a finished dump leaves the netns locked for the restore
    net_counter.wait_dumped_away()
    on_restore = never_fires()
    with open(netns.path, "rb") as ns:
        restored = client.restore(
            CriuOptions(images_dir=images, inherit_fd=(InheritFd(key="extnet", fd=ns.fileno()),),
                        network_lock="nftables", manage_cgroups=True, manage_cgroups_mode="soft",
                        rst_sibling=True), notify=on_restore)
    try:
        assert seen_scripts(on_restore) == NET_RESTORE
        assert dict((s, p) for _, s, p in on_restore.seen)["setup-namespaces"] == restored.pid
        assert criu_nft_tables(netns.path) == [] and net_counter.keeps_counting()
    finally:
        os.kill(restored.pid, signal.SIGKILL)  # our child (rst_sibling): end and reap it
        os.waitpid(restored.pid, 0)


@pytest.mark.parametrize("point", NET_DUMP)
def test_criu_killed_at_a_netns_dump_notify(client: CriuClient, net_counter: Counter, images: Path,
                                            netns, freezer: str, point: str) -> None:
    fault = KillCriuAt(point)
    with pytest.raises(CriuDiedError):
        client.dump(net_dump_opts(images, net_counter, netns, freezer), notify=fault)
    assert fault.fired
    # CRIU thaws the freezer once it has seized the tree (ptrace holds it
    # then), so no notify point leaves the cgroup frozen.
    assert not frozen(freezer)
    assert net_counter.proc.poll() is None and net_counter.keeps_counting()
    # network-lock is sent *before* CRIU locks: from the next point on, the
    # running tree's netns stays locked (issue 7, bug 3).
    locked = NET_DUMP.index(point) > NET_DUMP.index("network-lock")
    assert bool(criu_nft_tables(netns.path)) is locked


# --- restore ----------------------------------------------------------------------


def dumped_away(client: CriuClient, counter: Counter, images: Path) -> None:
    client.dump(CriuOptions(images_dir=images, pid=counter.pid))
    counter.wait_dumped_away()


def our_zombies() -> list[int]:
    return [p for p, st in process_table().items() if st.ppid == os.getpid() and st.state == "Z"]


def restored_left(counter: Counter) -> list[int]:
    """Live tasks with the dumped tree's pid or its group (CRIU restores both)."""
    table = process_table()
    live = [p for p, st in table.items() if st.state != "Z"]
    return [p for p in live if p == counter.pid or (stat_fields(p) or [0, 0, 0])[2] == str(counter.pid)]


@pytest.mark.parametrize("rst_sibling", [False, True], ids=["child-of-criu", "rst_sibling"])
@pytest.mark.parametrize("point", PLAIN_RESTORE)
def test_criu_killed_at_a_restore_notify_leaves_nothing_running(client: CriuClient, counter: Counter,
                                                                images: Path, point: str,
                                                                rst_sibling: bool) -> None:
    dumped_away(client, counter, images)
    fault = KillCriuAt(point)
    with pytest.raises(CriuDiedError) as info:
        client.restore(CriuOptions(images_dir=images, rst_sibling=rst_sibling), notify=fault)
    counter.restored_pids.extend(info.value.killed)  # cleanup, should any survive
    assert fault.fired and info.value.request == "RESTORE"
    # From post-restore on CRIU had forked the tree (it would stay stuck, or
    # run unknown to the caller): the client killed it.
    assert bool(info.value.killed) is (point != "pre-restore")
    wait_until(lambda: restored_left(counter) == [], 10, "the restored tasks to end")
    assert our_zombies() == []  # an rst_sibling root is our child: reaped too


def test_truncated_pages_restore_ends_at_the_deadline(client: CriuClient, counter: Counter,
                                                      images: Path) -> None:
    dumped_away(client, counter, images)
    pages = images / "pages-1.img"
    os.truncate(pages, pages.stat().st_size // 2)
    before = {p for p, st in process_table().items() if st.ppid == os.getpid()}
    with pytest.raises(CriuTimeoutError) as info:
        # rst_sibling as the runtime restores; log level 4 as when CRIU loops
        # logging "Advanced iov 0 bytes" / "Preadv ... returned 0".
        client.restore(CriuOptions(images_dir=images, rst_sibling=True, log_level=4), timeout=4)
    err = info.value
    counter.restored_pids.extend(err.killed)
    assert err.request == "RESTORE" and err.timeout == 4 and err.criu_killed
    assert counter.pid in err.killed  # the restored root, our child through rst_sibling
    assert "was killed" in str(err) and err.log_path == str(images / "restore.log")
    assert stat_fields(err.criu_pid) is None and our_zombies() == []  # all reaped
    wait_until(lambda: restored_left(counter) == [], 10, "the half-restored tasks to end")
    assert {p for p, st in process_table().items() if st.ppid == os.getpid()} <= before
    # The loop wrote far more log than is ever read for its errors.
    log_size = Path(err.log_path).stat().st_size
    time.sleep(0.5)
    assert Path(err.log_path).stat().st_size == log_size  # nothing writes it any more
    assert log_size > LOG_SCAN_BYTES


def mounts_under(directory: Path) -> list[str]:
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        points = [line.split()[4] for line in f]
    return [p for p in points if p.startswith(f"{directory}/")]


def unmount_under(directory: Path) -> None:
    """Detach what CRIU mounted under ``directory`` (its cgroup yard), deepest first."""
    libc = ctypes.CDLL(None, use_errno=True)
    for point in sorted(mounts_under(directory), key=len, reverse=True):
        if libc.umount2(point.encode(), 2) != 0:  # MNT_DETACH
            raise OSError(ctypes.get_errno(), "umount2", point)


@pytest.fixture
def yard_cleanup(images: Path):
    try:
        yield
    finally:
        unmount_under(images)


@pytest.mark.parametrize("point", NET_RESTORE)
def test_criu_killed_at_a_netns_restore_notify(client: CriuClient, net_counter: Counter, images: Path,
                                               netns, freezer: str, point: str, yard_cleanup: None) -> None:
    client.dump(net_dump_opts(images, net_counter, netns, freezer))
    net_counter.wait_dumped_away()
    fault = KillCriuAt(point)
    with open(netns.path, "rb") as ns, pytest.raises(CriuDiedError) as info:
        client.restore(CriuOptions(images_dir=images, inherit_fd=(InheritFd(key="extnet", fd=ns.fileno()),),
                                   network_lock="nftables", manage_cgroups=True, manage_cgroups_mode="soft",
                                   rst_sibling=True), notify=fault)
    net_counter.restored_pids.extend(info.value.killed)
    assert fault.fired
    assert bool(info.value.killed) is (point != "pre-restore")
    wait_until(lambda: restored_left(net_counter) == [], 10, "the restored tasks to end")
    assert our_zombies() == []
    # The dump's lock is lifted only after network-unlock was answered.
    unlocked = NET_RESTORE.index(point) > NET_RESTORE.index("network-unlock")
    assert bool(criu_nft_tables(netns.path)) is not unlocked
    # CRIU's cgroup yard stays mounted inside the images dir (issue 7, bug 1).
    assert any(".criu.cgyard." in p for p in mounts_under(images))
