"""The installed man pages, and bash completing a real container's id (`criu-cr checkpoint <TAB>`)."""

from __future__ import annotations

import importlib.util
import os
import secrets
import shutil
import subprocess

import pytest

from runtime.cli import build_parser
from runtime.cli.completion import render
from tests.conftest import require
from tests.unit.cli.test_completion import bash_complete

MAN_DIR = "/usr/local/share/man/man1"  # where scripts/install (scripts/install-docs) puts them


@pytest.fixture
def bash_script(tmp_path) -> str:
    require(importlib.util.find_spec("shtab") is not None, "needs shtab (a dev dependency: pip install -e '.[dev]')")
    path = tmp_path / "criu-cr.bash"
    path.write_text(render(build_parser(), "bash"))
    return str(path)


def test_bash_completes_a_running_containers_id(container_prereqs, busybox_bundle, container, state_root,
                                                 bash_script) -> None:
    cid = f"tab-{secrets.token_hex(3)}"  # ids name cgroups: unique on the machine
    ctr = container(busybox_bundle(["sleep", "1000"]), id=cid)
    assert ctr.status == "running"
    # --root on the line, as a user of a private state root types it
    assert bash_complete(bash_script, ["criu-cr", "--root", state_root, "checkpoint", ""]) == [cid]
    assert bash_complete(bash_script, ["criu-cr", "--root", state_root, "checkpoint", "-R", "tab"]) == [cid]
    # $CRIU_CR_ROOT, and a prefix that matches nothing
    assert bash_complete(bash_script, ["criu-cr", "checkpoint", ""], {"CRIU_CR_ROOT": state_root}) == [cid]
    assert bash_complete(bash_script, ["criu-cr", "checkpoint", "zz"], {"CRIU_CR_ROOT": state_root}) == []
    # once it is checkpointed, restore offers it too
    ctr.checkpoint()
    assert bash_complete(bash_script, ["criu-cr", "--root", state_root, "restore", ""]) == [cid]


def test_man_finds_the_installed_pages() -> None:
    require(shutil.which("man") is not None, "needs man (man-db; scripts/install installs it)")
    require(os.path.exists(os.path.join(MAN_DIR, "criu-cr-checkpoint.1")),
            f"needs the pages in {MAN_DIR} (scripts/install runs scripts/install-docs)")
    env = {"PATH": "/usr/bin:/bin", "MANPAGER": "cat", "MANWIDTH": "100", "LANG": "C.UTF-8"}
    where = subprocess.run(["man", "-w", "criu-cr-checkpoint"], capture_output=True, text=True, env=env, check=True)
    assert where.stdout.strip() == os.path.join(MAN_DIR, "criu-cr-checkpoint.1")
    page = subprocess.run(["man", "criu-cr-checkpoint"], capture_output=True, text=True, env=env, check=True)
    assert "--tcp-established" in page.stdout and "EXIT STATUS" in page.stdout
    main = subprocess.run(["man", "criu-cr"], capture_output=True, text=True, env=env, check=True)
    assert "criu-cr-checkpoint(1)" in main.stdout
