"""Stats and inventory images: stored bytes from CRIU 4.2.1 and hand-made ones."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from criu_rpc._pb import stats_pb2
from criu_rpc.errors import CriuError, ImageError
from criu_rpc.images import (IMG_SERVICE_MAGIC, INVENTORY_MAGIC, STATS_MAGIC, DumpStats, RestoreStats, has_inventory,
                             parse_stats, read_stats)

# Captured from a real `criu dump -t PID --shell-job` of `sleep 1000` and the
# matching `criu restore -d` (CRIU 4.2.1, Linux 6.18): 30 pages were written,
# pages-1.img was 122880 bytes = 30 * 4096.
DATA = Path(__file__).resolve().parents[1] / "data"


def stats_image(entry: stats_pb2.stats_entry, *, service_magic: bool = True) -> bytes:
    body = entry.SerializeToString()
    head = struct.pack("<I", IMG_SERVICE_MAGIC) if service_magic else b""
    return head + struct.pack("<II", STATS_MAGIC, len(body)) + body


def dump_entry(**extra: int) -> stats_pb2.stats_entry:
    entry = stats_pb2.stats_entry()
    entry.dump.freezing_time = 100
    entry.dump.frozen_time = 2500
    entry.dump.memdump_time = 300
    entry.dump.memwrite_time = 400
    entry.dump.pages_scanned = 1000
    entry.dump.pages_skipped_parent = 10
    entry.dump.pages_written = 990
    entry.dump.pages_lazy = 0
    for key, value in extra.items():
        setattr(entry.dump, key, value)
    return entry


# -- real CRIU images -----------------------------------------------------------

def test_real_dump_stats() -> None:
    stats = read_stats(DATA, "dump")
    assert isinstance(stats, DumpStats)
    assert stats.pages_written == 30
    assert stats.pages_scanned == 57
    assert stats.frozen_time == 7732 and stats.freezing_time == 192
    assert stats.memdump_time == 1074 and stats.memwrite_time == 244
    assert stats.page_pipes == 6 and stats.shpages_written == 0


def test_real_restore_stats() -> None:
    stats = read_stats(str(DATA), kind="restore")
    assert stats == RestoreStats(pages_compared=0, pages_skipped_cow=0, forking_time=5,
                                 restore_time=4921, pages_restored=30)


def test_real_inventory() -> None:
    assert has_inventory(DATA)
    assert (DATA / "inventory.img").read_bytes()[:4] == struct.pack("<I", INVENTORY_MAGIC)


def test_default_kind_is_dump() -> None:
    assert read_stats(DATA) == read_stats(DATA, "dump")


# -- hand-made images -----------------------------------------------------------

def test_round_trip_of_our_own_bytes() -> None:
    stats = parse_stats(stats_image(dump_entry(page_pipes=3)), "dump")
    assert stats == DumpStats(freezing_time=100, frozen_time=2500, memdump_time=300,
                              memwrite_time=400, pages_scanned=1000, pages_skipped_parent=10,
                              pages_written=990, pages_lazy=0, page_pipes=3)
    assert stats.irmap_resolve is None  # absent optional field


def test_image_without_service_magic_is_read() -> None:
    assert parse_stats(stats_image(dump_entry(), service_magic=False), "dump").pages_written == 990


def test_restore_entry_asked_for_dump() -> None:
    entry = stats_pb2.stats_entry()
    entry.restore.pages_compared = 1
    entry.restore.pages_skipped_cow = 2
    entry.restore.forking_time = 3
    entry.restore.restore_time = 4
    with pytest.raises(ImageError, match="no dump statistics"):
        parse_stats(stats_image(entry), "dump")
    assert parse_stats(stats_image(entry), "restore").pages_restored is None


@pytest.mark.parametrize("data, problem", [
    (b"", "truncated"),
    (struct.pack("<I", IMG_SERVICE_MAGIC), "truncated"),
    (struct.pack("<III", IMG_SERVICE_MAGIC, 0x12345678, 0), "magic 0x12345678"),
    (struct.pack("<III", IMG_SERVICE_MAGIC, STATS_MAGIC, 50) + b"\x0a", "only 1 present"),
    (struct.pack("<III", IMG_SERVICE_MAGIC, STATS_MAGIC, 0xFFFFFFFF), "implausible"),
    (struct.pack("<III", IMG_SERVICE_MAGIC, STATS_MAGIC, 2) + b"\x0a\x05", "decode"),
])
def test_malformed_images(data: bytes, problem: str) -> None:
    with pytest.raises(ImageError, match=problem) as info:
        parse_stats(data, "dump", path="/x/stats-dump")
    assert info.value.path == "/x/stats-dump"
    assert isinstance(info.value, CriuError)


def test_missing_required_field() -> None:
    entry = dump_entry()
    entry.dump.ClearField("pages_written")
    body = entry.SerializePartialToString()
    data = struct.pack("<III", IMG_SERVICE_MAGIC, STATS_MAGIC, len(body)) + body
    with pytest.raises(ImageError, match="pages_written"):
        parse_stats(data, "dump")


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(ImageError) as info:
        read_stats(tmp_path, "restore")
    assert info.value.path == str(tmp_path / "stats-restore")


def test_unknown_kind(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        read_stats(tmp_path, "pre-dump")  # type: ignore[call-overload]


def test_has_inventory_false_cases(tmp_path: Path) -> None:
    assert not has_inventory(tmp_path)
    assert not has_inventory(tmp_path / "nope")
    (tmp_path / "inventory.img").write_bytes(b"\x19\x43\x56\x54rest")  # common magic: wrong
    assert not has_inventory(tmp_path)
    (tmp_path / "inventory.img").write_bytes(b"\x16")
    assert not has_inventory(tmp_path)
    (tmp_path / "inventory.img").write_bytes(struct.pack("<I", INVENTORY_MAGIC))
    assert has_inventory(tmp_path)
