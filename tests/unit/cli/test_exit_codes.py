"""Each error the runtime raises gets its exit status and stable code from one table (runtime.cli.errormap)."""

from __future__ import annotations

import errno
import io
import json
import logging
import signal

import pytest

from criu_rpc import errors as rpc
from runtime import errors as rt
from runtime.cli import main
from runtime.cli.errormap import ErrorInfo, NotRootError, UsageError, classify, error_codes, error_object
from runtime.cli.exitcodes import DESCRIPTIONS, Exit
from runtime.container.create import ContainerStartError
from runtime.cr.meta import ImageDirError, ImageOwnerError
from runtime.cr.migrate import MigrationError
from tests.cli_schema import check

CASES = [
    (UsageError("restore: give the container's ID"), Exit.USAGE, "usage"),
    (ValueError("invalid container id '../x'"), Exit.USAGE, "invalid_argument"),
    (rpc.InvalidOptionError("pid", "must be positive"), Exit.USAGE, "invalid_option"),
    (rt.ContainerNotFoundError("web", "/run/criu-cr"), Exit.NOT_FOUND, "container_not_found"),
    (rt.CheckpointNotFoundError("web", "/x", "no checkpoint at /x"), Exit.NOT_FOUND, "checkpoint_not_found"),
    (FileNotFoundError(errno.ENOENT, "No such file or directory", "/img"), Exit.NOT_FOUND, "file_not_found"),
    (rt.ContainerStateError("web", "running", "restore"), Exit.WRONG_STATE, "wrong_state"),
    (rt.ContainerBusyError("web"), Exit.WRONG_STATE, "container_busy"),
    (rt.ContainerExistsError("web"), Exit.WRONG_STATE, "container_exists"),
    (ImageOwnerError("/img", "web", "big"), Exit.WRONG_STATE, "image_path_taken"),
    (rpc.CriuRpcError("DUMP", 1, "", "/img/dump.log", ["Error (x): boom"]), Exit.CRIU_FAILED, "criu_failed"),
    (rpc.CriuDiedError("RESTORE", -9), Exit.CRIU_FAILED, "criu_died"),
    (rpc.CriuTimeoutError("DUMP", 5.0), Exit.CRIU_FAILED, "criu_timeout"),
    (rpc.NotifyAbortedError("DUMP", "network-lock"), Exit.CRIU_FAILED, "criu_aborted"),
    (rpc.CriuProtocolError("garbage"), Exit.CRIU_FAILED, "criu_protocol"),
    (rt.CheckpointError("web", "CRIU DUMP failed", log_path="/img/dump.log", log_errors=["Error: x"]),
     Exit.CRIU_FAILED, "criu_failed"),
    (rt.RestoreError("web", "restore failed", log_errors=["Error: x"]), Exit.CRIU_FAILED, "criu_failed"),
    (NotRootError("criu-cr needs root"), Exit.ENVIRONMENT, "not_root"),
    (rpc.CriuNotFoundError(["/usr/sbin/criu"]), Exit.ENVIRONMENT, "criu_not_found"),
    (rpc.CriuVersionError((3, 17), (4, 2), "Linux 6.18"), Exit.ENVIRONMENT, "criu_too_old"),
    (rpc.FeatureUnavailableError("mem_track", "no dirty tracking"), Exit.ENVIRONMENT, "feature_unavailable"),
    (PermissionError(errno.EPERM, "Operation not permitted"), Exit.ENVIRONMENT, "permission_denied"),
    (OSError(errno.ENOSPC, "No space left on device"), Exit.ENVIRONMENT, "no_space"),
    (rt.CheckpointError("web", "cannot write the manifest"), Exit.FAILED, "checkpoint_refused"),
    (rt.RestoreError("web", "network namespace /run/netns/x is gone"), Exit.FAILED, "restore_refused"),
    (rt.ImageIntegrityError("/img", "pages-1.img", "is missing"), Exit.FAILED, "checkpoint_damaged"),
    (ImageDirError("/img", "holds files that are not a checkpoint"), Exit.FAILED, "image_path_unusable"),
    (rpc.ImageError("/img/inventory.img", "truncated"), Exit.FAILED, "image_invalid"),
    (rt.SpecError("root.path", "missing"), Exit.FAILED, "invalid_config"),
    (rt.ArchiveError("/x.tar", "", "not an archive"), Exit.FAILED, "invalid_archive"),
    (ContainerStartError("web", "exec: x: not found"), Exit.FAILED, "start_failed"),
    (rt.CgroupError("/sys/fs/cgroup/x", "gone"), Exit.FAILED, "cgroup_failed"),
    (rt.NetnsError("ccr-x", "gone"), Exit.FAILED, "network_failed"),
    (MigrationError("web", "refused"), Exit.FAILED, "migration_failed"),
    (rt.ContainerError("something"), Exit.FAILED, "runtime_error"),
    (rpc.IllegalStepError("not now"), Exit.FAILED, "criu_error"),
    (OSError(errno.EIO, "I/O error"), Exit.FAILED, "os_error"),
]


@pytest.mark.parametrize(("exc", "status", "code"), CASES, ids=[c[2] + ":" + type(c[0]).__name__ for c in CASES])
def test_each_error_class_has_its_exit_status_and_code(exc, status, code):
    info = classify(exc)
    assert info is not None and (info.exit, info.code) == (status, code)
    assert info.message == str(exc)
    assert error_codes()[code] == status  # the code belongs to one status, the documented one


def test_a_restore_failure_chained_from_criu_is_criu_failed():
    try:
        try:
            raise rpc.CriuDiedError("RESTORE", 1)
        except rpc.CriuError as cause:
            raise rt.RestoreError("web", "CRIU died") from cause
    except rt.RestoreError as exc:
        assert classify(exc).exit == Exit.CRIU_FAILED


