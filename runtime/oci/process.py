"""The ``process`` section of an OCI ``config.json``: :func:`parse_process` and its dataclasses.

Split from :mod:`runtime.oci.spec` (which re-exports the names) so that each
part of the section -- command, user, rlimits, capabilities -- is one small
check. Raises :class:`SpecError` naming the first bad field.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from runtime.errors import SpecError
from runtime.oci import checks as chk

__all__ = ["Process", "Rlimit", "RLIMIT_TYPES", "CAPABILITY_SETS", "parse_process"]

RLIMIT_TYPES = (
    "RLIMIT_AS", "RLIMIT_CORE", "RLIMIT_CPU", "RLIMIT_DATA", "RLIMIT_FSIZE", "RLIMIT_LOCKS",
    "RLIMIT_MEMLOCK", "RLIMIT_MSGQUEUE", "RLIMIT_NICE", "RLIMIT_NOFILE", "RLIMIT_NPROC",
    "RLIMIT_RSS", "RLIMIT_RTPRIO", "RLIMIT_RTTIME", "RLIMIT_SIGPENDING", "RLIMIT_STACK",
)

CAPABILITY_SETS = ("bounding", "effective", "inheritable", "permitted", "ambient")


@dataclass(frozen=True, slots=True, kw_only=True)
class Rlimit:
    type: str
    hard: int
    soft: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Process:
    args: tuple[str, ...]
    env: tuple[str, ...] = ()
    cwd: str = "/"
    uid: int = 0
    gid: int = 0
    additional_gids: tuple[int, ...] = ()
    umask: int | None = None
    terminal: bool = False
    rlimits: tuple[Rlimit, ...] = ()
    no_new_privileges: bool = False
    oom_score_adj: int | None = None
    capabilities: dict[str, Any] | None = None  # kept raw: {"bounding": [...], ...}


def parse_process(proc: Any, warnings: list[str]) -> Process:
    """Validate ``process`` and build a :class:`Process`; unhonoured settings are added to ``warnings``."""
    if proc is None:
        raise SpecError("process", "missing", "a container needs a process to run")
    chk.obj(proc, "process")
    chk.check_keys(proc, "process", warnings)
    args, env, cwd = _command(proc)
    uid, gid, gids, umask = _user(proc, warnings)
    terminal = chk.get(proc, "terminal", bool, "process") or False
    if terminal:
        warnings.append("process.terminal is true but criu-cr allocates no terminal: "
                        "stdin is /dev/null and output goes to the container log")
    rlimits = _rlimits(proc.get("rlimits") or [])
    caps = _capabilities(proc.get("capabilities"))
    oom = proc.get("oomScoreAdj")
    if oom is not None and (not chk.is_int(oom) or not -1000 <= oom <= 1000):
        raise SpecError("process.oomScoreAdj", f"{oom!r} is not between -1000 and 1000")
    return Process(
        args=args, env=env, cwd=cwd, uid=uid, gid=gid, additional_gids=gids, umask=umask,
        terminal=terminal, rlimits=rlimits,
        no_new_privileges=chk.get(proc, "noNewPrivileges", bool, "process") or False,
        oom_score_adj=oom, capabilities=caps,
    )


def _command(proc: dict[str, Any]) -> tuple[tuple[str, ...], tuple[str, ...], str]:
    args = chk.array(proc.get("args"), "process.args")
    if not args or not all(isinstance(a, str) for a in args) or not args[0]:
        raise SpecError("process.args", "must be a non-empty list of strings", "e.g. [\"sh\"]")
    env = chk.array(proc.get("env") or [], "process.env")
    for i, e in enumerate(env):
        if not isinstance(e, str) or "=" not in e:
            raise SpecError(f"process.env[{i}]", f"{e!r} is not a NAME=value string")
    cwd = chk.get(proc, "cwd", str, "process", required=True)
    if not cwd.startswith("/"):
        raise SpecError("process.cwd", f"{cwd!r} is not an absolute path", "e.g. \"/\"")
    return tuple(args), tuple(env), cwd


def _user(proc: dict[str, Any], warnings: list[str]) -> tuple[int, int, tuple[int, ...], int | None]:
    user = proc.get("user")
    if user is None:
        raise SpecError("process.user", "missing", "give {\"uid\": 0, \"gid\": 0}")
    chk.obj(user, "process.user")
    chk.check_keys(user, "process.user", warnings)
    uid = chk.ident(user.get("uid"), "process.user.uid")
    gid = chk.ident(user.get("gid"), "process.user.gid")
    gids = tuple(chk.ident(g, f"process.user.additionalGids[{i}]")
                 for i, g in enumerate(chk.array(user.get("additionalGids") or [], "process.user.additionalGids")))
    umask = user.get("umask")
    if umask is not None and (not chk.is_int(umask) or not 0 <= umask <= 0o777):
        raise SpecError("process.user.umask", f"{umask!r} is not a mode between 0 and 0777")
    return uid, gid, gids, umask


def _rlimits(entries: Any) -> tuple[Rlimit, ...]:
    rlimits = []
    seen = set()
    for i, r in enumerate(chk.array(entries, "process.rlimits")):
        where = f"process.rlimits[{i}]"
        chk.obj(r, where)
        rtype = chk.get(r, "type", str, where, required=True)
        if rtype not in RLIMIT_TYPES:
            raise SpecError(f"{where}.type", f"unknown rlimit {rtype!r}", "use a name like RLIMIT_NOFILE")
        if rtype in seen:
            raise SpecError(f"{where}.type", f"{rtype} is given twice")
        seen.add(rtype)
        hard = chk.uint(r.get("hard"), f"{where}.hard")
        soft = chk.uint(r.get("soft"), f"{where}.soft")
        if soft > hard:
            raise SpecError(where, f"soft limit {soft} is above hard limit {hard}")
        rlimits.append(Rlimit(type=rtype, hard=hard, soft=soft))
    return tuple(rlimits)


def _capabilities(caps: Any) -> dict[str, Any] | None:
    if caps is None:
        return None
    chk.obj(caps, "process.capabilities")
    for cap_set, names in caps.items():
        where = f"process.capabilities.{cap_set}"
        if cap_set not in CAPABILITY_SETS:
            raise SpecError(where, "unknown capability set", "use " + ", ".join(CAPABILITY_SETS))
        for i, name in enumerate(chk.array(names or [], where)):
            if not isinstance(name, str) or not name.startswith("CAP_"):
                raise SpecError(f"{where}[{i}]", f"{name!r} is not a capability name", "e.g. CAP_KILL")
    return caps
