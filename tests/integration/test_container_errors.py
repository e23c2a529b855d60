"""Malformed inputs give clear errors (API and CLI); concurrent operations are refused as busy."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from runtime.container import Container, ContainerStartError
from runtime.container.state import StateStore
from runtime.errors import ContainerBusyError, ContainerNotFoundError, ContainerStateError, SpecError

from .container_helpers import REPO, cli, need_container_prereqs


@pytest.fixture(autouse=True)
def _prereqs() -> None:
    need_container_prereqs()


def _edit(bundle: str, change) -> str:
    path = os.path.join(bundle, "config.json")
    with open(path) as f:
        config = json.load(f)
    change(config)
    with open(path, "w") as f:
        json.dump(config, f)
    return bundle


def test_malformed_json(busybox_bundle, state_root):
    bundle = busybox_bundle()
    with open(os.path.join(bundle, "config.json"), "a") as f:
        f.write("}")
    with pytest.raises(SpecError, match="invalid JSON at line"):
        Container.create("bad", bundle, state_root)
    r = cli(state_root, "run", "-d", "--bundle", bundle, "bad")
    assert r.returncode == 1
    assert "criu-cr: error: config.json: config.json: invalid JSON" in r.stderr
    assert os.listdir(state_root) == []


def test_missing_rootfs(busybox_bundle, state_root):
    bundle = _edit(busybox_bundle(), lambda c: c["root"].update(path="no-such-rootfs"))
    r = cli(state_root, "create", "--bundle", bundle, "x")
    assert r.returncode == 1
    assert "root.path" in r.stderr and "no-such-rootfs" in r.stderr


def test_missing_namespace_path(busybox_bundle, state_root):
    bundle = busybox_bundle(netns_path="/run/netns/criu-cr-no-such-netns")
    r = cli(state_root, "run", "-d", "--bundle", bundle, "x")
    assert r.returncode == 1
    assert "linux.namespaces[1].path" in r.stderr and "/run/netns/criu-cr-no-such-netns" in r.stderr


def test_missing_executable_is_reported_at_create(busybox_bundle, state_root):
    bundle = busybox_bundle(["no-such-binary", "arg"])
    with pytest.raises(ContainerStartError, match="exec: no-such-binary: executable file not found"):
        Container.create("noexec", bundle, state_root)
    r = cli(state_root, "run", "-d", "--bundle", bundle, "noexec")
    assert r.returncode == 1 and "no-such-binary" in r.stderr
    assert os.listdir(state_root) == []  # nothing left behind


def test_unsupported_field_is_refused(busybox_bundle, state_root):
    bundle = _edit(busybox_bundle(), lambda c: c["linux"]["namespaces"].append({"type": "user"}))
    r = cli(state_root, "create", "--bundle", bundle, "x")
    assert r.returncode == 1 and "'user' is not supported" in r.stderr


def test_unknown_container_and_bad_id(state_root):
    with pytest.raises(ContainerNotFoundError):
        Container.load("nope", state_root)
    r = cli(state_root, "state", "nope")
    assert r.returncode == 3 and "'nope' does not exist" in r.stderr
    r = cli(state_root, "state", "../etc")
    assert r.returncode == 2 and "invalid container id" in r.stderr


def test_wrong_status_operations(busybox_bundle, container):
    ctr = container(busybox_bundle(["sleep", "1000"]))
    with pytest.raises(ContainerStateError, match="cannot start container .* it is running"):
        ctr.start()
    with pytest.raises(ContainerStateError, match="cannot resume"):
        ctr.resume()
    with pytest.raises(ContainerStateError, match="cannot delete .* it is running"):
        ctr.delete()
    r = cli(ctr.root, "delete", ctr.id)
    assert r.returncode == 4 and "force" in r.stderr


def test_operation_while_locked_is_busy(busybox_bundle, container, state_root):
    ctr = container(busybox_bundle(["sleep", "1000"]), start=False)
    with StateStore(state_root).lock(ctr.id):  # as if another criu-cr operation were running
        with pytest.raises(ContainerBusyError, match="busy"):
            ctr.start()
        r = cli(state_root, "start", ctr.id)
        assert r.returncode == 4 and "is busy" in r.stderr
    ctr.start()
    assert ctr.status == "running"


def test_two_concurrent_starts_one_refused(busybox_bundle, container, state_root):
    ctr = container(busybox_bundle(["sleep", "1000"]), start=False)
    env = dict(os.environ, CRIU_CR_ROOT=state_root)
    procs = [subprocess.Popen([sys.executable, "-m", "runtime.cli", "start", ctr.id], cwd=REPO, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(p.wait(timeout=30), p.stderr.read()) for p in procs]
    for p in procs:
        p.stdout.close()
        p.stderr.close()
    codes = sorted(code for code, _ in results)
    assert codes == [0, 4], results  # WRONG_STATE: busy, or already running
    refused = next(err for code, err in results if code == 4)
    assert "is busy" in refused or "it is running" in refused
    assert ctr.status == "running"


def test_shared_rootfs_propagation_is_refused(busybox_bundle, state_root):
    bundle = _edit(busybox_bundle(), lambda c: c["linux"].update(rootfsPropagation="rshared"))
    with pytest.raises(SpecError, match="linux.rootfsPropagation"):
        Container.create("x", bundle, state_root)


def test_rslave_rootfs_propagation_runs(busybox_bundle, container):
    bundle = _edit(busybox_bundle(["sleep", "1000"]), lambda c: c["linux"].update(rootfsPropagation="rslave"))
    ctr = container(bundle)
    assert ctr.exec(["true"]).exit_code == 0
