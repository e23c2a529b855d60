"""Faults in the images and around them: damaged files, foreign checkpoints, umask, non-root, bad paths.

Against real CRIU and the suite's web container (tests/faults/conftest.py).
Each damage case ends as a user would check it: the restore was refused
before CRIU ran (no restore.log), naming the bad file; the container is
still checkpointed with nothing running; once the file is put back, the
suite's invariants hold and the restore brings the service back with its
counter continued.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from runtime.container import Container
from runtime.cr.manifest import MANIFEST_FILE, verify_manifest
from runtime.cr.meta import ImageOwnerError
from runtime.errors import ImageIntegrityError, RestoreError
from tests.faults.faultkit import Web, check_invariants
from tests.integration.container_helpers import REPO, cli, until

COUNTER = ("i=0; touch /tmp/made-by-init; while true; do i=$((i+1)); echo $i > /tmp/count.new; "
           "mv /tmp/count.new /tmp/count; sleep 0.05; done")


def count(ctr: Container) -> int:
    try:
        return int(Path(ctr.refresh().rootfs, "tmp", "count").read_text().strip() or 0)
    except (FileNotFoundError, ValueError):
        return 0


def checkpointed(web: Web) -> Path:
    """Checkpoint (stopping it); the image directory."""
    return Path(web.ctr.checkpoint().image_dir)


def assert_refused_intact(ctr: Container, images: Path) -> None:
    """Refused before CRIU ran; still checkpointed; nothing runs; nothing mounted in the images."""
    assert ctr.status == "checkpointed"
    assert ctr.ps() == []
    assert not (images / "restore.log").exists()  # CRIU never started
    with open("/proc/self/mountinfo") as f:
        assert not [line for line in f if str(images) in line]


def flip(path: Path, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0xFF]))


def biggest(images: Path, pattern: str) -> Path:
    return max(images.glob(pattern), key=lambda p: p.stat().st_size)


# -- damaged images are refused before CRIU, naming the file ---------------------------

@pytest.mark.parametrize("damage", ["truncated pages", "deleted core image", "garbage inventory",
                                    "stray pages image"])
def test_damaged_checkpoint_is_refused_naming_the_file_and_restores_once_repaired(web, canary, tmp_path, damage):
    images = checkpointed(web)
    if damage == "stray pages image":
        bad = images / "pages-999.img"
        bad.write_bytes(b"\0" * 4096)
        reason = "not written by the checkpoint"
    else:
        bad = biggest(images, "pages-*.img") if "pages" in damage else \
            biggest(images, "core-*.img") if "core" in damage else images / "inventory.img"
        shutil.copy2(bad, tmp_path / "saved")
        if damage == "truncated pages":
            os.truncate(bad, bad.stat().st_size // 2)
            reason = "truncated"
        elif damage == "deleted core image":
            bad.unlink()
            reason = "is missing"
        else:
            bad.write_bytes(os.urandom(bad.stat().st_size))  # garbage of the same size: only the hash tells
            reason = "hash differs"

    with pytest.raises(ImageIntegrityError) as err:
        web.ctr.restore()
    assert err.value.file == bad.name and reason in str(err.value)
    assert err.value.container_id == web.id and "intact" not in str(err.value)
    assert_refused_intact(web.ctr, images)

    if damage == "stray pages image":
        bad.unlink()
    else:
        shutil.copy2(tmp_path / "saved", bad)
    assert check_invariants(web, canary) == "checkpointed"  # and restored, counter going on


def test_flipped_page_byte_is_caught_while_criu_restores_and_nothing_runs(web, canary, tmp_path):
    """Same size, other contents: only the pages' hash, checked while CRIU restores, can tell.

    CRIU has run (its restore.log is there) but was stopped at post-restore:
    the restored tree never ran, the counter did not move, and the CLI names
    the file the same way.
    """
    images = checkpointed(web)
    at = web.count()
    pages = biggest(images, "pages-*.img")
    shutil.copy2(pages, tmp_path / "saved")
    flip(pages, pages.stat().st_size // 2)

    with pytest.raises(ImageIntegrityError) as err:
        web.ctr.restore()
    assert err.value.file == pages.name and "hash differs" in str(err.value), err.value
    assert err.value.container_id == web.id and err.value.image_dir == str(images)
    assert (images / "restore.log").exists()  # CRIU ran: the hash was checked beside it
    assert web.ctr.status == "checkpointed" and web.ctr.ps() == [] and web.count() == at
    with open("/proc/self/mountinfo") as f:
        assert not [line for line in f if str(images) in line]

    r = cli(web.root, "restore", web.id)
    assert r.returncode == 1 and r.stderr.count("\n") == 1, r.stderr
    assert pages.name in r.stderr and "hash differs" in r.stderr and "--no-verify" in r.stderr, r.stderr
    assert web.ctr.status == "checkpointed" and web.ctr.ps() == [] and web.count() == at

    with pytest.raises(ImageIntegrityError) as err:  # into a new container: none is left
        Container.restore_new("copy", str(images), root=web.root)
    assert err.value.file == pages.name and err.value.container_id == "copy"
    assert not Path(web.root, "copy").exists()

    shutil.copy2(tmp_path / "saved", pages)
    assert check_invariants(web, canary) == "checkpointed"  # and restored, counter going on


def test_cli_refusal_is_one_line_and_no_verify_lets_criu_run(web, canary):
    images = checkpointed(web)
    meta = images / "criu-cr.json"
    meta.write_text(json.dumps(json.loads(meta.read_text()), indent=4))  # same facts, other bytes

    r = cli(web.root, "restore", web.id)
    assert r.returncode == 1
    assert r.stderr.count("\n") == 1 and "criu-cr.json" in r.stderr and repr(web.id) in r.stderr, r.stderr
    assert "--no-verify" in r.stderr
    assert_refused_intact(web.ctr, images)

    r = cli(web.root, "restore", "--no-verify", web.id)
    assert r.returncode == 0, r.stderr
    assert int(r.stdout) == web.ctr.state()["pid"]
    assert check_invariants(web, canary) == "running"


def test_bad_metadata_names_the_container_being_restored(web, canary):
    images = checkpointed(web)
    meta = images / "criu-cr.json"
    good = meta.read_bytes()
    meta.write_text("{not json")
    with pytest.raises(ImageIntegrityError, match="criu-cr.json") as err:
        web.ctr.restore()
    assert err.value.container_id == web.id
    with pytest.raises(RestoreError) as err:
        web.ctr.restore(verify=False)
    assert err.value.container_id == web.id and "cannot read" in str(err.value) and "'?'" not in str(err.value)
    assert_refused_intact(web.ctr, images)
    meta.write_bytes(good)
    assert check_invariants(web, canary) == "checkpointed"


def test_old_checkpoint_without_manifest_restores_with_a_warning(web, canary):
    images = checkpointed(web)
    (images / MANIFEST_FILE).unlink()
    r = cli(web.root, "restore", web.id)
    assert r.returncode == 0, r.stderr
    assert f"criu-cr: warning: the checkpoint at {images} has no {MANIFEST_FILE}" in r.stderr
    assert check_invariants(web, canary) == "running"


def test_restore_from_a_path_that_does_not_exist_says_so(web, canary, tmp_path):
    web.ctr.checkpoint()
    missing = tmp_path / "nonexistent"
    for cid in (web.id, "newcopy"):  # into the checkpointed container, and into a new one
        r = cli(web.root, "restore", "--image-path", str(missing), cid)
        assert r.returncode == 3 and f"image path {missing} does not exist" in r.stderr, r.stderr
    assert not Path(web.root, "newcopy").exists()
    assert check_invariants(web, canary) == "checkpointed"


KILLED_WHILE_HASHING = """
import os, signal, sys
from runtime.cr import manifest
from runtime.container import Container
manifest.seal = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)  # killed right after CRIU's dump
Container.load(sys.argv[1]).checkpoint()
"""


def test_a_checkpoint_settled_after_criu_cr_was_killed_gets_its_manifest(web, canary):
    r = subprocess.run([sys.executable, "-c", KILLED_WHILE_HASHING, web.id], cwd=REPO, capture_output=True,
                       text=True, timeout=120, env=dict(os.environ, CRIU_CR_ROOT=web.root))
    assert r.returncode == -signal.SIGKILL, r.stderr
    out = cli(web.root, "list")
    assert out.returncode == 0 and "CRIU finished it" in out.stderr, out.stderr
    assert web.ctr.refresh().status == "checkpointed"
    images = Path(web.ctr.refresh().extra["checkpoint"]["image_dir"])
    assert verify_manifest(str(images)) is not None  # written by the settling command
    r = cli(web.root, "restore", web.id)
    assert r.returncode == 0 and MANIFEST_FILE not in r.stderr, r.stderr
    assert check_invariants(web, canary) == "running"


# -- a checkpoint never replaces another container's ---------------------------------

def test_checkpoint_into_another_containers_image_path_is_refused(web, canary, busybox_bundle, container, tmp_path):
    big = container(busybox_bundle(["sh", "-c", COUNTER], applets=("sh", "sleep", "mv", "touch")))
    until(lambda: count(big) >= 1, what="the second container's counter to tick")
    images = tmp_path / "web-images"
    web.ctr.checkpoint(image_path=str(images))
    before = {p.name: p.stat().st_mtime_ns for p in images.iterdir()}

    with pytest.raises(ImageOwnerError) as err:
        big.checkpoint(image_path=str(images), leave_running=True)
    assert (err.value.owner, err.value.container_id) == (web.id, big.id)
    r = cli(web.root, "checkpoint", "--image-path", str(images), big.id)
    assert r.returncode == 4 and repr(web.id) in r.stderr and repr(big.id) in r.stderr, r.stderr
    assert "another --image-path" in r.stderr

    assert big.status == "running"
    at = count(big)
    until(lambda: count(big) > at, what="the refused container to keep running")
    assert {p.name: p.stat().st_mtime_ns for p in images.iterdir()} == before
    assert not list(tmp_path.glob("web-images.*"))
    big.delete(force=True)  # its processes would count as strays in web's state root
    assert check_invariants(web, canary) == "checkpointed"  # web's checkpoint is still web's: it restores


# -- modes whatever the umask ---------------------------------------------------------

def test_files_are_private_under_umask_000(busybox_bundle, tmp_path):
    bundle = busybox_bundle(["sh", "-c", COUNTER], applets=("sh", "sleep", "mv", "touch"))
    root = tmp_path / "state"  # made by criu-cr, under umask 000
    env = dict(os.environ, CRIU_CR_ROOT=str(root))

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        r = subprocess.run([sys.executable, "-m", "runtime.cli", *args], cwd=REPO, env=env, capture_output=True,
                           text=True, timeout=60, preexec_fn=lambda: os.umask(0))
        assert r.returncode == 0, (args, r.stderr)
        return r

    copy = tmp_path / "new" / "parents" / "copy"
    run("run", "-d", "-b", bundle, "open")
    ctr = Container.load("open", str(root))
    try:
        until(lambda: count(ctr) >= 2, what="the counter to tick")
        run("checkpoint", "--keep", "--leave-running", "--image-path", str(copy), "open")
        run("checkpoint", "--keep", "open")
        run("restore", "--keep", "open")
        run("exec", "open", "touch", "/tmp/made-by-exec")
        found = _modes(root, copy.parent.parent)
    finally:
        ctr.delete(force=True)

    upper = root / "open" / "overlay" / "upper"
    # The container's own files follow its umask (runc's 022 by default), not ours.
    assert found[str(upper / "tmp" / "made-by-init")] == 0o644
    assert found[str(upper / "tmp" / "made-by-exec")] == 0o644
    assert found[str(upper)] == 0o755  # the container's "/"
    assert found[str(root)] == 0o711
    names = {os.path.basename(p) for p in found}
    for expected in ("state.json", "criu-cr.json", MANIFEST_FILE, "ctr.log", "dump.log", "stats-dump",
                     "restore.log", "inventory.img", "rootfs-diff.tar", "checkpoint", "copy", "new", "parents"):
        assert expected in names
    loose = {p: oct(m) for p, m in found.items()
             if m & 0o077 and p not in (str(root), str(upper)) and not p.startswith(str(upper) + "/")
             and not (os.path.basename(p) == "rootfs" and m == 0o755)}  # the overlay's mount point
    assert loose == {}


def _modes(*tops: Path) -> dict[str, int]:
    """Path -> permission bits of everything under ``tops`` (and themselves), not crossing mounts."""
    found = {}
    for top in tops:
        found[str(top)] = stat.S_IMODE(os.lstat(top).st_mode)
        for dirpath, dirnames, filenames in os.walk(top):
            for name in filenames + dirnames:
                p = os.path.join(dirpath, name)
                found[p] = stat.S_IMODE(os.lstat(p).st_mode)
            dirnames[:] = [d for d in dirnames if not os.path.ismount(os.path.join(dirpath, d))]
    return found


# -- a clear root check -------------------------------------------------------------------

def run_cli_as_nobody(argv: list[str]) -> tuple[int, str]:
    """``criu-cr ARGV`` in a forked child that dropped to uid/gid 65534: (exit status, stderr).

    Forked rather than exec'd: the interpreter and the checkout may sit where
    an unprivileged user cannot read (as /root is here); the CLI's modules are
    loaded before the fork, and the root check must refuse before loading more.
    """
    from runtime import cli as cli_mod
    from runtime.linux import signals  # noqa: F401 - main() imports it

    cli_mod.build_parser()  # loads every command module while still root
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        try:
            os.close(r)
            os.dup2(w, 2)
            sys.stderr = os.fdopen(2, "w", closefd=False)
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            code = cli_mod.main(argv)
            sys.stderr.flush()
            os._exit(code)
        except BaseException as exc:  # noqa: BLE001
            os.write(2, f"child failed: {exc!r}".encode())
            os._exit(99)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        err = f.read().decode()
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), err


@pytest.mark.parametrize("command", [["list"], ["checkpoint", "web"], ["restore", "web"], ["run", "-d", "web"],
                                     ["exec", "web", "sh"], ["pause", "web"],
                                     ["dump", "-t", "1", "-D", "/nonexistent"]])
def test_non_root_is_told_to_use_sudo(tmp_path, command):
    code, err = run_cli_as_nobody(["--root", str(tmp_path / "root"), *command])
    assert code == 6, err  # ENVIRONMENT
    assert err.startswith("criu-cr: error: criu-cr needs root (CAP_SYS_ADMIN") and "sudo" in err
    assert "Errno" not in err and "Traceback" not in err
    assert not (tmp_path / "root").exists()


@pytest.mark.parametrize("command", [["version"], ["check"]])
def test_non_root_may_still_ask_what_works_here(command):
    code, err = run_cli_as_nobody(command)
    assert "criu-cr needs root" not in err  # `check` reports what root would change itself
