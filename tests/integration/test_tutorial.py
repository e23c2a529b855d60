"""docs/tutorial.md, run as written: its ```sh blocks, in order, in one bash, as a user pastes them.

What the test changes, and only that (the tutorial says so in its section 2):
- the block marked ``<!-- tutorial-test: settings -->``: the values of its
  ``NAME=value`` lines (netns and veth names and a /30 from the harness's
  allocator in 10.231.0.0/16, a free port, private directories);
- the container ids ``web`` and ``web2`` (whole words) become unique ids;
- ``CRIU_CR_ROOT`` is a private state root and ``criu-cr`` on PATH runs this
  checkout's code.
Blocks marked ``<!-- tutorial-test: skip ... -->`` are not run.
Everything the walk makes is removed afterwards, also when it fails.
"""

from __future__ import annotations

import os
import re
import secrets
import shlex
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass

from runtime.container import Container
from runtime.testing.plugin import reserve_test_net
from tests.integration.container_helpers import REPO

TUTORIAL = REPO / "docs" / "tutorial.md"
_BLOCK = re.compile(r"(?:<!-- tutorial-test: (?P<mark>[^>]*?) -->\n)?```(?P<lang>[\w-]*)\n(?P<body>.*?)^```",
                    re.S | re.M)
_SETTING = re.compile(r"^(?P<name>[A-Z_]+)=(?P<value>\S+)", re.M)


@dataclass(frozen=True, kw_only=True)
class Block:
    line: int  # where its fence starts in the file (1-based)
    mark: str | None
    body: str


def shell_blocks(text: str) -> list[Block]:
    """The file's ```sh blocks in order, each with the mark on the line before its fence, if any."""
    out = []
    for m in _BLOCK.finditer(text):
        if m.group("lang") in ("sh", "bash"):
            line = text.count("\n", 0, m.start("body"))
            out.append(Block(line=line, mark=m.group("mark"), body=m.group("body")))
    return out


def runnable(block: Block) -> bool:
    return not (block.mark or "").startswith("skip")


def with_settings(body: str, values: dict[str, str]) -> str:
    """The settings block with our values; every setting must be one we know (and the reverse)."""
    found = {m.group("name") for m in _SETTING.finditer(body)}
    assert found == set(values), f"the tutorial's settings changed: {sorted(found)} vs {sorted(values)}"
    return _SETTING.sub(lambda m: f"{m.group('name')}={shlex.quote(values[m.group('name')])}", body)


def renamed(body: str, ids: dict[str, str]) -> str:
    for old in sorted(ids, key=len, reverse=True):
        body = re.sub(rf"\b{re.escape(old)}\b", ids[old], body)
    return body


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_tutorial_blocks_are_found_and_marked() -> None:
    blocks = shell_blocks(TUTORIAL.read_text())
    marks = [b.mark for b in blocks if b.mark]
    assert "settings" in marks
    assert len(blocks) >= 12


def test_tutorial_runs_as_written(container_prereqs, criu_cr_net_pool, state_root, tmp_path) -> None:
    ns, host_if, subnet = reserve_test_net(criu_cr_net_pool)
    host_ip, ctr_ip = (str(h) for h in subnet.hosts())
    work, other = tmp_path / "work", tmp_path / "other"
    tag = secrets.token_hex(3)
    ids = {"web": f"tut{tag}", "web2": f"tut{tag}b"}
    settings = {"NS": ns, "HOST_IF": host_if, "HOST_IP": host_ip, "CTR_IP": ctr_ip, "PORT": str(_free_port()),
                "WORK": str(work), "OTHER": str(other)}
    parts, skipped = ["set -euo pipefail", "PS4='+ '", "set -x"], []
    for block in shell_blocks(TUTORIAL.read_text()):
        if not runnable(block):
            skipped.append(f"line {block.line}: {block.mark}")
            continue
        body = with_settings(block.body, settings) if block.mark == "settings" else block.body
        parts += [f": '--- docs/tutorial.md line {block.line}'", renamed(body, ids)]
    script = tmp_path / "tutorial.sh"
    script.write_text("\n".join(parts) + "\n")
    shim = tmp_path / "bin"
    shim.mkdir()
    (shim / "criu-cr").write_text(f"#!/bin/sh\nexec {shlex.quote(sys.executable)} -m runtime.cli \"$@\"\n")
    (shim / "criu-cr").chmod(0o755)
    env = dict(os.environ, PATH=f"{shim}:{os.environ['PATH']}", CRIU_CR_ROOT=state_root, PYTHONPATH=str(REPO))
    proc = subprocess.Popen(["bash", "--norc", "--noprofile", str(script)], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=120)
    finally:
        _clean(proc, [state_root, str(other)], ns, host_if)
    tail = "\n".join(out.splitlines()[-150:])
    print(f"tutorial: skipped blocks: {skipped}; its last lines:\n{tail}")
    assert proc.returncode == 0, f"the tutorial failed (exit {proc.returncode}); its last lines:\n{tail}"
    # What a user following it sees.
    assert "hello from the container" in out
    assert "echoed: before the checkpoint" in out and "echoed: after the restore" in out
    assert f"received {ids['web2']} " in out
    assert "checkpoint/restore: works" in out
    assert "Connected TCP socket, consider using --tcp-established" in out
    assert "exit status 4" in out and "exit status 5" in out  # wrong state; CRIU failed (as the text says)


def _clean(proc: subprocess.Popen[str], roots: list[str], ns: str, host_if: str) -> None:
    """Whatever the walk left: its background receiver, containers in both roots, the netns and veth."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # its own session: the receiver started with `&`, if left
    except ProcessLookupError:
        pass
    proc.wait()
    for root in roots:  # container monitors run in sessions of their own: delete stops them
        if not os.path.isdir(root):
            continue
        for ctr in Container.list(root):
            try:
                ctr.delete(force=True)
            except Exception:  # noqa: BLE001 - teardown keeps going
                pass
    from runtime.net import netns

    netns.teardown(netns=ns, host_ifname=host_if)
