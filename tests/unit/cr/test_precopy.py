"""runtime.cr.precopy: the pre-dump iterations against the fake CRIU (parent_img, track_mem, the stop
rule, a failure part-way) and the refusal without memory tracking."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from criu_rpc import CriuClient, CriuRpcError, PageServer
from runtime.cr.precopy import PreCopyUnavailable, StopRule, final_parent, pre_copy, require_mem_track
from tests.unit.criu_rpc.fake_criu_fixture import fake_criu, zombies_of_us  # noqa: F401 - the fixture

TRACKING = {"recv": "FEATURE_CHECK"}, {"send_msg": {"type": "FEATURE_CHECK", "success": True,
                                                    "features": {"mem_track": True, "lazy_pages": True}}}
OK = {"send_msg": {"type": "PRE_DUMP", "success": True}}
FAILED = {"send_msg": {"type": "PRE_DUMP", "success": False, "cr_errno": 5, "cr_errmsg": "pre-dump broke"}}


def requests(journal):
    return [e["request"] for e in journal() if "request" in e and e["request"]["type"] == "PRE_DUMP"]


def test_stop_rule():
    rule = StopRule(max_iterations=8)
    assert rule.verdict([]) is None
    assert rule.verdict([5000, 3000]) is None
    assert "fewer than 64" in rule.verdict([5000, 63])
    assert "more than 10%" in rule.verdict([1000, 1101])
    assert rule.verdict([1000, 1100]) is None  # 10% more is still allowed
    assert "the most asked for" in StopRule(max_iterations=2).verdict([5000, 4000])
    with pytest.raises(ValueError):
        StopRule(max_iterations=0)


def test_iterations_chain_parents_and_track_memory_until_few_pages(fake_criu, tmp_path: Path):
    criu = fake_criu([*TRACKING, {"recv": "PRE_DUMP"}, OK, {"recv": "PRE_DUMP"}, OK, {"recv": "PRE_DUMP"}, OK])
    written = {"1": 60000, "2": 900, "3": 40}
    servers = []

    def page_server(n, parent):
        servers.append((n, parent))
        return None

    with CriuClient(criu).dump_session() as session:
        done = pre_copy(session, pid=4242, work=str(tmp_path / "pre"), rule=StopRule(max_iterations=8),
                        page_server=page_server, pages_written=lambda d: written[os.path.basename(d)])
    assert [d.pages_written for d in done.iterations] == [60000, 900, 40]
    assert "iteration 3 wrote 40 pages" in done.stopped
    reqs = requests(fake_criu.journal)
    assert [r["opts"].get("parent_img") for r in reqs] == [None, "../1", "../2"]
    assert all(r["opts"]["track_mem"] is True and r["opts"]["pid"] == 4242 for r in reqs)
    assert servers == [(1, None), (2, "../1"), (3, "../2")]
    assert final_parent(done, str(tmp_path / "final")) == "../pre/3"
    assert zombies_of_us() == []


def test_pages_go_to_the_page_server_given_per_iteration(fake_criu, tmp_path: Path):
    criu = fake_criu([*TRACKING, {"recv": "PRE_DUMP"}, OK])
    with open(os.devnull, "rb") as sock:  # any open fd stands for the page connection
        ps = PageServer(fd=sock.fileno())
        with CriuClient(criu).dump_session(pass_fds=[sock.fileno()]) as session:
            done = pre_copy(session, pid=7, work=str(tmp_path / "pre"), rule=StopRule(max_iterations=1),
                            page_server=lambda n, parent: ps, pages_written=lambda d: 5000)
    assert "the most asked for" in done.stopped
    [req] = requests(fake_criu.journal)
    assert req["opts"]["ps"]["fd"] == ps.fd


def test_growing_iterations_stop(fake_criu, tmp_path: Path):
    criu = fake_criu([*TRACKING, {"recv": "PRE_DUMP"}, OK, {"recv": "PRE_DUMP"}, OK])
    written = iter([1000, 2000])
    with CriuClient(criu).dump_session() as session:
        done = pre_copy(session, pid=7, work=str(tmp_path / "pre"), rule=StopRule(max_iterations=8),
                        pages_written=lambda d: next(written))
    assert len(done.iterations) == 2 and "faster than it is copied" in done.stopped


def test_a_failed_iteration_leaves_nothing(fake_criu, tmp_path: Path):
    criu = fake_criu([*TRACKING, {"recv": "PRE_DUMP"}, OK, {"recv": "PRE_DUMP"}, FAILED])
    work = tmp_path / "pre"
    with pytest.raises(CriuRpcError, match="pre-dump broke"):
        with CriuClient(criu).dump_session() as session:
            pre_copy(session, pid=7, work=str(work), rule=StopRule(max_iterations=8), pages_written=lambda d: 5000)
    assert not work.exists()  # neither the first iteration's images nor the second's dir
    assert len(requests(fake_criu.journal)) == 2
    assert zombies_of_us() == []  # the swrk child was reaped


def test_refused_without_memory_tracking(fake_criu):
    criu = fake_criu([{"recv": "FEATURE_CHECK"}, {"send_msg": {"type": "FEATURE_CHECK", "success": True,
                                                               "features": {"mem_track": False, "lazy_pages": True}}}])
    with pytest.raises(PreCopyUnavailable) as err:
        require_mem_track(CriuClient(criu))
    assert "FEATURE_CHECK" in err.value.reason and "mem_track" in err.value.reason and "--lazy" in err.value.reason
    assert [e["request"]["type"] for e in fake_criu.journal() if "request" in e] == ["FEATURE_CHECK"]
