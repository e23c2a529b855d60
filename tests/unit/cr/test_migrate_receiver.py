"""The migration receiver against hand-made sources (no CRIU: each one fails before a restore)."""

from __future__ import annotations

import os
import socket
import threading

from runtime.cr.migrate import Receiver
import pytest

from runtime.cr.migrate_proto import Decoder, Kind, encode, json_bytes, proof, ticket

TOKEN = b"k" * 32


def _talk(tmp_path, script):
    root = str(tmp_path / "root")
    with Receiver(("127.0.0.1", 0), TOKEN, root=root, limit=1 << 20, timeout=5) as rx:
        out: list = []
        t = threading.Thread(target=lambda: out.append(rx.serve_once()))
        t.start()
        with socket.create_connection(rx.address, timeout=5) as s:
            dec = Decoder()
            [challenge] = dec.feed(s.recv(1024))
            replies = script(s, challenge.payload, dec)
        t.join(10)
    leftovers = os.listdir(root) if os.path.isdir(root) else []
    return out[0], replies, leftovers


def _prove(s, challenge, dec):
    s.sendall(encode(Kind.PROOF, proof(TOKEN, "source", challenge) + b"n" * 32))
    [proven] = dec.feed(s.recv(1024))
    assert proven.kind is Kind.PROVEN and proven.payload == proof(TOKEN, "destination", b"n" * 32)


def _rest(s, dec):
    msgs, data = [], b""
    while chunk := s.recv(65536):
        data += chunk
    msgs += dec.feed(data)
    return msgs


def test_bad_token_is_refused_with_the_reason(tmp_path):
    def script(s, challenge, dec):
        s.sendall(encode(Kind.PROOF, proof(b"x" * 32, "source", challenge) + b"n" * 32))
        return _rest(s, dec)

    got, replies, left = _talk(tmp_path, script)
    assert not got.ok and "bad token" in got.error
    assert [m.kind for m in replies] == [Kind.REFUSED] and b"bad token" in replies[0].payload
    assert left == []


def test_truncated_stream_answers_failure_and_leaves_nothing(tmp_path):
    def script(s, challenge, dec):
        _prove(s, challenge, dec)
        s.sendall(encode(Kind.OFFER, json_bytes({"id": "web"}))[:9])
        s.shutdown(socket.SHUT_WR)
        return _rest(s, dec)

    got, replies, left = _talk(tmp_path, script)
    assert not got.ok and "inside a frame" in got.error
    assert [m.kind for m in replies] == [Kind.RESULT] and replies[0].json()["ok"] is False
    assert left == []


def test_unknown_message_and_bad_id(tmp_path):
    def unknown(s, challenge, dec):
        _prove(s, challenge, dec)
        s.sendall(bytes([42, 0, 0, 0, 0]))
        return _rest(s, dec)

    got, replies, left = _talk(tmp_path, unknown)
    assert not got.ok and "unknown message type 42" in got.error and left == []

    def bad_id(s, challenge, dec):
        _prove(s, challenge, dec)
        s.sendall(encode(Kind.OFFER, json_bytes({"id": "../etc"})))
        return _rest(s, dec)

    got, replies, left = _talk(tmp_path / "b", bad_id)
    assert not got.ok and "offered container id" in got.error and replies[0].json()["ok"] is False and left == []


def test_page_connection_without_the_ticket_is_refused_before_criu(tmp_path):
    """The page port opens only after the token was proven, on the channel's address, for one
    connection; one that does not carry this session's ticket ends the migration (CRIU never runs)."""
    seen = {}

    def script(s, challenge, dec):
        _prove(s, challenge, dec)
        s.sendall(encode(Kind.OFFER, json_bytes({"id": "web"})))
        [pages] = dec.feed(s.recv(1024))
        assert pages.kind is Kind.PAGES
        port = pages.json()["port"]
        with socket.create_connection(("127.0.0.1", port), timeout=5) as p:
            p.sendall(encode(Kind.TICKET, ticket(TOKEN, challenge, b"m" * 32)))  # another session's nonce
            seen["first"] = True
        replies = _rest(s, dec)
        with pytest.raises(OSError):  # the listener is gone
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
        return replies

    got, replies, left = _talk(tmp_path, script)
    assert seen and not got.ok and "ticket" in got.error
    assert [m.kind for m in replies] == [Kind.RESULT] and replies[0].json()["ok"] is False
    assert left == []


def test_serve_forever_until_stopped(tmp_path):
    """In a thread: each migration reported through on_result; a set stop ends it between migrations."""
    root = str(tmp_path / "root")
    stop, seen = threading.Event(), []
    with Receiver(("127.0.0.1", 0), TOKEN, root=root, timeout=5) as rx:
        t = threading.Thread(target=rx.serve_forever, args=(stop,), kwargs={"on_result": seen.append})
        t.start()
        for _ in range(2):
            with socket.create_connection(rx.address, timeout=5) as s:
                dec = Decoder()
                [challenge] = dec.feed(s.recv(1024))
                s.sendall(encode(Kind.PROOF, proof(b"x" * 32, "source", challenge.payload) + b"n" * 32))
                _rest(s, dec)
        stop.set()
        t.join(10)
        assert not t.is_alive()
    assert [r.ok for r in seen] == [False, False] and all("bad token" in r.error for r in seen)
