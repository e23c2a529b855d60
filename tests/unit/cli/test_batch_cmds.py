"""criu-cr checkpoint/restore --all and several ids: parsing, refusals, the per-container report."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from runtime.cli import batch_cmds, build_parser
from runtime.cr.batch import BatchResult, Outcome
from runtime.errors import ContainerError


def _parse(*argv: str):
    return build_parser().parse_args(list(argv))


def test_all_and_several_ids_ask_for_a_batch() -> None:
    assert batch_cmds.wanted(_parse("checkpoint", "--all", "--parallel", "3"))
    assert batch_cmds.wanted(_parse("restore", "a", "b"))
    assert not batch_cmds.wanted(_parse("checkpoint", "a"))
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
])
def test_options_naming_one_container_are_refused(argv) -> None:
    args = _parse(*argv)
    with pytest.raises(SystemExit, match="not with --all|--all or container ids"):
        args.func(args)


def _result() -> BatchResult:
    ok = Outcome(container_id="a", result=SimpleNamespace(image_dir="/s/a/checkpoint", stats={"frozen_time": 5}),
                 seconds=0.5)
    bad = Outcome(container_id="b", error=ContainerError("container 'b' is stopped"), seconds=0.1)
    return BatchResult(outcomes=(ok, bad), seconds=1.0, parallel=2)


def test_report_one_line_each_a_summary_and_the_status(capsys) -> None:
    args = SimpleNamespace(print_stats=False)
    assert batch_cmds._report(args, "checkpoint", _result(), lambda r: r.image_dir) == 1
    out, err = capsys.readouterr()
    assert out == "a\t/s/a/checkpoint\n"
    assert "criu-cr: error: b: container 'b' is stopped" in err
    assert "1 of 2 succeeded, 1 failed" in err


def test_print_stats_lists_every_container(capsys) -> None:
    args = SimpleNamespace(print_stats=True)
    batch_cmds._report(args, "checkpoint", _result(), lambda r: r.image_dir)
    doc = json.loads(capsys.readouterr().out)
    assert doc["criu_cr_checkpoint_duration"] == 1_000_000
    a, b = doc["container_statistics"]
    assert a["criu_statistics"] == {"frozen_time": 5} and "stopped" in b["error"]
