"""The migration protocol's frames and token proofs (runtime.cr.migrate_proto), without sockets."""

from __future__ import annotations

import pytest

from runtime.cr.migrate_proto import (MAX_FRAME, Decoder, Kind, ProtocolError, check_proof, encode, json_bytes,
                                      proof, read_token)


def test_frames_round_trip_across_any_split():
    stream = encode(Kind.CHALLENGE, b"n" * 32) + encode(Kind.OFFER, json_bytes({"id": "web", "size": 3})) \
        + encode(Kind.END)
    for cut in range(len(stream) + 1):
        dec = Decoder()
        msgs = dec.feed(stream[:cut]) + dec.feed(stream[cut:])
        dec.eof()
        assert [m.kind for m in msgs] == [Kind.CHALLENGE, Kind.OFFER, Kind.END]
        assert msgs[1].json() == {"id": "web", "size": 3} and msgs[2].payload == b""


def test_truncated_frame_is_an_error_at_eof():
    dec = Decoder()
    assert dec.feed(encode(Kind.DATA, b"abcdef")[:-2]) == []
    with pytest.raises(ProtocolError, match="inside a frame"):
        dec.eof()


def test_unknown_message_type():
    with pytest.raises(ProtocolError, match="unknown message type 99"):
        Decoder().feed(bytes([99, 0, 0, 0, 0]))


def test_oversized_frame_refused_before_it_is_read():
    with pytest.raises(ProtocolError, match="over the"):
        Decoder().feed(bytes([Kind.DATA]) + (MAX_FRAME + 1).to_bytes(4, "big"))
    with pytest.raises(ValueError):
        encode(Kind.DATA, b"x" * (MAX_FRAME + 1))


def test_not_json():
    [msg] = Decoder().feed(encode(Kind.RESULT, b"\xff["))
    with pytest.raises(ProtocolError, match="not JSON"):
        msg.json()


def test_proofs_need_the_token_the_role_and_the_nonce():
    token, nonce = b"t" * 32, b"n" * 32
    good = proof(token, "source", nonce)
    assert check_proof(token, "source", nonce, good)
    assert not check_proof(b"u" * 32, "source", nonce, good)  # bad token
    assert not check_proof(token, "destination", nonce, good)  # a reflected proof
    assert not check_proof(token, "source", b"m" * 32, good)  # a replayed proof
    assert token not in good


def test_token_file(tmp_path):
    f = tmp_path / "token"
    f.write_bytes(b"  " + b"k" * 20 + b"\n")
    assert read_token(str(f)) == b"k" * 20
    f.write_bytes(b"short\n")
    with pytest.raises(ValueError, match="at least 16"):
        read_token(str(f))


def test_page_ticket_is_bound_to_the_session_and_the_token():
    from runtime.cr.migrate_proto import TICKET_FRAME_BYTES, check_ticket_frame, ticket

    token, nd, ns = b"t" * 32, b"d" * 32, b"s" * 32
    frame = encode(Kind.TICKET, ticket(token, nd, ns))
    assert len(frame) == TICKET_FRAME_BYTES and check_ticket_frame(token, nd, ns, frame)
    assert not check_ticket_frame(token, nd, b"o" * 32, frame)  # another session
    assert not check_ticket_frame(b"x" * 32, nd, ns, frame)  # another token
    assert not check_ticket_frame(token, nd, ns, encode(Kind.PROOF, ticket(token, nd, ns)))  # not a TICKET
    assert ticket(token, nd, ns) != proof(token, "source", nd)  # never a handshake proof


def test_only_page_images_may_come_back():
    from runtime.cr.migrate_proto import is_page_image

    assert is_page_image("pagemap-42.img") and is_page_image("pages-65537.img")
    for name in ("core-42.img", "pages-.img", "pages-1.img/x", "../pages-1.img", "pagemap-a.img", "pages-1.txt",
                 "criu-cr.manifest"):
        assert not is_page_image(name), name
