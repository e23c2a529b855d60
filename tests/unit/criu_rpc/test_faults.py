"""criu_rpc.faults: actions at CRIU's notify points, against the fake ``criu swrk``."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from criu_rpc import CriuClient, CriuDiedError, CriuOptions, InvalidOptionError, NotifyAbortedError, NotifyContext
from criu_rpc.faults import FaultAt, KillCriuAt, kill_criu
from criu_rpc.notify import NotifyHandler

from .fake_criu_fixture import fake_criu, zombies_of_us  # noqa: F401 (fixture)

DUMP_NOTIFIES = ("pre-dump", "query-ext-files", "post-dump")


def dump_steps() -> list[dict]:
    steps: list[dict] = [{"recv": "DUMP"}]
    for script in DUMP_NOTIFIES:
        steps += [{"send": f"notify_{script}"}, {"recv": "NOTIFY"}]
    return steps + [{"send": "dump"}]


def test_kill_criu_at_a_notify(fake_criu, tmp_path: Path) -> None:
    fault = KillCriuAt("query-ext-files")
    with pytest.raises(CriuDiedError) as info:
        CriuClient(fake_criu(dump_steps())).dump(CriuOptions(images_dir=tmp_path, pid=9), notify=fault)
    assert info.value.returncode == -signal.SIGKILL
    assert fault.fired and [s for _, s, _ in fault.seen] == ["pre-dump", "query-ext-files"]
    assert zombies_of_us() == []


def test_a_raising_action_aborts_and_the_inner_handler_still_runs(fake_criu, tmp_path: Path) -> None:
    calls: list[str] = []

    class Inner(NotifyHandler):
        def pre_dump(self, ctx: NotifyContext) -> None:
            calls.append(ctx.script)

        def query_ext_files(self, ctx: NotifyContext) -> list[str]:
            return ["file[1:2]"]

    boom = RuntimeError("injected")

    def fail(ctx: NotifyContext) -> None:
        raise boom

    failure = {"send_msg": {"type": "DUMP", "success": False}}
    steps = [{"recv": "DUMP"}, {"send": "notify_pre-dump"}, {"recv": "NOTIFY"},
             {"send": "notify_query-ext-files"}, {"recv": "NOTIFY"}, failure]
    fault = FaultAt("query-ext-files", fail, inner=Inner())
    with pytest.raises(NotifyAbortedError) as info:
        CriuClient(fake_criu(steps)).dump(CriuOptions(images_dir=tmp_path, pid=9), notify=fault)
    assert info.value.__cause__ is boom and info.value.script == "query-ext-files"
    assert calls == ["pre-dump"]
    acks = [e["request"] for e in fake_criu.journal() if "request" in e][1:]
    assert [a["notify_success"] for a in acks] == [True, False]


def test_occurrence_and_request_filters(fake_criu, tmp_path: Path) -> None:
    hits: list[str] = []
    never = FaultAt("pre-dump", hits.append, request="RESTORE")
    CriuClient(fake_criu(dump_steps())).dump(CriuOptions(images_dir=tmp_path, pid=9), notify=never)
    assert not never.fired and hits == [] and len(never.seen) == 3

    second = FaultAt("pre-dump", lambda ctx: hits.append(ctx.script), occurrence=2)
    CriuClient(fake_criu(dump_steps())).dump(CriuOptions(images_dir=tmp_path, pid=9), notify=second)
    assert not second.fired


@pytest.mark.parametrize("kw", [{"script": "pre-dumpp"}, {"script": "pre-dump", "occurrence": 0}])
def test_bad_fault_points(kw: dict) -> None:
    with pytest.raises(InvalidOptionError):
        FaultAt(action=lambda ctx: None, **kw)


def test_kill_criu_needs_criu_pid() -> None:
    with pytest.raises(LookupError):
        kill_criu(NotifyContext(script="pre-dump", request="DUMP"))
