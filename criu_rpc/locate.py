"""Find the CRIU binary and learn its version; version gates as constants.

Search order: an explicit path, then ``$CRIU_CR_CRIU``, then ``criu`` on
``PATH``.  A path that is given (explicitly or by the variable) but unusable
is an error, never silently skipped: the caller asked for that binary.

Only the binary side lives here (``criu --version``); the RPC ``VERSION``
request gives the same facts through :meth:`CriuVersion.from_proto`.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from typing import Any, Mapping

from .errors import CriuError, CriuNotFoundError, CriuVersionError

__all__ = [
    "CRIU_ENV",
    "INSTALLER_CRIU",
    "MIN_VERSION",
    "version_gate",
    "INET_SOCKETS_MIN_VERSION_ON_LINUX_6_16",
    "KERNEL_SO_PASSCRED_RESTRICTED",
    "CriuVersion",
    "locate",
    "binary_version",
    "parse_version",
    "kernel_release",
    "required_version",
    "require_version",
]

#: Environment variable naming the criu binary to use.
CRIU_ENV = "CRIU_CR_CRIU"

#: Oldest CRIU criu-cr supports.  Older ones fail on current kernels
#: (3.17: vDSO layout; 4.1: INET sockets on Linux >= 6.16).
MIN_VERSION = (4, 2)

#: Linux release from which the kernel refuses SO_PASSCRED on non-unix
#: sockets; CRIU before 4.2 then fails to dump any INET socket.
KERNEL_SO_PASSCRED_RESTRICTED = (6, 16)

#: CRIU needed to dump INET sockets on Linux >= KERNEL_SO_PASSCRED_RESTRICTED.
INET_SOCKETS_MIN_VERSION_ON_LINUX_6_16 = (4, 2)

_VERSION_RE = re.compile(r"^Version:[ \t]*(\d+)\.(\d+)(?:\.(\d+))?(?:\.(\d+))?([^\n]*)$", re.M)
_GITID_RE = re.compile(r"^GitID:\s*(\S+)", re.M)


@functools.total_ordering
@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class CriuVersion:
    """A CRIU version.  Compares (and hashes) by its numbers only.

    Compares with another CriuVersion or with a tuple of ints, missing
    trailing parts counting as 0: ``CriuVersion(major=4, minor=2) == (4, 2, 0)``
    and ``version >= MIN_VERSION``.  ``gitid`` is set on builds from git,
    ``name`` when CRIU reports a release name.
    """

    major: int
    minor: int
    sublevel: int = 0
    extra: int = 0
    gitid: str | None = None
    name: str | None = None

    @property
    def numbers(self) -> tuple[int, int, int, int]:
        """``(major, minor, sublevel, extra)``."""
        return (self.major, self.minor, self.sublevel, self.extra)

    @classmethod
    def from_proto(cls, msg: Any) -> CriuVersion:
        """Build from a ``criu_version`` message (the RPC VERSION answer)."""
        return cls(
            major=msg.major_number,
            minor=msg.minor_number,
            sublevel=msg.sublevel if msg.HasField("sublevel") else 0,
            extra=msg.extra if msg.HasField("extra") else 0,
            gitid=msg.gitid if msg.HasField("gitid") and msg.gitid else None,
            name=msg.name if msg.HasField("name") and msg.name else None,
        )

    def _key(self, other: object) -> tuple[tuple[int, ...], tuple[int, ...]] | None:
        if isinstance(other, CriuVersion):
            return self.numbers, other.numbers
        if isinstance(other, tuple) and all(
                isinstance(x, int) and not isinstance(x, bool) for x in other):
            width = max(len(other), 4)
            return self.numbers + (0,) * (width - 4), other + (0,) * (width - len(other))
        return None

    def __eq__(self, other: object) -> bool:
        keys = self._key(other)
        return NotImplemented if keys is None else keys[0] == keys[1]

    def __lt__(self, other: object) -> bool:
        keys = self._key(other)
        return NotImplemented if keys is None else keys[0] < keys[1]

    def __hash__(self) -> int:
        return hash(self.numbers)

    def __str__(self) -> str:
        text = f"{self.major}.{self.minor}.{self.sublevel}"
        if self.extra:
            text += f".{self.extra}"
        if self.gitid:
            text += f" ({self.gitid})"
        return text


def parse_version(text: str) -> CriuVersion:
    """Parse the output of ``criu --version``.

    Accepts ``Version: 4.2.1`` (sublevel and extra optional, anything after
    the numbers is taken as the release name) and an optional
    ``GitID: v4.2-3-gabc`` line.  Raises CriuError when there is no
    ``Version:`` line.
    """
    match = _VERSION_RE.search(text)
    if match is None:
        raise CriuError(f"cannot find a 'Version: X.Y' line in CRIU's output: {text.strip()[:200]!r}")
    major, minor, sublevel, extra, rest = match.groups()
    gitid = _GITID_RE.search(text)
    return CriuVersion(
        major=int(major), minor=int(minor),
        sublevel=int(sublevel or 0), extra=int(extra or 0),
        gitid=gitid.group(1) if gitid else None,
        name=rest.strip("() ") or None,
    )


# Where scripts/install-criu installs its wrapper (used when nothing else names a criu).
INSTALLER_CRIU = "/opt/criu-cr/criu/bin/criu"


def locate(criu_path: str | os.PathLike[str] | None = None,
           env: Mapping[str, str] | None = None, fallback: str | None = INSTALLER_CRIU) -> str:
    """Return the path of the criu binary to use.

    ``criu_path`` wins; else ``$CRIU_CR_CRIU`` (read from ``env``, default
    ``os.environ``); else ``criu`` on that environment's ``PATH``; else
    :data:`INSTALLER_CRIU`.  A name
    without a slash (explicit or from the variable) is looked up on PATH.
    Raises CriuNotFoundError listing what was tried when the chosen
    candidate is missing or not executable, or nothing is found.
    """
    environ = os.environ if env is None else env
    if criu_path is not None:
        return _resolve(os.fspath(criu_path), "explicit path", environ)
    from_env = environ.get(CRIU_ENV)
    if from_env:
        return _resolve(from_env, f"${CRIU_ENV}", environ)
    search_path = environ.get("PATH", os.defpath)
    found = shutil.which("criu", path=search_path)
    if found is not None:
        return os.path.abspath(found)
    # Last resort: where scripts/install-criu puts it.
    if fallback and shutil.which(fallback) is not None:
        return fallback
    raise CriuNotFoundError([f"criu on PATH ({search_path})"] + ([fallback] if fallback else []))


def _resolve(candidate: str, origin: str, environ: Mapping[str, str]) -> str:
    # shutil.which searches PATH for a bare name and checks a path with a slash as it is.
    found = shutil.which(candidate, path=environ.get("PATH", os.defpath))
    if found is not None:
        return os.path.abspath(found)
    what = "does not exist" if not os.path.exists(candidate) else "is not an executable file"
    raise CriuNotFoundError(
        [f"{candidate} ({origin})"],
        hint=f"{candidate} {what}. Fix the {origin}, or run scripts/install-criu.",
    )


def binary_version(criu_path: str | os.PathLike[str], timeout: float = 30.0) -> CriuVersion:
    """Run ``criu --version`` and parse its output.

    Raises CriuNotFoundError if the binary cannot be executed, CriuError if
    it fails, times out or prints no version.
    """
    path = os.fspath(criu_path)
    try:
        proc = subprocess.run([path, "--version"], capture_output=True, text=True,
                              timeout=timeout, check=False, stdin=subprocess.DEVNULL)
    except (FileNotFoundError, PermissionError) as exc:
        raise CriuNotFoundError([path], hint=f"cannot run it: {exc.strerror}") from exc
    except subprocess.TimeoutExpired as exc:
        raise CriuError(f"{path} --version did not answer within {timeout} s") from exc
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip()[:300]
        raise CriuError(f"{path} --version exited with status {proc.returncode}: {detail}")
    return parse_version(proc.stdout)


def kernel_release(release: str | None = None) -> tuple[int, ...]:
    """Return the leading numbers of the kernel release, e.g. ``(6, 18, 44)``.

    Parses ``release`` if given, else ``os.uname().release``; stops at the
    first part that is not a number (``6.18.0-rc1`` gives ``(6, 18, 0)``).
    Raises ValueError when the release does not start with a number.
    """
    text = os.uname().release if release is None else release
    numbers = []
    for part in re.split(r"[.\-+_~]", text):
        digits = re.match(r"\d+", part)
        if digits is None:
            break
        numbers.append(int(digits.group()))
        if digits.end() != len(part):
            break
    if not numbers:
        raise ValueError(f"kernel release {text!r} does not start with a number")
    return tuple(numbers)


def required_version(kernel: tuple[int, ...] | None = None) -> tuple[int, ...]:
    """The oldest CRIU that works for containers on ``kernel`` (default: this one)."""
    return version_gate(kernel)[0]


def version_gate(kernel: tuple[int, ...] | None = None) -> tuple[tuple[int, ...], str]:
    """The oldest CRIU that works for containers on ``kernel`` (default: this one), and why.

    The one version rule, used by checkpoint, restore and ``criu-cr check``.
    """
    release = kernel_release() if kernel is None else kernel
    if release >= KERNEL_SO_PASSCRED_RESTRICTED:
        return (max(MIN_VERSION, INET_SOCKETS_MIN_VERSION_ON_LINUX_6_16),
                f"checkpointing containers with INET sockets on Linux >= "
                f"{'.'.join(map(str, KERNEL_SO_PASSCRED_RESTRICTED))} (the kernel refuses SO_PASSCRED "
                "on INET sockets to older CRIUs)")
    return MIN_VERSION, "criu-cr"


def require_version(version: CriuVersion, needed: tuple[int, ...] = MIN_VERSION,
                    why: str = "criu-cr", path: str = "") -> None:
    """Raise CriuVersionError (naming ``why`` and ``needed``) if ``version < needed``."""
    if version < needed:
        raise CriuVersionError(version.numbers[:3], needed, why, path)
