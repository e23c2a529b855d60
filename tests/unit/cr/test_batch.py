"""runtime.cr.batch: bounded parallelism, failure isolation, interruption, selection (no CRIU)."""

from __future__ import annotations

import os
import threading
import time

import pytest

from runtime.container.state import ContainerState, StateStore, Status
from runtime.cr import batch
from runtime.cr.options import CheckpointOptions, RestoreOptions
from runtime.errors import ContainerError
from runtime.linux.procfs import proc_start_time


class Gauge:
    """Counts the operations running at once; each waits until a few others have started (or all)."""

    def __init__(self, expect: int) -> None:
        self.lock = threading.Lock()
        self.now = self.peak = self.done = 0
        self.together = threading.Barrier(expect, timeout=30)

    def op(self, cid: str) -> str:
        with self.lock:
            self.now += 1
            self.peak = max(self.peak, self.now)
        try:
            self.together.wait()  # proves `expect` really run at once
        finally:
            with self.lock:
                self.now -= 1
                self.done += 1
        return cid.upper()


def test_at_most_parallel_at_once_and_all_done() -> None:
    g = Gauge(expect=3)
    res = batch.run_each([f"c{i}" for i in range(9)], g.op, parallel=3)
    assert g.peak == 3
    assert g.done == 9
    assert res.ok and res.parallel == 3
    assert [o.result for o in res.outcomes] == [f"C{i}" for i in range(9)]  # the order asked


def test_one_failure_does_not_stop_the_others() -> None:
    def op(cid: str) -> str:
        if cid == "bad":
            raise ContainerError("container 'bad' is checkpointed")
        return cid

    res = batch.run_each(["a", "bad", "b", "c"], op, parallel=2)
    assert not res.ok
    assert [o.container_id for o in res.failed] == ["bad"]
    assert "checkpointed" in str(res.failed[0].error)
    assert [o.result for o in res.succeeded] == ["a", "b", "c"]
    assert res.summary().startswith("3 of 4 succeeded, 1 failed")


def test_a_base_exception_in_one_is_its_outcome() -> None:
    def op(cid: str) -> str:
        if cid == "x":
            raise KeyboardInterrupt
        return cid

    res = batch.run_each(["x", "y"], op, parallel=1)
    assert isinstance(res.failed[0].error, KeyboardInterrupt)
    assert res.succeeded[0].container_id == "y"


def test_after_stop_nothing_new_begins() -> None:
    begun: list[str] = []
    stop = threading.Event()

    def op(cid: str) -> str:
        begun.append(cid)
        stop.set()  # e.g. a SIGINT arrives while the first one runs
        return cid

    res = batch.run_each(["a", "b", "c"], op, parallel=1, stop=stop.is_set)
    assert begun == ["a"]
    assert [o.skipped for o in res.outcomes] == [False, True, True]
    assert not res.ok


def test_parallel_is_bounded_by_the_work() -> None:
    assert batch.run_each(["a"], str, parallel=16).parallel == 1
    assert batch.run_each([], str, parallel=4).outcomes == ()
    assert batch.run_each(["a", "b"], str).parallel in (1, 2)


def test_refuses_duplicates_and_a_bad_parallel() -> None:
    with pytest.raises(ValueError):
        batch.run_each(["a", "a"], str)
    for bad in (0, -1):
        with pytest.raises(ValueError):
            batch.run_each(["a"], str, parallel=bad)


def test_select_by_live_status(tmp_path) -> None:
    store = StateStore(str(tmp_path))
    # a "running" one whose init is gone is stopped, and so not part of --all
    for cid, status, pid in (("b", "checkpointed", 0), ("a", "checkpointed", 0), ("r", "running", 0),
                             ("me", "running", os.getpid())):
        store.create_dir(cid)
        store.write(ContainerState(id=cid, status=status, bundle="/b", init_pid=pid,
                                   init_start_time=proc_start_time(pid) or 0 if pid else 0))
    assert batch.select(store, Status.CHECKPOINTED) == ["a", "b"]
    assert batch.select(store, Status.RUNNING) == ["me"]


def test_options_naming_one_place_are_refused(tmp_path) -> None:
    store = StateStore(str(tmp_path))
    with pytest.raises(ValueError):
        batch.checkpoint_all(store, CheckpointOptions(image_path=str(tmp_path / "x")))
    with pytest.raises(ValueError):
        batch.restore_all(store, RestoreOptions(netns="/run/netns/x"))


def test_nothing_to_do_is_ok(tmp_path) -> None:
    res = batch.checkpoint_all(StateStore(str(tmp_path)))
    assert res.ok and res.outcomes == ()


def test_a_signal_stops_new_ones_and_is_reported_not_raised(tmp_path, monkeypatch) -> None:
    import signal

    begun: list[str] = []

    def op(cid: str) -> str:
        begun.append(cid)
        os.kill(os.getpid(), signal.SIGTERM)  # held by the batch (main thread) until it ends
        time.sleep(0.3)  # the main thread runs Python's handler meanwhile (not a timing assertion)
        return cid

    res = batch._batch(["a", "b", "c"], op, 1, "the test")
    assert begun == ["a"]
    assert res.signal == signal.SIGTERM
    assert [o.skipped for o in res.outcomes] == [False, True, True]
