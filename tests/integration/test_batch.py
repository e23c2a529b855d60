"""checkpoint --all / restore --all and several ids (runtime.cr.batch) with real CRIU and containers.

Each container is a service (httpd + counter) in a netns of its own; after
the batch restore every one answers again and its counter went on.
"""

from __future__ import annotations

import pytest

from runtime.container import Container
from runtime.container.state import StateStore
from runtime.cr.batch import checkpoint_all, restore_all
from runtime.testing.net import http_get, wait_tcp
from tests.integration.container_helpers import cli, counter, until

pytestmark = pytest.mark.usefixtures("container_prereqs")


@pytest.fixture
def three(service_in, netns_factory):
    return [service_in(netns_factory()) for _ in range(3)]


def _answers_and_counts_on(ctr: Container, net, at_checkpoint: int) -> None:
    assert ctr.refresh().status == "running"
    wait_tcp(net.ip, 80, timeout=10)
    assert http_get(net.ip, 80) == (200, b"hello from the container\n")
    after = until(lambda: counter(ctr) if counter(ctr) > at_checkpoint else 0, what=f"{ctr.id}'s counter")
    assert at_checkpoint < after <= at_checkpoint + 40  # went on; a restart would count from 1


def test_checkpoint_all_then_restore_all_every_one_answers_counters_continued(three, state_root):
    res = cli(state_root, "checkpoint", "--all", "--parallel", "2", timeout=120)
    assert res.returncode == 0, res.stderr
    ids = sorted(ctr.id for ctr, _ in three)
    assert sorted(line.split("\t")[0] for line in res.stdout.splitlines()) == ids
    assert "3 of 3 succeeded" in res.stderr
    at = {ctr.id: counter(ctr) for ctr, _ in three}
    assert all(ctr.refresh().status == "checkpointed" for ctr, _ in three)

    res = cli(state_root, "restore", "--all", timeout=120)
    assert res.returncode == 0, res.stderr
    assert sorted(line.split("\t")[0] for line in res.stdout.splitlines()) == ids
    for ctr, net in three:
        _answers_and_counts_on(ctr, net, at[ctr.id])


def test_one_that_cannot_be_checkpointed_is_reported_the_others_succeed(three, state_root):
    (a, _), (b, _), (c, _) = three
    b.checkpoint()  # already checkpointed: a second checkpoint must be refused
    at_b = counter(b)
    res = cli(state_root, "checkpoint", a.id, b.id, c.id, timeout=120)
    assert res.returncode == 7  # Exit.PARTIAL: some failed
    failed = [line for line in res.stdout.splitlines() if line.startswith(f"{b.id}\terror: ")]
    assert len(failed) == 1 and "checkpointed" in failed[0]
    assert "2 of 3 succeeded, 1 failed" in res.stderr
    done = [line.split("\t")[0] for line in res.stdout.splitlines() if "\terror: " not in line]
    assert sorted(done) == sorted([a.id, c.id])
    at = {a.id: counter(a), b.id: at_b, c.id: counter(c)}
    assert [x.refresh().status for x in (a, b, c)] == ["checkpointed"] * 3

    # the API: all three come back, b from its first checkpoint
    out = restore_all(StateStore(state_root), parallel=3)
    assert out.ok, [str(o.error) for o in out.failed]
    for ctr, net in three:
        _answers_and_counts_on(ctr, net, at[ctr.id])


def test_api_checkpoint_all_reports_each_container(three, state_root):
    store = StateStore(state_root)
    out = checkpoint_all(store, ids=[ctr.id for ctr, _ in three] + ["no-such-container"], parallel=4)
    assert not out.ok
    assert [o.container_id for o in out.failed] == ["no-such-container"]
    assert all(o.result.image_dir for o in out.succeeded)
    assert len(out.succeeded) == 3
    out = restore_all(store)  # every checkpointed one
    assert out.ok and len(out.outcomes) == 3
