"""podman 4.3 (Debian 12) as a peer for tests and benchmarks, all of its state in one directory.

podman runs here once it is told (through a containers.conf given by
``CONTAINERS_CONF``, so /etc stays untouched) to use runc and cgroupfs, to
log events to a file, and to ask for rlimits this machine allows without
CAP_SYS_RESOURCE (see shared/ENVIRONMENT.md "podman as a peer"). Its
storage (``--root``), run state (``--runroot``), tmp dir, runc state and
network config all live under :attr:`Podman.dir`; the CRIU given is put
first in PATH (runc looks ``criu`` up by name). :meth:`Podman.cleanup`
removes every container and image it made and unmounts what podman left
mounted there, even after a failure.

This is a test/benchmark aid: it shells out to podman, runc and umount.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile

__all__ = ["Podman", "podman_available", "PODMAN_CONF"]

PODMAN_CONF = """\
[containers]
# podman's defaults (nofile 1048576, nproc 4194304) exceed what this machine
# allows without CAP_SYS_RESOURCE: "error setting rlimit type 7"
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"

[network]
network_config_dir = "{net}"
"""
# podman import writes a blob-info cache here whatever --root says (containers/image)
PODMAN_SYSTEM_CACHE = "/var/lib/containers"


def podman_available() -> bool:
    """True when a podman binary is installed (scripts/install-peers installs Debian's)."""
    return shutil.which("podman") is not None


class Podman:
    """A podman whose state lives under ``directory`` (made 0700; must not exist), running ``criu``.

    Use as a context manager, or call :meth:`setup` then :meth:`cleanup`.
    """

    def __init__(self, directory: str, criu: str) -> None:
        self.dir = os.path.abspath(directory)
        self.criu = criu
        self.images: list[str] = []
        self.containers: list[str] = []
        self.created_system_cache = False
        self.had_cgroups: set[str] = set()
        self.base = ["podman", "--root", os.path.join(self.dir, "storage"),
                     "--runroot", os.path.join(self.dir, "run"), "--tmpdir", os.path.join(self.dir, "tmp"),
                     "--storage-driver", "overlay", "--runtime-flag", "root=" + self.runc_root]

    @property
    def runc_root(self) -> str:
        return os.path.join(self.dir, "runc")

    @staticmethod
    def version() -> str:
        """podman's major.minor ("?" when it does not answer)."""
        out = subprocess.run(["podman", "--version"], capture_output=True, text=True, check=False).stdout.split()
        return ".".join(out[-1].split(".")[:2]) if out else "?"

    def env(self) -> dict[str, str]:
        if os.path.basename(self.criu) == "criu":
            bindir = os.path.dirname(self.criu)
        else:  # a CRIU not called `criu`: give it that name for runc's lookup
            bindir = os.path.join(self.dir, "bin")
            os.makedirs(bindir, exist_ok=True)
            if not os.path.lexists(os.path.join(bindir, "criu")):
                os.symlink(self.criu, os.path.join(bindir, "criu"))
        return dict(os.environ, CONTAINERS_CONF=os.path.join(self.dir, "containers.conf"),
                    PATH=bindir + os.pathsep + os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"))

    def run(self, *args: str, check: bool = True) -> str:
        """``podman ARGS``; its stdout. Raises RuntimeError (with podman's stderr) when it fails and ``check``."""
        res = subprocess.run([*self.base, *args], env=self.env(), stdin=subprocess.DEVNULL,
                             capture_output=True, text=True, check=False)
        if check and res.returncode != 0:
            raise RuntimeError(f"podman {' '.join(args[:2])} failed ({res.returncode}): {res.stderr.strip()[-2000:]}")
        return res.stdout

    def setup(self) -> "Podman":
        if not podman_available():
            raise RuntimeError("podman is not installed (scripts/install-peers installs it)")
        os.makedirs(self.dir, mode=0o700)
        with open(os.path.join(self.dir, "containers.conf"), "w") as f:
            f.write(PODMAN_CONF.format(net=os.path.join(self.dir, "net")))
        self.created_system_cache = not os.path.lexists(PODMAN_SYSTEM_CACHE)
        self.had_cgroups = set(_libpod_cgroups())
        return self

    def import_rootfs(self, rootfs: str, image: str) -> str:
        """``podman import`` the directory ``rootfs`` as the image ``image`` (its only layer)."""
        tar = os.path.join(self.dir, "rootfs.tar")
        with tarfile.open(tar, "w") as t:
            t.add(rootfs, arcname=".")
        self.images.append(image)
        self.run("import", "-q", tar, image)
        os.unlink(tar)
        return image

    def run_detached(self, name: str, image: str, *command: str, netns_path: str = "") -> str:
        """``podman run -d --name NAME [--network ns:PATH] IMAGE COMMAND``; the container's id."""
        self.containers.append(name)
        net = ["--network", "ns:" + netns_path] if netns_path else []
        return self.run("run", "-d", "--name", name, *net, image, *command).strip()

    def image_mount(self, image: str) -> str:
        """``podman image mount IMAGE``: the image's root filesystem as podman shows it to containers."""
        return self.run("image", "mount", image).strip()

    def __enter__(self) -> "Podman":
        try:
            return self.setup()
        except BaseException:
            self.cleanup()
            raise

    def __exit__(self, *exc: object) -> None:
        self.cleanup()

    def cleanup(self) -> list[str]:
        """Remove its containers and images, unmount what podman left under :attr:`dir`; problems seen.

        A container podman cannot remove is killed and deleted through its
        runc state (only those under this directory).
        """
        problems: list[str] = []
        if not os.path.isdir(self.dir):
            return problems
        for name in self.containers:
            rm = subprocess.run([*self.base, "rm", "-f", "-t", "0", name], env=self.env(),
                                stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False)
            if rm.returncode != 0 and "no such container" not in rm.stderr:
                problems.append(f"podman rm {name}: {rm.stderr.strip()}")
        state = self.runc_root
        for cid in os.listdir(state) if os.path.isdir(state) else []:
            subprocess.run(["runc", "--root", state, "delete", "-f", cid], capture_output=True, check=False)
        for image in self.images:
            subprocess.run([*self.base, "image", "unmount", "-f", image], env=self.env(),
                           stdin=subprocess.DEVNULL, capture_output=True, check=False)
            subprocess.run([*self.base, "rmi", "-f", image], env=self.env(),
                           stdin=subprocess.DEVNULL, capture_output=True, check=False)
        for mnt in reversed(mounts_under(self.dir)):  # innermost first
            subprocess.run(["umount", "-l", mnt], capture_output=True, check=False)
        if self.created_system_cache:
            shutil.rmtree(PODMAN_SYSTEM_CACHE, ignore_errors=True)
        # cgroupfs: podman made libpod_parent (and conmon's cgroup in it) in every hierarchy; empty now
        for d in set(_libpod_cgroups()) - self.had_cgroups:
            for sub in (os.path.join(d, "conmon"), d):
                try:
                    os.rmdir(sub)
                except FileNotFoundError:
                    pass
                except OSError as exc:
                    problems.append(f"cgroup {sub}: {exc.strerror}")
        return problems


def _libpod_cgroups() -> list[str]:
    root = "/sys/fs/cgroup"
    cands = [os.path.join(root, "libpod_parent")]
    if os.path.isdir(root):
        cands += [os.path.join(root, h, "libpod_parent") for h in os.listdir(root)]
    return [c for c in cands if os.path.isdir(c)]


def mounts_under(path: str) -> list[str]:
    """The mount points at or below ``path``, outermost first."""
    path = os.path.realpath(path)
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mnt = line.split()[4].encode().decode("unicode_escape")
            if mnt == path or mnt.startswith(path + "/"):
                out.append(mnt)
    return out
