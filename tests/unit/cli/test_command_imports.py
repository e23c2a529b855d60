"""What `criu-cr checkpoint` and `criu-cr restore` load: never the export, archive, OCI or
network-changing code (docs/performance.md, "What each command loads").

Each command is parsed and its handler resolved in a fresh interpreter, as
the criu-cr process does before it runs the command; the modules it has
then are the command's (its handler's imports). Paths that load later,
and only when asked (``--export``, ``--create-image``), are named in
tables that test_dispatch / the last test here check.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from runtime import lazy

# Never needed by a plain checkpoint or restore (each costs start-up time: see docs/performance.md).
DENIED = frozenset({
    "tarfile", "zstandard", "gzip", "zipfile", "tempfile", "importlib.metadata", "email",
    "pyroute2",                                  # netlink changes: only creating/recreating a netns
    "runtime.container.facade", "runtime.container.create", "runtime.container.exec_in",
    "runtime.cr.archive", "runtime.cr.portable", "runtime.cr.compression", "runtime.cr.export_members",
    "runtime.cr.ociimage", "runtime.cr.ocilayout", "runtime.cr.ocireader", "runtime.cr.podman",
    "runtime.cr.migrate", "runtime.cr.migrate_proto", "runtime.cr.restore_new",
})
ONLY = {  # modules one of the two commands must not load for the other
    "checkpoint": {"runtime.cr.restore", "runtime.container.monitor", "runtime.cr.imagecheck"},
    "restore": {"runtime.cr.checkpoint"},
}

_PROBE = """
import json, sys
import runtime.cli as cli
from runtime.cli.handlers import resolve
argv = json.loads(sys.argv[1])
args = cli.build_parser(argv).parse_args(argv)
resolve(args.func, args)
print(json.dumps(sorted(sys.modules)))
"""


def loaded_by(*argv: str) -> set[str]:
    """The modules a fresh criu-cr process has once ``argv`` is parsed and its handler loaded."""
    out = subprocess.run([sys.executable, "-c", _PROBE, json.dumps(argv)], capture_output=True, text=True,
                         check=True, timeout=60)
    return set(json.loads(out.stdout))


def _denied(mods: set[str], denied: set[str] | frozenset[str]) -> set[str]:
    return {m for m in mods if m in denied or m.split(".")[0] in denied}


@pytest.mark.parametrize("argv", [("checkpoint", "web"), ("checkpoint", "--leave-running", "web"),
                                  ("restore", "web"), ("restore", "--image-path", "/x", "copy")])
def test_checkpoint_and_restore_load_nothing_denied(argv):
    mods = loaded_by(*argv)
    assert "runtime.cli." + ("checkpoint_cmd" if argv[0] == "checkpoint" else "restore_cmd") in mods
    assert not _denied(mods, DENIED | ONLY[argv[0]])


def test_the_probe_sees_what_a_command_loads():
    # restore --import reads archives: its handler brings the archive code (the probe is not blind)
    assert {"runtime.cr.portable", "tarfile"} <= loaded_by("restore", "--import", "x.tar")


def test_the_code_loaded_only_when_asked_exists():
    from runtime.cli import restore_cmd
    from runtime.cr import checkpoint

    for option, writer, _ in checkpoint._OUTPUTS:
        assert callable(lazy.load(writer)), (option, writer)
    assert callable(lazy.load(restore_cmd._RESTORE_NEW))
