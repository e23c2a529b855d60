"""CriuClient against real CRIU 4.2 through `criu swrk` (root)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from criu_rpc import (CriuClient, CriuDiedError, CriuOptions, FeatureUnavailableError, NotifyAbortedError,
                      NotifyContext, NotifyHandler, binary_version)

from .rpc_helpers import Counter, criu_path, stat_fields


@pytest.fixture
def criu() -> str:
    return criu_path()


@pytest.fixture
def client(criu: str) -> CriuClient:
    return CriuClient(criu)


@pytest.fixture
def counter(criu: str, tmp_path: Path):
    c = Counter(tmp_path)
    try:
        yield c
    finally:
        c.cleanup()


@pytest.fixture
def images(tmp_path: Path) -> Path:
    d = tmp_path / "images"
    d.mkdir(mode=0o700)
    return d


class Recorder(NotifyHandler):
    """Records every hook CRIU calls, in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int | None]] = []

    def __getattribute__(self, name: str):
        from criu_rpc.notify import NOTIFY_SCRIPTS

        if name in NOTIFY_SCRIPTS.values():
            return lambda ctx: object.__getattribute__(self, "calls").append((ctx.script, ctx.pid))
        return object.__getattribute__(self, name)


def criu_feature(criu: str, name: str) -> bool:
    return subprocess.run([criu, "check", "--feature", name], capture_output=True).returncode == 0


def zombies_of_us() -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = stat_fields(int(entry))
            if fields and fields[0] == "Z" and int(fields[1]) == os.getpid():
                found.append(int(entry))
    return found


def test_version_matches_the_binary(client: CriuClient, criu: str) -> None:
    assert client.version() == binary_version(criu)
    assert client.version() >= (4, 2)


def test_feature_check_matches_criu_check_feature(client: CriuClient, criu: str) -> None:
    features = client.feature_check()
    assert features.mem_track is criu_feature(criu, "mem_dirty_track")
    assert features.lazy_pages is criu_feature(criu, "uffd-noncoop")
    assert features.pidfd_store is criu_feature(criu, "pidfd_store")


def test_check(client: CriuClient) -> None:
    client.check()


def test_dump_and_restore_continue_the_counter(client: CriuClient, counter: Counter, images: Path) -> None:
    dumped = client.dump(CriuOptions(images_dir=images, pid=counter.pid, log_level=4))
    assert dumped.log_path == str(images / "dump.log") and os.path.exists(dumped.log_path)
    value_at_dump = counter.wait_dumped_away()
    time.sleep(0.2)
    assert counter.value() == value_at_dump  # really stopped

    restored = client.restore(CriuOptions(images_dir=images, log_level=4))
    counter.restored(restored.pid)
    assert restored.pid == counter.pid  # CRIU restores the same pid
    assert counter.keeps_counting()
    # Continued from the dumped value (a restart would begin again at 1).
    assert value_at_dump < counter.value() < value_at_dump + 200


def test_notify_callbacks_arrive_in_criu_order(client: CriuClient, counter: Counter, images: Path) -> None:
    on_dump = Recorder()
    client.dump(CriuOptions(images_dir=images, pid=counter.pid), notify=on_dump)
    assert [s for s, _ in on_dump.calls] == ["pre-dump", "query-ext-files", "post-dump"]
    counter.wait_dumped_away()

    on_restore = Recorder()
    restored = client.restore(CriuOptions(images_dir=images), notify=on_restore)
    counter.restored(restored.pid)
    assert [s for s, _ in on_restore.calls] == ["pre-restore", "post-restore", "pre-resume", "post-resume"]
    assert dict(on_restore.calls)["post-restore"] == restored.pid
    assert counter.keeps_counting()


def test_raising_pre_dump_hook_aborts_and_tree_keeps_running(client: CriuClient, counter: Counter,
                                                              images: Path) -> None:
    class NotNow(NotifyHandler):
        def pre_dump(self, ctx: NotifyContext) -> None:
            raise PermissionError("maintenance window closed")

    with pytest.raises(NotifyAbortedError) as info:
        client.dump(CriuOptions(images_dir=images, pid=counter.pid), notify=NotNow())
    assert isinstance(info.value.__cause__, PermissionError)
    assert counter.proc.poll() is None and counter.is_running_unfrozen()
    assert counter.keeps_counting()


def test_pre_dump_says_why_it_cannot_work(client: CriuClient, counter: Counter, images: Path,
                                          criu: str) -> None:
    if criu_feature(criu, "mem_dirty_track"):
        result = client.pre_dump(CriuOptions(images_dir=images, pid=counter.pid))
        assert os.path.exists(result.log_path)
        return
    with pytest.raises(FeatureUnavailableError, match="no memory tracking") as info:
        client.pre_dump(CriuOptions(images_dir=images, pid=counter.pid))
    assert info.value.feature == "mem_track"
    assert counter.keeps_counting()


def test_criu_killed_mid_dump(client: CriuClient, counter: Counter, images: Path) -> None:
    seen: list[int] = []

    class KillCriu(NotifyHandler):
        def pre_dump(self, ctx: NotifyContext) -> None:
            assert ctx.criu_pid is not None
            seen.append(ctx.criu_pid)
            os.kill(ctx.criu_pid, signal.SIGKILL)  # the swrk child we spawned, by its pid

    with pytest.raises(CriuDiedError) as info:
        client.dump(CriuOptions(images_dir=images, pid=counter.pid), notify=KillCriu())
    assert info.value.returncode == -signal.SIGKILL and info.value.request == "DUMP"
    assert stat_fields(seen[0]) is None  # reaped, not a zombie
    assert zombies_of_us() == []
    assert counter.keeps_counting()
