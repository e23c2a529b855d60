"""The JSON of ``--format json`` keeps its documented shape (docs/cli-json.md, docs/schemas/)."""

from __future__ import annotations

import argparse
import io
import json
import re
from pathlib import Path

import pytest

from runtime.cli import build_parser, output
from runtime.cli.cr_cmds import result_json, stats_json
from runtime.cli.errormap import classify, error_codes, error_object
from runtime.cli.exitcodes import Exit
from runtime.cr.options import CheckpointResult, RestoreResult
from tests.cli_schema import COMMAND_SCHEMAS, NO_JSON, OTHER_SCHEMAS, SCHEMAS, check, errors, load
from tests.unit.cli.test_exit_codes import CASES

DOC = (Path(__file__).resolve().parents[3] / "docs" / "cli-json.md").read_text()


def commands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def test_every_command_has_a_schema_or_says_why_not():
    missing = set(commands()) - set(COMMAND_SCHEMAS) - set(NO_JSON)
    assert not missing, f"commands without a JSON schema (docs/schemas/, tests/cli_schema.py): {sorted(missing)}"


@pytest.mark.parametrize("name", sorted({*COMMAND_SCHEMAS.values(), *OTHER_SCHEMAS}))
def test_schema_files_are_documented(name):
    schema = load(name)
    assert schema["$id"] == name and schema["title"]
    assert f"(schemas/{name})" in DOC


def test_every_command_with_json_has_a_section():
    for command in COMMAND_SCHEMAS:
        assert re.search(rf"`criu-cr {re.escape(command)}\b", DOC) or f"`{command}`" in DOC, command


def test_every_stable_code_is_in_the_table_with_its_exit_status():
    rows = dict(re.findall(r"^\| `([a-z_]+)` \| ([0-9+a-z]+) \|", DOC, re.M))
    for code, status in error_codes().items():
        expected = "128+signal" if code == "interrupted" else str(int(status))
        assert rows.get(code) == expected, code
    assert set(rows) == set(error_codes())


def test_every_exit_status_is_documented():
    for status in Exit:
        assert re.search(rf"^\| {int(status)} \| {status.name} \|", DOC, re.M), status


def test_the_validator_refuses_what_the_schema_does_not_say():
    schema = load("kill.json")
    assert errors({"id": "web", "signal": 15}, schema) == []
    assert errors({"id": "web", "signal": "TERM"}, schema) == ["$.signal: str 'TERM' is not integer"]
    assert errors({"id": "web", "signal": 15, "extra": 1}, schema) == ["$: 'extra' is not documented"]
    assert errors({"id": "web"}, schema) == ["$: missing 'signal'"]
    assert errors({"id": "web", "signal": True}, schema)  # a bool is not an integer
    assert errors([{"id": "web"}], load("list.json"))  # $ref to state.json


STATS = {"freezing_time": 463, "frozen_time": 69344, "pages_written": 68}


@pytest.mark.parametrize("print_stats", [False, True])
def test_checkpoint_and_restore_results(print_stats):
    ck = CheckpointResult(container_id="web", image_dir="/img", log_path=None, stats=STATS, duration_us=98951,
                          criu_duration_us=69344, archive="/x.tar.zst")
    rs = RestoreResult(container_id="web", pid=42, image_dir="/img", log_path="/img/restore.log",
                       stats={"restore_time": 5}, duration_us=7, criu_duration_us=5)
    for kind, res in (("checkpoint", ck), ("restore", rs)):
        data = result_json(kind, res)
        if print_stats:
            data["statistics"] = stats_json(kind, res)
        check(data, f"{kind}.json")


@pytest.mark.parametrize(("exc", "status", "code"), CASES, ids=[c[2] for c in CASES])
def test_error_objects(exc, status, code):
    check(error_object(classify(exc)), "error.json")


def test_check_report(monkeypatch, capsys):
    from runtime.cli import rpc_cmds

    facts = {"root": True, "kernel": "6.18.44", "kernel_numbers": [6, 18, 44],
             "criu": {"path": "/x/criu", "version": "4.2.1", "version_numbers": [4, 2, 1]},
             "criu_check": {"ok": True}, "features": {"mem_track": False, "lazy_pages": True, "pidfd_store": True},
             "network_lock": {"iptables": False, "nftables": True, "chosen": "nftables"},
             "cgroups": {"layout": "v2", "hierarchies": [{"hid": 0, "controllers": "", "label": "v2", "version": 2,
                                                         "mountpoints": ["/sys/fs/cgroup"], "managed": True}]}}
    monkeypatch.setattr(rpc_cmds, "_gather", lambda criu: facts)
    result = rpc_cmds._check(argparse.Namespace(criu=None))
    out = io.StringIO()
    assert output.render(result, "json", out) == 0
    report = json.loads(out.getvalue())
    check(report, "check.json")
    assert report["ok"] is True and report["findings"][0]["severity"] == "warning"
    monkeypatch.setattr(rpc_cmds, "_gather", lambda criu: {**facts, "root": False})
    assert output.render(rpc_cmds._check(argparse.Namespace(criu=None)), "text", io.StringIO()) == Exit.ENVIRONMENT


