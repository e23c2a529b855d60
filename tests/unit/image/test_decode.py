"""criu_image decodes the stored real checkpoint exactly as crit 4.2.1 does."""

from __future__ import annotations

import base64

import pytest

from criu_image import Entry, UnknownImage, image_to_dict, read_image, to_dict
from tests.unit.image.sources import CRIT, MemSource, stored

PROTOBUF_IMAGES = sorted(CRIT)


def test_the_stored_checkpoint_covers_the_interesting_kinds() -> None:
    magics = {read_image(stored(), n).magic_name for n in PROTOBUF_IMAGES}
    assert {"INVENTORY", "PSTREE", "CORE", "MM", "PAGEMAP", "FDINFO", "FILES", "PIPES_DATA", "FIFO_DATA",
            "SK_QUEUES", "TCP_STREAM", "GHOST_FILE", "NETDEV", "NETNS", "STATS", "SECCOMP", "TIMENS",
            "IPC_VAR", "IPCNS_MSG", "IPCNS_SEM", "IPCNS_SHM", "UTSNS"} <= magics


@pytest.mark.parametrize("name", PROTOBUF_IMAGES)
@pytest.mark.parametrize("mode", ["plain", "pretty"])
def test_agrees_with_crit_decode(name: str, mode: str) -> None:
    image = read_image(stored(), name)
    assert image_to_dict(image, pretty=mode == "pretty") == CRIT[name][mode]


@pytest.mark.parametrize("name", sorted(set(stored().names()) - set(CRIT)))
def test_raw_images_are_refused_by_name(name: str) -> None:
    # crit refuses these too (no magic): pages, iproute2 and netfilter dumps.
    with pytest.raises(UnknownImage, match=name):
        read_image(stored(), name)


def _only(name: str) -> Entry:
    (entry,) = read_image(stored(), name).entries()
    return entry


@pytest.mark.parametrize(("name", "content"), [
    ("pipes-data.img", b"pipe data"),
    ("fifo-data.img", b"fifo!"),
    ("sk-queues.img", b"hello unix"),
    ("ghost-file-1.img", b"deleted but open\n"),
])
def test_payloads_are_the_bytes_the_process_left(name: str, content: bytes) -> None:
    # (The empty pipe between sleep and cat has an entry with no bytes.)
    payloads = [e.payload for e in read_image(stored(), name).entries()]
    assert [p for p in payloads if p] == [content]


def test_tcp_queues_of_the_established_pair() -> None:
    queues = sorted(e.payload for n in PROTOBUF_IMAGES if n.startswith("tcp-stream-")
                    for e in read_image(stored(), n).entries())
    assert queues == [b"client to server", b"server to client!"]


def test_payloads_can_be_skipped_and_fetched_later() -> None:
    image = read_image(stored(), "pipes-data.img")
    entry = next(e for e in image.entries(payloads=False) if e.payload_size)
    assert entry.payload is None and entry.payload_size == 9
    assert image.read_payload(entry) == b"pipe data"
    with pytest.raises(ValueError, match="without its payload"):
        to_dict(entry, "PIPES_DATA")


def test_forward_only_streams_decode_the_same() -> None:
    src = MemSource.copy_of(stored(), seekable=False)
    for name in PROTOBUF_IMAGES:
        image = read_image(src, name)
        assert image_to_dict(image) == CRIT[name]["plain"]
        assert [e.msg for e in image.entries(payloads=False)] == [e.msg for e in image.entries()]


def test_to_dict_of_a_bare_message_has_no_extra() -> None:
    entry = _only("sk-queues.img")
    assert to_dict(entry.msg) == {"id_for": entry.msg.id_for, "length": 10}
    assert to_dict(entry, "SK_QUEUES")["extra"] == base64.encodebytes(b"hello unix").decode()


def test_pagemap_head_then_entries() -> None:
    name = next(n for n in PROTOBUF_IMAGES if n.startswith("pagemap-"))
    head, *rest = read_image(stored(), name).entries()
    assert head.msg.DESCRIPTOR.name == "pagemap_head" and head.msg.pages_id > 0
    assert rest and all(e.msg.DESCRIPTOR.name == "pagemap_entry" for e in rest)


def _ipc(prefix: str) -> Entry:
    (name,) = [n for n in PROTOBUF_IMAGES if n.startswith(prefix)]
    (entry,) = read_image(stored(), name).entries()
    return entry


def test_sysv_ipc_objects_and_their_data() -> None:
    msg = _ipc("ipcns-msg-")
    assert msg.msg.qnum == 2
    extra = to_dict(msg, "IPCNS_MSG")["extra"]
    assert [m["mtype"] for m in extra[::2]] == [1, 2]
    assert [base64.decodebytes(t.encode()) for t in extra[1::2]] == [b"first message", b"second"]
    sem = _ipc("ipcns-sem-")
    assert to_dict(sem, "IPCNS_SEM")["extra"] == [7, 8, 9]
    shm = _ipc("ipcns-shm-")
    # CRIU 4 keeps the segment's pages in pagemap-shmem-*.img: nothing follows the entry
    assert shm.msg.size == 8192 and shm.msg.in_pagemaps and shm.payload == b""


def test_a_sparse_ghost_file_comes_in_chunks() -> None:
    head, *chunks = read_image(stored(), "ghost-file-2.img").entries()
    assert head.msg.chunks and head.msg.size == 65536 + len(b"after a hole")
    assert [(c.msg.off, c.payload.rstrip(b"\0")) for c in chunks] == [(0, b"head"), (65536, b"after a hole")]
