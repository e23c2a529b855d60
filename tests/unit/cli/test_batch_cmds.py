"""criu-cr checkpoint/restore --all and several ids: parsing, refusals, the per-container report."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from runtime.cli import batch_cmds, build_parser
from runtime.cli.errormap import UsageError
from runtime.cli.exitcodes import Exit
from runtime.cli.handlers import Handler
from runtime.cli.output import render
from runtime.container.state import Status
from runtime.cr.batch import BatchResult, Outcome
from runtime.errors import ContainerStateError
from tests.cli_schema import check


def _parse(*argv: str):
    return build_parser().parse_args(list(argv))


def _handler(args) -> str:
    assert isinstance(args.func, Handler)
    return args.func.pick(args)


def test_all_and_several_ids_ask_for_a_batch() -> None:
    assert _handler(_parse("checkpoint", "--all", "--parallel", "3")) == "runtime.cli.batch_cmds:checkpoint"
    assert _handler(_parse("restore", "a", "b")) == "runtime.cli.batch_cmds:restore"
    assert _handler(_parse("checkpoint", "a")) == "runtime.cli.checkpoint_cmd:run"
    assert _handler(_parse("restore", "--import", "x.tar")) == "runtime.cli.import_cmd:run"
    assert _parse("checkpoint", "-a").parallel is None


def test_a_bad_parallel_is_refused(capsys) -> None:
    with pytest.raises(SystemExit):
        _parse("checkpoint", "--all", "--parallel", "0")
    assert "not a positive number" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [
    ("checkpoint", "--all", "web"),
    ("checkpoint", "--all", "--image-path", "/tmp/x"),
    ("checkpoint", "a", "b", "--export", "/tmp/x.tar"),
    ("restore", "--all", "--netns", "/run/netns/x"),
    ("restore", "a", "b", "--image-path", "/tmp/x"),
    ("restore", "--all", "--lazy"),
])
def test_options_naming_one_container_are_refused(argv) -> None:
    args = _parse(*argv)
    with pytest.raises(UsageError, match="not with --all|--all or container ids"):  # nothing was begun
        args.func(args)


def _result() -> BatchResult:
    done = SimpleNamespace(container_id="a", image_dir="/s/a/checkpoint", stats={"frozen_time": 5}, log_path=None,
                           duration_us=500_000, criu_duration_us=400_000, archive=None, image=None)
    ok = Outcome(container_id="a", result=done, seconds=0.5)
    bad = Outcome(container_id="b", error=ContainerStateError("b", Status.STOPPED, "checkpoint"), seconds=0.1)
    return BatchResult(outcomes=(ok, bad), seconds=1.0, parallel=2)


def test_report_one_line_each_a_summary_and_the_status(capsys) -> None:
    args = SimpleNamespace(print_stats=False, format="text")
    result = batch_cmds.report(args, "checkpoint", _result(), lambda r: r.image_dir)
    assert result.exit == Exit.PARTIAL
    assert render(result, "text") == Exit.PARTIAL
    out, err = capsys.readouterr()
    assert out.splitlines()[0] == "a\t/s/a/checkpoint"
    assert out.splitlines()[1].startswith("b\terror: ") and "stopped" in out
    assert "1 of 2 succeeded, 1 failed" in err


def test_json_fits_the_batch_schema_and_each_result_the_commands(capsys) -> None:
    args = SimpleNamespace(print_stats=False, format="json")
    result = batch_cmds.report(args, "checkpoint", _result(), lambda r: r.image_dir)
    assert capsys.readouterr().err == ""  # JSON mode: nothing but the document
    render(result, "json")
    doc = json.loads(capsys.readouterr().out)
    check(doc, "batch.json")
    check(doc["results"][0]["result"], "checkpoint.json")
    assert doc["results"][1]["error"]["exit"] == Exit.WRONG_STATE


def test_print_stats_lists_every_container(capsys) -> None:
    args = SimpleNamespace(print_stats=True, format="text")
    render(batch_cmds.report(args, "checkpoint", _result(), lambda r: r.image_dir), "text")
    doc = json.loads(capsys.readouterr().out)
    assert doc["criu_cr_checkpoint_duration"] == 1_000_000
    a, b = doc["container_statistics"]
    assert a["criu_statistics"] == {"frozen_time": 5} and "stopped" in b["error"]