def test_log_records_in_json_are_one_object_per_line(capsys):
    import logging

    from runtime.cli.logsetup import configure_logging

    logger = logging.getLogger("criu_cr")
    before, level = list(logger.handlers), logger.level
    try:
        configure_logging(logging.DEBUG, "json")
        logging.getLogger("criu_cr.rpc").debug("CRIU %s request", "DUMP")
        logging.getLogger("criu_cr.cr").warning("container %r: careful", "web")
        lines = capsys.readouterr().err.splitlines()
        for line in lines:
            check(json.loads(line), "log.json")
        assert [json.loads(x)["log"]["message"] for x in lines] == ["CRIU DUMP request", "container 'web': careful"]
    finally:
        logger.handlers[:] = before
        logger.setLevel(level)


@pytest.mark.parametrize("argv", [["--format", "json", "list"], ["list", "--format", "json"], ["list", "--json"],
                                  ["--json", "list"], ["list", "--format=json"]])
def test_json_is_asked_before_or_after_the_command(argv):
    assert build_parser().parse_args(argv).format == "json"
    assert output.wants_json(argv)
    assert not output.wants_json(["exec", "web", "--", "tool", "--json"])


def test_options_before_the_command_survive_its_own_defaults():
    p = build_parser()
    a = p.parse_args(["--quiet", "--debug", "checkpoint", "web"])
    assert (a.quiet, a.verbosity, a.format) == (True, "debug", "text")
    a = p.parse_args(["checkpoint", "-q", "web"])  # checkpoint's own -q (no progress line) is the same flag
    assert a.quiet is True
    a = p.parse_args(["dump", "-t", "1", "-D", "/d", "-v", "4", "--log-level", "INFO"])
    assert (a.log_level, a.verbosity) == (4, "info")  # CRIU's -v and criu-cr's own level do not mix


def test_schemas_dir_holds_only_documented_files():
    assert {p.name for p in SCHEMAS.glob("*.json")} == {*COMMAND_SCHEMAS.values(), *OTHER_SCHEMAS}


def test_a_commands_own_json_flag_keeps_working():
    # e.g. a command written before --format: `p.add_argument("--json", action="store_true")`
    parser = argparse.ArgumentParser(prog="criu-cr")
    sub = parser.add_subparsers(dest="command")
    p = sub.add_parser("inspect")
    p.add_argument("--json", action="store_true")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress line")
    output.add_output_options(parser, sub)
    a = parser.parse_args(["inspect"])
    assert (a.json, a.format, a.quiet) == (False, "text", False) and output.chosen_format(a) == "text"
    a = parser.parse_args(["--quiet", "inspect", "--json"])
    assert a.json is True and a.quiet is True and output.chosen_format(a) == "json"
    assert output.chosen_format(parser.parse_args(["inspect", "--format", "json"])) == "json"


def test_a_batch_reports_each_container_and_exits_partial():
    from runtime import errors as rt

    def fails(exc):
        def do():
            raise exc
        return do

    ok = output.batch([("web", lambda: {"pid": 1}), ("db", fails(rt.ContainerStateError("db", "paused", "checkpoint")))])
    check(to_json(ok), "batch.json")
    assert ok.exit == Exit.PARTIAL
    assert [r["ok"] for r in ok.data["results"]] == [True, False]
    assert ok.data["results"][1]["error"]["code"] == "wrong_state"
    assert output.batch([("web", lambda: None)]).exit == Exit.OK
    same = output.batch([(c, fails(rt.ContainerNotFoundError(c))) for c in ("a", "b")])
    assert same.exit == Exit.NOT_FOUND
    mixed = output.batch([("a", fails(rt.ContainerNotFoundError("a"))), ("b", fails(rt.ContainerBusyError("b")))])
    assert mixed.exit == Exit.FAILED
    text = io.StringIO()
    output.render(ok, "text", text)
    assert text.getvalue().splitlines() == ["web: ok", "db: error: cannot checkpoint container 'db': it is paused "
                                            "(resume it first)"]
    with pytest.raises(RuntimeError):  # a bug is not a container's failure
        output.batch([("web", fails(RuntimeError("bug")))])


def to_json(result):
    out = io.StringIO()
    output.render(result, "json", out)
    return json.loads(out.getvalue())
