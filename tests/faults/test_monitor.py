"""The monitor (the process that holds a container's output pipes) killed under a running container."""

from __future__ import annotations

import json
import os
import signal

from tests.faults.faultkit import check_invariants
from tests.integration.container_helpers import cli, until


def test_a_killed_monitor_is_reported_and_a_checkpoint_restore_replaces_it(web, canary):
    old = web.ctr.refresh().monitor_pid
    os.kill(old, signal.SIGKILL)
    until(lambda: not os.path.exists(f"/proc/{old}/stat") or open(f"/proc/{old}/stat").read().split(") ")[1][0] == "Z",
          what="the monitor to die")
    out = cli(web.root, "state", web.id)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["monitorAlive"] is False
    assert "its monitor" in out.stderr and "is gone" in out.stderr, out.stderr
    web.ctr.checkpoint()
    web.ctr.restore()
    st = web.ctr.refresh()
    assert st.monitor_pid != old and web.ctr.monitor_alive()
    web.ctr.exec(["sh", "-c", "echo after-restore > /proc/1/fd/1"], timeout=10)
    until(lambda: b"after-restore" in web.ctr.logs(), what="the new monitor to log the container's output")
    assert check_invariants(web, canary) == "running"
