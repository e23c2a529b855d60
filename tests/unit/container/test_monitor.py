"""runtime.container.monitor with a plain produce_init (no container, no root): detach, log copy, exit record."""

from __future__ import annotations

import json
import os
import time

from runtime.container.monitor import read_report, spawn_monitor


def _write_exit(path: str, init_pid: int, status: int) -> None:
    with open(path + ".tmp", "w") as f:
        json.dump({"init": init_pid, "status": status, "ppid_of_monitor": os.getppid()}, f)
    os.rename(path + ".tmp", path)


def test_monitor_runs_a_pluggable_init_and_records_its_exit(tmp_path):
    import functools

    log = str(tmp_path / "ctr.log")
    exit_file = str(tmp_path / "exit.json")
    out_r, out_w = os.pipe2(os.O_CLOEXEC)
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    rep_r, rep_w = os.pipe2(os.O_CLOEXEC)

    def produce_init() -> int:
        child = os.fork()
        if child == 0:
            os.dup2(out_w, 1)
            os.dup2(err_w, 2)
            os.write(1, b"to stdout\n")
            os.write(2, b"to stderr\n")
            time.sleep(0.2)
            os._exit(3)
        os.close(out_w)
        os.close(err_w)
        return child

    monitor = spawn_monitor(log_path=log, output_fds=(out_r, err_r), report_w=rep_w, keep_fds=(out_w, err_w),
                            produce_init=produce_init, on_exit=functools.partial(_write_exit, exit_file))
    for fd in (out_r, out_w, err_r, err_w, rep_w):
        os.close(fd)
    messages = read_report(rep_r, 10)
    assert messages["monitor"] == monitor
    assert messages["init"] > 0
    deadline = time.monotonic() + 10
    while not os.path.exists(exit_file) and time.monotonic() < deadline:
        time.sleep(0.02)
    with open(exit_file) as f:
        record = json.load(f)
    assert record["init"] == messages["init"] and record["status"] == 3
    assert record["ppid_of_monitor"] != os.getpid()  # detached: not our child
    with open(log, "rb") as f:
        assert sorted(f.read().splitlines()) == [b"to stderr", b"to stdout"]


def test_a_failing_produce_init_is_reported(tmp_path):
    rep_r, rep_w = os.pipe2(os.O_CLOEXEC)

    def produce_init() -> int:
        raise RuntimeError("could not make init")

    spawn_monitor(log_path=str(tmp_path / "log"), output_fds=(), report_w=rep_w, produce_init=produce_init,
                  on_exit=lambda pid, status: None)
    os.close(rep_w)
    messages = read_report(rep_r, 10)
    assert messages["error"] == "monitor: could not make init"
