"""How a restore turns the pages' hash verdict into CRIU's answer and the caller's error (runtime.cr.restore)."""

from __future__ import annotations

import json
import os
from types import SimpleNamespace

import pytest

from criu_rpc import NotifyHandler
from criu_rpc.errors import NotifyAbortedError
from runtime.cr import restore as rs
from runtime.errors import ImageIntegrityError, RestoreError


class _Verdict:
    def __init__(self, error: BaseException | None) -> None:
        self.error = error
        self.waited = 0

    def wait(self) -> None:
        self.waited += 1
        if self.error is not None:
            raise self.error


class _User(NotifyHandler):
    def __init__(self) -> None:
        self.seen: list[str] = []

    def post_restore(self, ctx: object) -> None:
        self.seen.append("post_restore")

    def pre_resume(self, ctx: object) -> None:
        self.seen.append("pre_resume")


def test_post_restore_waits_for_the_hashes_before_the_callers_hook() -> None:
    user, ok = _User(), _Verdict(None)
    hooks = rs._RestoreHooks(user, ok)  # type: ignore[arg-type]
    hooks.post_restore(SimpleNamespace(pid=42))
    hooks.pre_resume(SimpleNamespace(pid=42))
    assert hooks.pid == 42 and ok.waited == 1 and user.seen == ["post_restore", "pre_resume"]

    bad = ImageIntegrityError("/ck", "pages-1.img", "has other contents", container_id="web")
    user, failed = _User(), _Verdict(bad)
    hooks = rs._RestoreHooks(user, failed)  # type: ignore[arg-type]
    with pytest.raises(ImageIntegrityError):  # CRIU is nacked: it aborts before the tree runs
        hooks.post_restore(SimpleNamespace(pid=42))
    assert user.seen == []


def _reported(exc: BaseException, check: _Verdict | None) -> dict[str, object]:
    r, w = os.pipe()
    rs._report_criu_failure(w, exc, check)  # type: ignore[arg-type]
    os.close(w)
    with os.fdopen(r, "rb") as f:
        return json.loads(f.read())


def test_the_bad_file_crosses_the_report_pipe_as_an_integrity_error() -> None:
    bad = ImageIntegrityError("/ck", "pages-1.img", "has other contents (its hash differs)", container_id="web")
    aborted = NotifyAbortedError("RESTORE", "post-restore")
    aborted.__cause__ = bad
    messages = _reported(aborted, None)
    with pytest.raises(ImageIntegrityError) as err:
        rs._raise_failure("web", "/ck", {**messages, "error": "monitor: ..."})
    assert (err.value.file, err.value.container_id, err.value.image_dir) == ("pages-1.img", "web", "/ck")
    assert "hash differs" in str(err.value)


def test_criu_failing_on_damaged_pages_before_the_verdict_names_the_file() -> None:
    bad = ImageIntegrityError("/ck", "pages-2.img", "has other contents (its hash differs)")
    messages = _reported(NotifyAbortedError("RESTORE", "post-setup-namespaces"), _Verdict(bad))
    assert messages == {"integrity": {"file": "pages-2.img", "reason": bad.reason}}


def test_a_criu_failure_with_intact_pages_stays_criu_s_error() -> None:
    messages = _reported(NotifyAbortedError("RESTORE", "post-restore"), _Verdict(None))
    assert "criu" in messages and "integrity" not in messages
    with pytest.raises(RestoreError) as err:
        rs._raise_failure("web", "/ck", {**messages, "error": "x"})
    assert not isinstance(err.value, ImageIntegrityError) and "is kept" in str(err.value)
