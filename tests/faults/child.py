"""A criu-cr operation in a child process, with a fault injected at one of CRIU's notify points.

    python -m tests.faults.child checkpoint|restore ID SCRIPT ACTION [--leave-running]

``SCRIPT`` is a CRIU notify name (``network-lock``, ``post-dump``,
``setup-namespaces``, ``pre-resume``...); ``ACTION`` is what happens there:
``kill-criu`` (SIGKILL the CRIU process), ``kill-owner`` (SIGKILL this
criu-cr process), ``sigint``/``sigterm``/``sighup`` (send that signal to this
criu-cr process), ``fail`` (the hook raises: CRIU is told to abort), ``sleep`` ($FAULT_SLEEP
seconds, default 3). The
state root is ``$CRIU_CR_ROOT``. Like the CLI, SIGTERM/SIGHUP raise
``Interrupted``; the exit status is the CLI's (0, 1, or 128+signal). A
restore's hooks run in the container's monitor, so the owner's pid is passed
to them explicitly.
"""

from __future__ import annotations

import os
import signal
import sys
import time

from criu_rpc.faults import FaultAt, KillCriuAt

ACTIONS = ("kill-criu", "kill-owner", "sigint", "sigterm", "sighup", "fail", "sleep")
_SIGNALS = {"sigint": signal.SIGINT, "sigterm": signal.SIGTERM, "sighup": signal.SIGHUP}


def fault(script: str, action: str, owner: int) -> FaultAt:
    """criu_rpc's FaultAt doing ``action`` at ``script``; ``owner`` is this criu-cr process."""
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}")
    if action == "kill-criu":
        return KillCriuAt(script)

    def strike(ctx: object) -> None:
        if action == "kill-owner":
            os.kill(owner, signal.SIGKILL)
        elif action == "sleep":  # hold CRIU here, e.g. while another command tries its luck
            time.sleep(float(os.environ.get("FAULT_SLEEP", "3")))
        elif action == "fail":
            raise RuntimeError(f"fault injected at {script}")
        else:
            os.kill(owner, _SIGNALS[action])

    return FaultAt(script, strike)


def main(argv: list[str]) -> int:
    from runtime.cli import main as _unused  # noqa: F401 - same imports as the CLI
    from runtime.container import Container
    from runtime.cr.options import CheckpointOptions, RestoreOptions
    from runtime.linux.signals import Interrupted, install_cli_handlers

    op, cid, script, action = argv[:4]
    leave_running = "--leave-running" in argv
    install_cli_handlers()
    hook = fault(script, action, os.getpid())
    try:
        ctr = Container.load(cid)
        if op == "checkpoint":
            res = ctr.checkpoint(CheckpointOptions(leave_running=leave_running), notify=hook)
            print(res.image_dir)
        else:
            print(ctr.restore(RestoreOptions(), notify=hook).pid)
        return 0
    except KeyboardInterrupt:
        return 130
    except Interrupted as exc:
        return exc.exit_status
    except Exception as exc:  # noqa: BLE001 - reported like the CLI does
        print(f"criu-cr: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
