"""Checkpoint and restore cut at each of CRIU's notify points: CRIU killed, criu-cr killed, signalled.

The rule under test: a checkpoint either completes and is kept, or the
container runs on; a restore either runs and is recorded, or leaves nothing
running and the checkpoint restorable -- and the host is never harmed
(:func:`check_invariants`, with a canary cgroup in every hierarchy).
"""

from __future__ import annotations

import os
import signal

import pytest

from runtime.net import netlock
from tests.faults.faultkit import check_invariants, run_child
from tests.integration.container_helpers import cli, until

DUMP_POINTS = ("pre-dump", "network-lock", "post-dump")
RESTORE_POINTS = ("setup-namespaces", "post-setup-namespaces", "post-restore", "pre-resume")


# -- checkpoint -------------------------------------------------------------------

@pytest.mark.parametrize("point", DUMP_POINTS)
def test_criu_killed_during_checkpoint_leaves_the_container_running(web, canary, point):
    r = run_child(web, "checkpoint", point, "kill-criu")
    assert r.returncode == 1, r.stderr
    assert "cannot checkpoint" in r.stderr or "CRIU" in r.stderr, r.stderr
    assert check_invariants(web, canary) == "running"


@pytest.mark.parametrize("point", ("network-lock", "post-dump"))
def test_criu_cr_killed_during_checkpoint_is_settled_by_the_next_command(web, canary, point):
    r = run_child(web, "checkpoint", point, "kill-owner")
    assert r.returncode == -signal.SIGKILL, r.stderr
    # The next command finds the pending record, waits for CRIU, and says what happened.
    out = cli(web.root, "list")
    assert out.returncode == 0, out.stderr
    assert "was interrupted" in out.stderr, out.stderr
    assert check_invariants(web, canary) in ("running", "checkpointed")


@pytest.mark.parametrize("action,status", [("sigint", 130), ("sigterm", 143), ("sighup", 129)])
def test_a_signal_during_checkpoint_waits_for_it_to_complete(web, canary, action, status):
    r = run_child(web, "checkpoint", "network-lock", action)
    assert r.returncode == status, r.stderr
    assert "finishing the checkpoint first" in r.stderr
    assert web.ctr.refresh().status == "checkpointed"
    assert check_invariants(web, canary) == "checkpointed"


def test_sigterm_to_a_leave_running_checkpoint_leaves_nothing_frozen(web, canary):
    r = run_child(web, "checkpoint", "post-dump", "sigterm", "--leave-running")
    assert r.returncode == 143, r.stderr
    st = web.ctr.refresh()
    assert st.status == "running"
    assert os.path.isfile(os.path.join(st.extra["checkpoint"]["image_dir"], "inventory.img"))
    ex = web.ctr.exec(["true"], timeout=10)  # a frozen container would hang here
    assert ex.exit_code == 0
    assert check_invariants(web, canary) == "running"


def test_a_hook_that_fails_aborts_the_checkpoint(web, canary):
    r = run_child(web, "checkpoint", "network-lock", "fail")
    assert r.returncode == 1 and "fault injected at network-lock" in r.stderr, r.stderr
    assert check_invariants(web, canary) == "running"


def test_delete_after_an_interrupted_checkpoint_leaves_the_netns_unlocked(web, canary):
    r = run_child(web, "checkpoint", "post-dump", "kill-owner")
    assert r.returncode == -signal.SIGKILL
    d = cli(web.root, "delete", "-f", web.id)
    assert d.returncode == 0, d.stderr
    assert netlock.lock_commands(web.netns_path) == []


def test_a_second_command_during_a_checkpoint_is_busy(web, canary):
    import subprocess
    import sys

    from tests.integration.container_helpers import REPO

    env = dict(os.environ, CRIU_CR_ROOT=web.root, FAULT_SLEEP="3")
    child = subprocess.Popen([sys.executable, "-m", "tests.faults.child", "checkpoint", web.id,
                              "network-lock", "sleep"], cwd=REPO, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        until(lambda: "pending" in web.ctr.store.read(web.id).extra, what="the checkpoint to start")
        second = cli(web.root, "checkpoint", web.id)
        assert second.returncode == 4 and "is busy" in second.stderr, second.stderr
    finally:
        out, err = child.communicate(timeout=60)
    assert child.returncode == 0, err
    assert check_invariants(web, canary) == "checkpointed"


# -- restore ----------------------------------------------------------------------

@pytest.mark.parametrize("point", RESTORE_POINTS)
def test_criu_killed_during_restore_leaves_nothing_running_and_the_checkpoint_restorable(web, canary, point):
    web.ctr.checkpoint()
    r = run_child(web, "restore", point, "kill-criu")
    assert r.returncode == 1, r.stderr
    assert "is kept" in r.stderr, r.stderr
    st = web.ctr.refresh()
    assert st.status == "checkpointed"
    assert check_invariants(web, canary) == "checkpointed"
    # The seed of the host-damage bug: checkpoint again into the same directory.
    web.ctr.checkpoint()
    assert check_invariants(web, canary) == "checkpointed"


@pytest.mark.parametrize("point", ("setup-namespaces", "pre-resume", "post-resume"))
def test_criu_cr_killed_during_restore_is_recorded_by_the_next_command(web, canary, point):
    web.ctr.checkpoint()
    r = run_child(web, "restore", point, "kill-owner")
    assert r.returncode == -signal.SIGKILL, r.stderr
    out = cli(web.root, "list")
    assert out.returncode == 0 and "was interrupted" in out.stderr, out.stderr
    assert web.ctr.refresh().status == "running"
    assert check_invariants(web, canary) == "running"
    second = cli(web.root, "restore", web.id)
    assert second.returncode == 4 and "is running" in second.stderr, second.stderr


@pytest.mark.parametrize("action,status", [("sigint", 130), ("sigterm", 143)])
def test_a_signal_during_restore_waits_for_it_to_complete(web, canary, action, status):
    web.ctr.checkpoint()
    r = run_child(web, "restore", "post-restore", action)
    assert r.returncode == status, r.stderr
    assert "finishing the restore first" in r.stderr
    assert web.ctr.refresh().status == "running"
    assert check_invariants(web, canary) == "running"


def test_a_hook_that_fails_aborts_the_restore(web, canary):
    web.ctr.checkpoint()
    r = run_child(web, "restore", "setup-namespaces", "fail")
    assert r.returncode == 1 and "fault injected" in r.stderr, r.stderr
    assert check_invariants(web, canary) == "checkpointed"
