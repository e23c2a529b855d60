"""inspect on the stored real checkpoint (tests/unit/data/images, made by scripts/make-test-images):
the report says what crit's decoding of the same files says; the CLI; damaged images."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from criu_image import Checkpoint, ImageError
from runtime.cli import main
from runtime.inspect import memsearch
from runtime.inspect.collect import Sections, collect
from runtime.inspect.jsondoc import document
from runtime.inspect.sources import open_source
from tests.cli_schema import errors, load

DATA = Path(__file__).resolve().parents[1] / "data"
IMAGES = str(DATA / "images")
CRIT = json.loads((DATA / "images.crit.json").read_text())
SCHEMA = load("inspect.json")
# The stored checkpoint's pids are those of the run that made it: taken from crit's decoding.
PIDS = [e["pid"] for e in CRIT["pstree.img"]["plain"]["entries"]]
ROOT = PIDS[0]


@pytest.fixture(scope="module")
def report():
    with open_source(IMAGES) as src:
        return collect(src, Sections.everything())


def test_processes_as_crit_decodes_pstree(report):
    crit = CRIT["pstree.img"]["plain"]["entries"]
    assert [(p.pid, p.ppid, p.pgid, p.sid) for p in report.processes] == \
        [(e["pid"], e["ppid"], e["pgid"], e["sid"]) for e in crit]
    root = report.processes[0]
    assert root.cmdline[:2] == ("sh", "-c") and root.state == "alive"
    assert any(e.startswith("PATH=") for e in root.environ)
    assert root.cwd == "/" and root.creds.uid == 0 and root.namespaces["net"] == 9


def test_sockets_tcp_four_tuple_and_queues(report):
    socks = {s.fd: s for s in report.processes[0].sockets}
    client, server = socks[8], socks[9]
    assert (client.proto, client.state, client.remote) == ("tcp", "ESTABLISHED", "127.0.0.1:7001")
    assert (server.local, server.remote) == ("127.0.0.1:7001", client.local)
    for s in (client, server):
        queued = CRIT[f"tcp-stream-{s.inode:x}.img"]["plain"]["entries"][0]
        assert (s.recv_queue, s.send_queue) == (queued["inq_len"], queued["outq_len"])
    assert socks[7].state == "LISTEN" and socks[10].proto == "udp"
    assert socks[5].peer == f"pid {ROOT} fd 6" and socks[6].peer == f"pid {ROOT} fd 5"


def test_files_and_memory(report):
    root = report.processes[0]
    kinds = {f.fd: f.kind for f in root.fds}
    assert kinds[3] == "PIPE" and kinds[12] == "FIFO" and kinds[13] == "EVENTFD" and kinds[14] == "EVENTPOLL"
    ck = Checkpoint(open_source(IMAGES))
    assert root.memory.dumped == ck.memory(root.pid).dumped_bytes()
    assert len(root.memory.vmas) == len(CRIT[f"mm-{root.pid}.img"]["plain"]["entries"][0]["vmas"])
    assert {"[heap]", "[stack]", "[vdso]"} <= {v.backing for v in root.memory.vmas}


def test_network_stats_and_overview(report):
    lo = report.network.interfaces[0]
    assert report.network.origin == "netns image" and lo.name == "lo" and "127.0.0.1/8" in lo.addresses
    assert any(" via " in r and r.endswith("dev lo") for r in report.network.routes)  # make-test-images adds one
    assert report.stats["frozen_time"] == CRIT["stats-dump"]["plain"]["entries"][0]["dump"]["frozen_time"]
    o = report.overview
    assert o.tcp == "established" and o.criu_image_version == 2 and o.sizes.pages > 0
    assert o.network_lock == "nftables"  # scripts/make-test-images dumps with the nftables lock


def test_json_document_valid(report):
    assert errors(json.loads(json.dumps(document(report))), SCHEMA) == []


def test_memory_search_finds_the_environment():
    with open_source(IMAGES) as src:
        mem = Checkpoint(src).memory(ROOT)
        pattern, window = memsearch.compile_pattern(string="PATH=")
        hits = list(memsearch.search(mem, pattern, window, str))
        assert hits
        for h in hits:
            assert mem.read(h.address, 5) == b"PATH="
            with src.open(mem.pages_name) as f:
                f.seek(h.pages_offset)
                assert f.read(5) == b"PATH="


def test_cli_json_and_text(capsys):
    assert main(["inspect", "--json", "--all", IMAGES]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["processes"][0]["sockets"][3]["remote"] == "127.0.0.1:7001"
    assert main(["inspect", IMAGES]) == 0
    out = capsys.readouterr().out
    assert f"[{PIDS[1]}] /usr/bin/busybox sleep 100000" in out and "Open files" not in out
    assert main(["inspect", "memory", IMAGES, "--pid", str(ROOT), "--search", "PATH="]) == 0
    captured = capsys.readouterr()
    assert "secrets" in captured.err and "[PATH=]" in captured.out


@pytest.mark.parametrize("damage", ["truncate", "magic"])
def test_damaged_image_is_a_clean_error(tmp_path, capsys, damage):
    broken = tmp_path / "images"
    shutil.copytree(IMAGES, broken)
    core = broken / f"core-{ROOT}.img"
    data = core.read_bytes()
    core.write_bytes(data[:len(data) // 2] if damage == "truncate" else b"\x00\x01\x02\x03" + data[4:])
    with open_source(str(broken)) as src:
        with pytest.raises(ImageError, match=f"core-{ROOT}.img"):
            collect(src)
    assert main(["inspect", str(broken)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("criu-cr: error:") and f"core-{ROOT}.img" in err and "Traceback" not in err


def test_missing_process_named(capsys):
    assert main(["inspect", "memory", IMAGES, "--pid", "4242"]) == 1
    assert f"its processes: {', '.join(map(str, PIDS))}" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["inspect", "--pid", "1", IMAGES], "belong to `inspect memory SOURCE`"),
    (["inspect", "memory", IMAGES], "needs --pid"),
    (["inspect", "a", "b"], "one SOURCE"),
    (["inspect", "memory", IMAGES, "--pid", str(ROOT), "--regex", "("], "--regex"),
])
def test_cli_usage_errors(capsys, argv, message):
    assert main(argv) == 2  # Exit.USAGE
    assert message in capsys.readouterr().err


def test_cli_diff_of_one_checkpoint_with_itself(capsys):
    assert main(["diff", IMAGES, IMAGES]) == 0
    assert "no changes" in capsys.readouterr().out
