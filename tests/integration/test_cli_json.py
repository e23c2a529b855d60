"""Real commands with --format json: results fit their documented schemas, errors are one JSON object
on stderr with the documented exit status, --debug shows what is asked of CRIU (real CRIU 4.2, root)."""

from __future__ import annotations

import json
import socket

import pytest

from runtime.testing.net import wait_tcp
from tests.cli_schema import check
from tests.integration.container_helpers import cli, echo

pytestmark = pytest.mark.usefixtures("container_prereqs")


def json_cli(root: str, *args: str, status: int = 0) -> object:
    """The command's JSON result (stdout), once its exit status is ``status`` and stderr holds no error."""
    r = cli(root, "--format", "json", *args)
    assert r.returncode == status, r.stderr
    for line in r.stderr.splitlines():  # stderr in JSON mode: JSON lines only (log records)
        check(json.loads(line), "log.json")
    return json.loads(r.stdout)


def json_error(root: str, *args: str, status: int) -> dict:
    """The JSON error object a failing command writes on stderr (its last line), checked against error.json."""
    r = cli(root, *args, "--json")
    assert r.returncode == status, (r.stdout, r.stderr)
    assert r.stdout == ""
    obj = json.loads(r.stderr.splitlines()[-1])
    check(obj, "error.json")
    assert obj["error"]["exit"] == status
    return obj["error"]


def test_results_fit_their_schemas(service, state_root):
    ctr, net = service
    check(json_cli(state_root, "state", ctr.id), "state.json")
    listed = json_cli(state_root, "list")
    check(listed, "list.json")
    assert [s["status"] for s in listed if s["id"] == ctr.id] == ["running"]
    pids = json_cli(state_root, "ps", ctr.id)
    check(pids, "ps.json")
    assert ctr.state()["pid"] in pids
    paused = json_cli(state_root, "pause", ctr.id)
    check(paused, "state.json")
    assert paused["status"] == "paused"
    check(json_cli(state_root, "resume", ctr.id), "state.json")

    taken = json_cli(state_root, "checkpoint", "--print-stats", ctr.id)
    check(taken, "checkpoint.json")
    assert taken["id"] == ctr.id and taken["criu_statistics"]["pages_written"] > 0
    assert taken["statistics"]["container_statistics"][0]["id"] == ctr.id
    assert ctr.refresh().status == "checkpointed"
    back = json_cli(state_root, "restore", ctr.id)
    check(back, "restore.json")
    assert back["pid"] == ctr.state()["pid"] and back["criu_statistics"]["restore_time"] > 0
    wait_tcp(net.ip, 80, timeout=10)


def test_check_and_version(state_root):
    report = json_cli(state_root, "check")
    check(report, "check.json")
    assert report["ok"] is True  # root + CRIU 4.2: checkpointing works here
    # /run is no tmpfs here: criu-cr keeps CRIU's kernel facts itself, and says so
    assert report["kdat_cache"] in ("present", "made", "tmpfs"), report["kdat_cache"]
    version = json_cli(state_root, "version")
    check(version, "version.json")
    assert version["criu"]["version"].startswith("4.2")


def test_not_found_is_3(state_root, tmp_path):
    err = json_error(state_root, "state", "nope", status=3)
    assert err["code"] == "container_not_found" and err["container_id"] == "nope" and err["hint"]
    r = cli(state_root, "delete", "nope")
    assert r.returncode == 3 and r.stderr.startswith("criu-cr: error: container 'nope' does not exist")


def test_wrong_state_is_4_and_a_missing_checkpoint_3(service, state_root, tmp_path):
    ctr, net = service
    err = json_error(state_root, "restore", ctr.id, status=4)
    assert (err["code"], err["status"], err["action"]) == ("wrong_state", "running", "restore")
    err = json_error(state_root, "restore", "--image-path", str(tmp_path / "none"), "copy", status=3)
    assert err["code"] == "checkpoint_not_found" and err["path"] == str(tmp_path / "none")
    assert ctr.refresh().status == "running"


def test_criu_failure_is_5_with_the_log(service, state_root):
    ctr, net = service
    wait_tcp(net.ip, 7000, timeout=10)
    with socket.create_connection((net.ip, 7000), timeout=5) as sock:
        assert echo(sock, b"ping\n") == b"ping\n"
        # An established connection without --tcp-established: CRIU refuses the dump.
        err = json_error(state_root, "checkpoint", ctr.id, status=5)
    assert err["code"] == "criu_failed" and "--tcp-established" in err["message"] + err["hint"]
    assert err["log_path"].endswith("dump.log") and err["log_errors"]
    assert ctr.refresh().status == "running"


def test_unusable_criu_is_6(service, state_root, tmp_path):
    ctr, net = service
    old = tmp_path / "criu"
    old.write_text("#!/bin/sh\n[ \"$1\" = --version ] && echo 'Version: 4.1' && exit 0\nexit 1\n")
    old.chmod(0o755)
    err = json_error(state_root, "--criu", str(old), "checkpoint", ctr.id, status=6)
    assert err["code"] == "criu_too_old"
    assert ctr.refresh().status == "running"


def test_debug_shows_the_request_the_fds_and_the_phases(service, state_root):
    ctr, net = service
    r = cli(state_root, "--debug", "checkpoint", "--leave-running", ctr.id)
    assert r.returncode == 0, r.stderr
    lines = r.stderr.splitlines()
    assert all(line.startswith("criu-cr: ") for line in lines), r.stderr
    request = next(line for line in lines if "CRIU DUMP request" in line)
    assert "criu_cr.rpc:" in request and f"pid={ctr.state()['pid']}" in request and "leave_running=True" in request
    assert any("swrk, handing it fds [" in line for line in lines)
    assert any("CRIU DUMP answered in" in line and "success=True" in line for line in lines)
    for phase in ("freezing its cgroup", "CRIU's dump", "installing"):
        assert any(f"checkpoint: {phase}" in line and " took " in line for line in lines), phase
    r = cli(state_root, "--debug", "restore", ctr.id)  # a running container: refused, and logged plainly
    assert r.returncode == 4 and r.stderr.splitlines()[-1].startswith("criu-cr: error: cannot restore")
    r = cli(state_root, "--quiet", "checkpoint", "--leave-running", ctr.id)
    assert r.returncode == 0 and r.stderr == ""