def test_an_unexpected_error_is_not_classified():
    assert classify(RuntimeError("bug")) is None
    assert classify(KeyError("x")) is None


def test_error_object_carries_the_facts():
    exc = rpc.CriuRpcError("DUMP", 2, "", "/img/dump.log", ["Error (criu/x.c:1): boom"])
    obj = error_object(classify(exc))["error"]
    assert obj["code"] == "criu_failed" and obj["exit"] == 5 and obj["request"] == "DUMP"
    assert obj["log_path"] == "/img/dump.log" and obj["log_errors"] == ["Error (criu/x.c:1): boom"]
    assert obj["cr_errno"] == 2 and "boom" in obj["message"] and obj["hint"]
    state = error_object(classify(rt.ContainerStateError("web", "paused", "checkpoint")))["error"]
    assert (state["status"], state["action"], state["hint"]) == ("paused", "checkpoint", "resume it first")
    oserr = error_object(classify(FileNotFoundError(errno.ENOENT, "No such file", "/img")))["error"]
    assert oserr["path"] == "/img"
    from pathlib import Path

    odd = rt.CgroupError("x", "gone")
    odd.path = Path("/sys/fs/cgroup/x")  # whatever an error holds, the object stays JSON
    assert json.loads(json.dumps(error_object(classify(odd))))["error"]["path"] == "/sys/fs/cgroup/x"


def test_every_status_has_a_description_and_signals_keep_128_plus_n():
    assert set(DESCRIPTIONS) == set(Exit)
    assert (Exit.HANGUP, Exit.INTERRUPTED, Exit.TERMINATED) == (129, 130, 143)
    assert (Exit.USAGE, Exit.NOT_FOUND, Exit.WRONG_STATE, Exit.CRIU_FAILED, Exit.ENVIRONMENT) == (2, 3, 4, 5, 6)


def _run(argv, monkeypatch, capsys):
    """main() in-process, leaving the criu_cr logger and the signal handlers as it found them
    (the CLI's SIGTERM handler would make a child that pyroute2 forks in a later test survive SIGTERM)."""
    logger = logging.getLogger("criu_cr")
    before, level = list(logger.handlers), logger.level
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        status = main(argv)
        return status, capsys.readouterr()
    finally:
        logger.handlers[:] = before
        logger.setLevel(level)
        for sig, handler in handlers.items():
            signal.signal(sig, handler)


def test_usage_errors_exit_2_in_text_and_json(monkeypatch, capsys):
    status, out = _run(["checkpoint", "--compress", "lz4", "web"], monkeypatch, capsys)
    assert status == 2 and "usage: criu-cr checkpoint" in out.err
    assert "criu-cr: error: checkpoint: argument -c/--compress: invalid choice: 'lz4'" in out.err
    monkeypatch.setattr("runtime.cli.has_sys_admin", lambda: True)
    status, out = _run(["checkpoint"], monkeypatch, capsys)
    assert status == 2 and "criu-cr: error: checkpoint: give the container's ID (or --all)" in out.err
    status, out = _run(["checkpoint", "--json"], monkeypatch, capsys)
    obj = json.loads(out.err)
    assert status == 2 and obj["error"]["code"] == "usage" and obj["error"]["exit"] == 2 and out.out == ""


def test_conflicting_options_are_usage_errors(monkeypatch, capsys):
    monkeypatch.setattr("runtime.cli.has_sys_admin", lambda: True)
    status, out = _run(["restore", "--format", "json", "--name", "x"], monkeypatch, capsys)
    assert status == 2 and json.loads(out.err)["error"]["message"].startswith("restore: give the container's ID")


def test_not_root_is_an_environment_error(monkeypatch, capsys):
    monkeypatch.setattr("runtime.cli.has_sys_admin", lambda: False)
    status, out = _run(["--format", "json", "list"], monkeypatch, capsys)
    err = json.loads(out.err)["error"]
    assert status == 6 and err["code"] == "not_root" and "sudo" in err["message"]
    status, out = _run(["list"], monkeypatch, capsys)
    assert status == 6 and out.err.startswith("criu-cr: error: criu-cr needs root")


def test_an_unexpected_error_in_json_is_internal(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr("runtime.cli.has_sys_admin", lambda: True)

    def broken(root):
        raise RuntimeError("a bug")

    monkeypatch.setattr("runtime.container.Container.list", broken)
    status, out = _run(["--root", str(tmp_path), "list", "--json"], monkeypatch, capsys)
    assert status == 1 and json.loads(out.err)["error"] == {"code": "internal", "exit": 1,
                                                            "message": "RuntimeError: a bug", "hint": ""}
    with pytest.raises(RuntimeError):  # text: the traceback shows, as before
        _run(["--root", str(tmp_path), "list"], monkeypatch, capsys)


def test_report_is_one_line(capsys):
    from runtime.cli.output import report_error

    err = io.StringIO()
    assert report_error(ErrorInfo(exit=Exit.NOT_FOUND, code="x", message="m"), "text", err) == 3
    assert err.getvalue() == "criu-cr: error: m\n"


@pytest.mark.parametrize(("status", "fmt"), [(130, "json"), (143, "json"), (129, "text")])
def test_an_interrupt_reports_128_plus_the_signal(status, fmt, capsys):
    from runtime.cli import report_interrupt

    assert report_interrupt("interrupted by SIGTERM; container 'web' is running", status, fmt) == status
    err = capsys.readouterr().err
    if fmt == "json":
        obj = json.loads(err)
        check(obj, "error.json")
        assert obj["error"]["code"] == "interrupted" and obj["error"]["exit"] == status
    else:
        assert err == "criu-cr: interrupted by SIGTERM; container 'web' is running\n"
