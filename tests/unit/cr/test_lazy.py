"""Post-copy's pure parts: the lazy concern of CRIU's options, the options' checks, the page-server probe."""

from __future__ import annotations

import signal
import socket
import threading

import pytest

from criu_rpc import PageServer
from runtime.cr import criu_options, lazy, migrate_lazy
from runtime.cr.criu_options import DUMP, RESTORE, CrContext
from runtime.cr.migrate import _answer, _Move, _Refused
from runtime.cr.migrate_proto import Kind, json_bytes
from runtime.cr.migrate_wire import Conn, send_file
from runtime.cr.options import CheckpointOptions, LazyPages, RestoreOptions


def test_a_lazy_dump_serves_its_pages_on_the_port():
    fields = criu_options.build(CrContext(rootfs="/r", pid=7, lazy_port=4711), DUMP).fields
    assert fields["lazy_pages"] is True and fields["ps"] == PageServer(port=4711)


def test_a_lazy_restore_leaves_the_pages_to_the_daemon():
    assert criu_options.build(CrContext(rootfs="/r", lazy_restore=True), RESTORE).fields["lazy_pages"] is True
    assert "lazy_pages" not in criu_options.build(CrContext(rootfs="/r", lazy_restore=True), DUMP).fields


def test_neither_by_default():
    for direction in (DUMP, RESTORE):
        fields = criu_options.build(CrContext(rootfs="/r", pid=7), direction).fields
        assert "lazy_pages" not in fields and "ps" not in fields


def test_lazy_pages_is_a_page_server_or_the_local_images():
    assert LazyPages().address is None
    assert LazyPages(address="10.0.0.1", port=9).port == 9
    with pytest.raises(ValueError, match="both"):
        LazyPages(address="10.0.0.1")
    with pytest.raises(ValueError, match="port"):
        LazyPages(address="10.0.0.1", port=70000)
    assert RestoreOptions(lazy=LazyPages()).lazy == LazyPages()


def test_a_lazy_checkpoint_leaves_the_machine_and_stops_the_container():
    assert CheckpointOptions(lazy_port=4711).portable  # it carries the rootfs diff
    with pytest.raises(ValueError):
        CheckpointOptions(lazy_port=4711, leave_running=True)
    with pytest.raises(ValueError):
        CheckpointOptions(lazy_port=0)


def test_page_server_problem(monkeypatch, tmp_path):
    status = tmp_path / "status"
    limit = tmp_path / "pipe-max-size"
    real_open = open

    def fake_open(path, *a, **kw):
        return real_open({"/proc/self/status": status, lazy._PIPE_MAX_SIZE: limit}.get(path, path), *a, **kw)

    monkeypatch.setattr("builtins.open", fake_open)
    status.write_text("Name:\tx\nCapEff:\t000001fffeffffff\n")  # no CAP_SYS_RESOURCE (bit 24)
    limit.write_text("1048576\n")
    assert "sysctl -w fs.pipe-max-size=4194304" in lazy.page_server_problem()
    limit.write_text("4194304\n")
    assert lazy.page_server_problem() is None
    limit.write_text("1048576\n")
    status.write_text("CapEff:\t000001ffffffffff\n")  # with it, CRIU may grow pipes beyond the limit
    assert lazy.page_server_problem() is None


def test_tcp_states_of_the_page_server(monkeypatch):
    rows = [["0:", "00000000:1267", "00000000:0000", "0A"],  # 4711 listening
            ["1:", "0A00000A:1267", "0A00000B:9C40", "01"],  # 4711 established with a client
            ["2:", "00000000:1268", "00000000:0000", "0A"]]  # 4712 listening only
    monkeypatch.setattr(migrate_lazy, "_tcp_rows", lambda: rows)
    assert migrate_lazy._page_client(4711)
    assert not migrate_lazy._page_client(4712)


# -- the source's conversation, against a hand-made destination ---------------------------------

class _Ctx:
    criu_pid = 4242


class _Ctr:
    id = "web"
    store = None


def _source(monkeypatch, tmp_path):
    images = tmp_path / "rest.tar"
    images.write_bytes(b"the images" * 10)

    def hand_over(self, work_dir):  # migrate._Move._hand_over without the archive writing
        self.conn.send(Kind.ARCHIVE, json_bytes({"size": images.stat().st_size}))
        self.sent_archive = send_file(self.conn, str(images))
        _answer(self.conn, Kind.STAGED)

    killed: list[tuple[int, int]] = []
    monkeypatch.setattr(_Move, "_hand_over", hand_over)
    monkeypatch.setattr(migrate_lazy.os, "kill", lambda pid, sig: killed.append((pid, sig)))
    ours, theirs = socket.socketpair()
    src = migrate_lazy._Source(_Move(_Ctr(), Conn(ours), None, None, "none", None), 4711)
    src.pre_dump(_Ctx())
    return src, Conn(theirs), killed


def _take_images(dest):
    assert dest.recv(Kind.ARCHIVE).json()["size"] == 100
    while dest.recv(Kind.DATA, Kind.END).kind is Kind.DATA:
        pass


def test_a_destination_refusing_the_images_aborts_the_dump(monkeypatch, tmp_path):
    src, dest, killed = _source(monkeypatch, tmp_path)

    def refuse():
        _take_images(dest)
        dest.send(Kind.RESULT, json_bytes({"ok": False, "error": "no room"}))

    t = threading.Thread(target=refuse)
    t.start()
    with pytest.raises(_Refused, match="no room"):
        src.send_images(str(tmp_path))
    t.join(5)
    assert killed == [(4242, signal.SIGKILL)]  # CRIU 4.2.1 would serve the pages anyway
    assert "no room" in src.failure


def test_the_conversation_until_the_last_page(monkeypatch, tmp_path):
    src, dest, killed = _source(monkeypatch, tmp_path)
    seen: dict = {}

    def destination():
        _take_images(dest)
        dest.send(Kind.STAGED, json_bytes({}))
        seen["go"] = dest.recv(Kind.GO).json()
        dest.send(Kind.RESULT, json_bytes({"ok": True, "phase": "running", "pid": 77, "restore_us": 5000}))
        dest.send(Kind.RESULT, json_bytes({"ok": True, "phase": "pages", "pages_s": 1.5}))

    t = threading.Thread(target=destination)
    t.start()
    src.send_images(str(tmp_path))  # returns once the destination staged them: CRIU may serve the pages
    src.status_ready(_Ctx())  # CRIU's page server listens
    src.join(5)
    t.join(5)
    assert seen["go"] == {"pages": "serving"}
    assert src.running["pid"] == 77 and src.t_images <= src.t_running <= src.t_pages
    assert killed == [] and src.failure is None


def test_a_destination_whose_restore_fails_makes_the_source_take_it_back(monkeypatch, tmp_path):
    src, dest, killed = _source(monkeypatch, tmp_path)

    def destination():
        _take_images(dest)
        dest.send(Kind.STAGED, json_bytes({}))
        dest.recv(Kind.GO)
        dest.send(Kind.RESULT, json_bytes({"ok": False, "error": "port 80 taken"}))

    t = threading.Thread(target=destination)
    t.start()
    src.send_images(str(tmp_path))
    src.status_ready(_Ctx())
    src.join(5)
    t.join(5)
    assert "port 80 taken" in src.failure and killed == [(4242, signal.SIGKILL)]
