"""Notify dispatch: ack, nack, unknown scripts, fds, query-ext-files."""

from __future__ import annotations

import logging
import os

import pytest

from criu_rpc.notify import NOTIFY_SCRIPTS, NotifyContext, NotifyHandler, dispatch

ALL_SCRIPTS = ["pre-dump", "post-dump", "pre-restore", "post-restore", "network-lock", "network-unlock",
               "setup-namespaces", "post-setup-namespaces", "pre-resume", "post-resume",
               "orphan-pts-master", "status-ready", "query-ext-files", "pre-stream"]


def ctx(script: str, fd: int | None = None) -> NotifyContext:
    return NotifyContext(script=script, request="DUMP", fd=fd)


def test_every_criu_script_has_a_hook() -> None:
    assert sorted(NOTIFY_SCRIPTS) == sorted(ALL_SCRIPTS)
    for method in NOTIFY_SCRIPTS.values():
        assert callable(getattr(NotifyHandler, method))


@pytest.mark.parametrize("script", ALL_SCRIPTS)
def test_default_hooks_acknowledge(script: str) -> None:
    ack = dispatch(NotifyHandler(), ctx(script))
    assert ack.success and ack.error is None and ack.externals == ()


def test_each_script_reaches_its_own_method() -> None:
    seen = []

    class Recorder(NotifyHandler):
        pass

    for script, method in NOTIFY_SCRIPTS.items():
        setattr(Recorder, method, lambda self, c, m=method: seen.append((c.script, m)))
    for script in ALL_SCRIPTS:
        dispatch(Recorder(), ctx(script))
    assert seen == [(s, NOTIFY_SCRIPTS[s]) for s in ALL_SCRIPTS]


def test_raising_hook_nacks_with_its_exception() -> None:
    boom = RuntimeError("no")

    class Refuse(NotifyHandler):
        def pre_dump(self, c: NotifyContext) -> None:
            raise boom

    ack = dispatch(Refuse(), ctx("pre-dump"))
    assert not ack.success and ack.error is boom


def test_unknown_script_is_acknowledged_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="criu_rpc.notify"):
        ack = dispatch(NotifyHandler(), ctx("post-future-thing"))
    assert ack.success
    assert "post-future-thing" in caplog.text


def test_unknown_script_can_be_refused() -> None:
    class Strict(NotifyHandler):
        def unknown_script(self, c: NotifyContext) -> None:
            raise LookupError(c.script)

    assert not dispatch(Strict(), ctx("post-future-thing")).success


def test_query_ext_files_returns_externals() -> None:
    class Ext(NotifyHandler):
        def query_ext_files(self, c: NotifyContext) -> list[str]:
            return ["file[1:2]", "unix[3]"]

    assert dispatch(Ext(), ctx("query-ext-files")).externals == ("file[1:2]", "unix[3]")


def test_query_ext_files_must_return_strings() -> None:
    class Bad(NotifyHandler):
        def query_ext_files(self, c: NotifyContext) -> list[int]:
            return [1]

    ack = dispatch(Bad(), ctx("query-ext-files"))
    assert not ack.success and isinstance(ack.error, TypeError)


def test_received_fd_is_closed_unless_taken() -> None:
    r, w = os.pipe()
    try:
        c = ctx("orphan-pts-master", fd=r)
        c.close()
        with pytest.raises(OSError):
            os.fstat(r)
        r2, w2 = os.pipe()
        c = ctx("orphan-pts-master", fd=r2)

        class Keep(NotifyHandler):
            def orphan_pts_master(self, cx: NotifyContext) -> None:
                self.kept = cx.take_fd()

        h = Keep()
        dispatch(h, c)
        c.close()
        assert h.kept == r2
        os.fstat(r2)  # still open: the handler owns it
        os.close(r2)
        os.close(w2)
        with pytest.raises(LookupError):
            c.take_fd()
    finally:
        os.close(w)
