"""The fault suite's tools: the service container's handle, the invariants every case ends with, the child.

Every case ends in :func:`check_invariants`: the container is either
running and answering at its IP, or checkpointed with images a restore
brings back; no stray process; no mount under the state root but the
container's own root; no CRIU network lock in the netns of a running
container; no frozen cgroup; no pending operation; the host's canary cgroups
untouched.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass

from criu_rpc import has_inventory
from runtime.container import Container
from runtime.cr import pending
from runtime.linux import mounts
from runtime.linux.cgroups import Cgroups
from runtime.net import netlock
from runtime.testing.net import http_get
from tests.integration.container_helpers import REPO, until

SERVICE = ("httpd -p 80 -h /www; "
           "i=0; while true; do i=$((i+1)); echo $i > /tmp/count.new; busybox mv /tmp/count.new /tmp/count; "
           "sleep 0.05; done")
CGROUP_ROOT = "/sys/fs/cgroup"


@dataclass
class Web:
    ctr: Container
    ip: str
    netns_path: str
    root: str

    @property
    def id(self) -> str:
        return self.ctr.id

    def count(self) -> int:
        try:
            with open(os.path.join(self.ctr.refresh().rootfs, "tmp", "count")) as f:
                return int(f.read().strip() or 0)
        except (FileNotFoundError, ValueError):
            return 0

    def answers(self) -> bool:
        try:
            return http_get(self.ip, 80, timeout=2.0)[0] == 200
        except (OSError, ValueError):
            return False


def run_child(web: Web, op: str, script: str, action: str, *extra: str,
              timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    """``python -m tests.faults.child`` (see there) against ``web``'s state root."""
    env = dict(os.environ, CRIU_CR_ROOT=web.root)
    return subprocess.run([sys.executable, "-m", "tests.faults.child", op, web.id, script, action, *extra],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def check_invariants(web: Web, canary: list[str], *, restore_checkpointed: bool = True) -> str:
    """Assert the suite's invariants; returns the container's status (``running``/``checkpointed``).

    A checkpointed container is restored (when ``restore_checkpointed``) and
    must then answer with its counter continued.
    """
    for path in canary:
        assert os.path.isdir(path), f"host cgroup {path} was deleted"
    st = web.ctr.refresh()
    assert pending.PENDING_KEY not in st.extra, f"a pending {st.extra[pending.PENDING_KEY]} was left unsettled"
    assert st.status in ("running", "checkpointed"), f"container is {st.status}"
    cg = Cgroups.from_dict(st.cgroups)
    ours = set(cg.pids()) | {st.monitor_pid}
    holders = [pid for pid in pending.holders_of(web.root) if pid not in ours]
    assert not holders, f"processes still hold the state root open: {holders}"
    state_mounts = set(mounts.mounts_under(web.root))
    assert state_mounts <= {st.rootfs}, f"mounts left under the state root: {sorted(state_mounts - {st.rootfs})}"
    assert not cg.is_frozen(), "the container's cgroup stays frozen"
    if st.status == "checkpointed":
        image_dir = st.extra["checkpoint"]["image_dir"]
        assert has_inventory(image_dir), f"no checkpoint at {image_dir}"
        assert cg.pids() == [], f"stray processes in the cgroup of a checkpointed container: {cg.pids()}"
        if not restore_checkpointed:
            return "checkpointed"
        before = web.count()
        web.ctr.restore()
        assert web.ctr.refresh().status == "running"
    assert netlock.lock_commands(web.netns_path) == [], "CRIU's network lock stays in a running container's netns"
    until(web.answers, timeout=10, what=f"the service at {web.ip} to answer")
    if st.status == "checkpointed":
        until(lambda: web.count() > before, what="the counter to go on from the checkpoint")
    return st.status
