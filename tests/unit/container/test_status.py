"""The container status table: which action is legal where, and what the status becomes."""

from __future__ import annotations

import json

import pytest

from runtime.container.state import Action, ContainerState, StateStore, Status, allowed, next_status
from runtime.errors import ContainerStateError


@pytest.mark.parametrize(("status", "action", "after"), [
    (Status.CREATING, Action.CREATE, Status.CREATED),
    (Status.CREATED, Action.START, Status.RUNNING),
    (Status.RUNNING, Action.PAUSE, Status.PAUSED),
    (Status.PAUSED, Action.RESUME, Status.RUNNING),
    (Status.RUNNING, Action.CHECKPOINT, Status.CHECKPOINTED),
    (Status.RUNNING, Action.COPY, Status.RUNNING),
    (Status.CHECKPOINTED, Action.RESTORE, Status.RUNNING),
    (Status.STOPPED, Action.RESTORE, Status.RUNNING),
    (Status.STOPPED, Action.RESTORE_FAILED, Status.CHECKPOINTED),
    (Status.PAUSED, Action.EXIT, Status.STOPPED),
    (Status.PAUSED, Action.KILL, Status.PAUSED),
    (Status.RUNNING, Action.FORCE_DELETE, Status.STOPPED),
])
def test_legal_steps_say_what_the_status_becomes(status, action, after):
    assert next_status(status, action) is after


@pytest.mark.parametrize(("status", "action"), [
    (Status.PAUSED, Action.CHECKPOINT), (Status.RUNNING, Action.START), (Status.RUNNING, Action.RESTORE),
    (Status.CHECKPOINTED, Action.EXEC), (Status.STOPPED, Action.KILL), (Status.RUNNING, Action.DELETE),
    (Status.STOPPED, Action.EXIT),
])
def test_illegal_steps_are_refused(status, action):
    assert not allowed(status, action)


def test_a_refused_step_names_status_and_action_and_changes_nothing():
    st = ContainerState(id="c", status="paused", bundle="/b")
    with pytest.raises(ContainerStateError) as info:
        st.advance(Action.COPY)
    assert str(info.value) == "cannot checkpoint container 'c': it is paused (resume it first)"
    assert (info.value.status, info.value.action) == ("paused", "checkpoint")
    assert st.status is Status.PAUSED


def test_a_detail_replaces_the_hint():
    st = ContainerState(id="c", status="running", bundle="/b")
    with pytest.raises(ContainerStateError, match=r"it is running \(stop it first, or force\)"):
        st.check(Action.DELETE, "stop it first, or force")


def test_status_is_stored_as_its_old_string(tmp_path):
    store = StateStore(tmp_path)
    store.create_dir("c")
    store.write(ContainerState(id="c", status="created", bundle="/b").advance(Action.START))
    with open(store.path("c", "state.json"), encoding="utf-8") as f:
        assert json.load(f)["status"] == "running"
    st = store.read("c")
    assert st.status is Status.RUNNING and st.status == "running" and f"{st.status}" == "running"
