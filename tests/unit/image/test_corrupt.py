"""Damaged images give typed errors naming file and offset, never a crash or a quiet partial result."""

from __future__ import annotations

import random

import pytest

from criu_image import (BadPagemap, Checkpoint, ImageError, TruncatedImage, UnknownMagic, image_to_dict,
                        read_image)
from criu_image.framing import MAX_ENTRY
from criu_image.magic import IMG_COMMON_MAGIC
from tests.unit.image.sources import CRIT, IMAGES, MemSource, encode, stored

PROTOBUF_IMAGES = sorted(CRIT)


def _one(name: str, data: bytes) -> MemSource:
    return MemSource({name: data})


def _decode(src: MemSource, name: str) -> list[tuple[object, bytes | None]]:
    return [(e.msg, e.payload) for e in read_image(src, name).entries()]


def test_unknown_magic() -> None:
    data = IMG_COMMON_MAGIC.to_bytes(4, "little") + (0x12345678).to_bytes(4, "little")
    with pytest.raises(UnknownMagic) as exc:
        read_image(_one("x.img", data), "x.img")
    assert exc.value.magic == 0x12345678 and exc.value.offset == 4
    assert "x.img" in str(exc.value) and "0x12345678" in str(exc.value)


def test_empty_file_and_cut_magic() -> None:
    for data in (b"", b"\x19\x43"):
        with pytest.raises(TruncatedImage, match="magic"):
            read_image(_one("core-1.img", data), "core-1.img")


def test_truncated_entry_header() -> None:
    data = (IMAGES / "pstree.img").read_bytes()
    with pytest.raises(TruncatedImage, match="size of an entry") as exc:
        _decode(_one("pstree.img", data + b"\x05\x00"), "pstree.img")
    assert exc.value.offset == len(data)


def test_truncated_entry_and_payload() -> None:
    data = (IMAGES / "pstree.img").read_bytes()
    with pytest.raises(TruncatedImage, match=r"pstree_entry.*at offset 12"):
        _decode(_one("pstree.img", data[:12]), "pstree.img")
    pipes = (IMAGES / "pipes-data.img").read_bytes()
    first = next(read_image(stored(), "pipes-data.img").entries())
    for seekable in (True, False):
        src = MemSource({"pipes-data.img": pipes[:first.payload_offset + 3]}, seekable=seekable)
        for payloads in (True, False):
            with pytest.raises(TruncatedImage, match="payload") as exc:
                list(read_image(src, "pipes-data.img").entries(payloads=payloads))
            assert exc.value.offset == first.payload_offset


def test_a_size_no_entry_can_have() -> None:
    data = encode("PSTREE") + (MAX_ENTRY + 1).to_bytes(4, "little")
    with pytest.raises(ImageError, match="claims"):
        _decode(_one("pstree.img", data), "pstree.img")


def test_an_entry_missing_required_fields() -> None:
    from criu_image._pb import pstree_pb2

    data = encode("PSTREE", pstree_pb2.pstree_entry(pid=1))  # SerializeToString keeps partial messages
    with pytest.raises(ImageError, match="lacks required"):
        _decode(_one("pstree.img", data), "pstree.img")


def _boundaries(name: str) -> list[int]:
    """Offsets at which a cut leaves whole entries (the format has no entry count)."""
    entries = list(read_image(stored(), name).entries())
    ends = [e.offset for e in entries[1:]] + [(IMAGES / name).stat().st_size]
    return [entries[0].offset, *ends]


@pytest.mark.parametrize("name", PROTOBUF_IMAGES)
def test_every_truncation_fails_or_is_a_whole_prefix(name: str) -> None:
    data = (IMAGES / name).read_bytes()
    full = _decode(stored(), name)
    cuts = _boundaries(name)
    for cut in range(len(data)):
        src = _one(name, data[:cut])
        try:
            got = _decode(src, name)
        except ImageError as exc:
            assert name in str(exc)
            continue
        if name.startswith("ghost-file-") and not full[0][0].chunks:
            # An unchunked ghost file's content runs to EOF with no length to check against.
            assert got[0][1] == full[0][1][:len(got[0][1])]
            continue
        assert cut in cuts, f"a cut at {cut} decoded quietly to {len(got)} entries"
        assert got == full[:len(got)]


@pytest.mark.parametrize("name", PROTOBUF_IMAGES)
def test_flipped_bytes_never_crash(name: str) -> None:
    data = (IMAGES / name).read_bytes()
    rng = random.Random(name)
    for _ in range(60):
        damaged = bytearray(data)
        for _ in range(rng.randint(1, 3)):
            damaged[rng.randrange(len(damaged))] ^= 1 << rng.randrange(8)
        src = _one(name, bytes(damaged))
        try:
            image_to_dict(read_image(src, name), pretty=True)
        except ImageError:
            pass


def _pagemap_variant(pid: int, change) -> MemSource:
    """The stored checkpoint with pagemap-PID.img's entries rewritten by ``change``."""
    src = MemSource.copy_of(stored())
    head, *entries = [e.msg for e in read_image(stored(), f"pagemap-{pid}.img").entries()]
    change(entries)
    src.files[f"pagemap-{pid}.img"] = encode("PAGEMAP", head, *entries)
    return src


def test_pagemap_claiming_more_pages_than_the_file_holds() -> None:
    pid = Checkpoint(stored()).processes[0].pid

    def grow(entries):
        entries[-1].nr_pages += 1000
    with pytest.raises(BadPagemap, match=r"pages-\d+\.img"):
        Checkpoint(_pagemap_variant(pid, grow)).memory(pid)


def test_pagemap_overlapping_or_unaligned() -> None:
    pid = Checkpoint(stored()).processes[0].pid

    def overlap(entries):
        entries[1].vaddr = entries[0].vaddr
    def unalign(entries):
        entries[0].vaddr += 1
    for change in (overlap, unalign):
        with pytest.raises(BadPagemap, match=f"pagemap-{pid}.img"):
            Checkpoint(_pagemap_variant(pid, change)).memory(pid)


def test_pages_file_shortened_after_the_pagemap_was_read() -> None:
    src = MemSource.copy_of(stored())
    ckpt = Checkpoint(src)
    pid = ckpt.processes[0].pid
    mem = ckpt.memory(pid)
    src.files[mem.pages_name] = src.files[mem.pages_name][:4096]
    last = mem.pagemap[-1]
    with pytest.raises(BadPagemap):
        mem.read(last.vaddr, 16)
    with pytest.raises(BadPagemap):
        list(mem.iter_present())
