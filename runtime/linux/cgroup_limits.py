"""A container's resource limits written into its cgroups: v1 per controller, v2 in the unified directory.

OCI's ``linux.resources`` speaks v1; v2 gets the translations runc makes
(shares -> weight, memory+swap -> swap alone, quota/period -> ``cpu.max``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from runtime.errors import CgroupError
from runtime.linux.cgroupfs import write_file as _write
from runtime.oci.spec import Resources

__all__ = ["apply_v1", "apply_v2", "shares_to_weight"]


def shares_to_weight(shares: int) -> int:
    """cgroup v1 ``cpu.shares`` [2, 262144] -> v2 ``cpu.weight`` [1, 10000] (runc's linear map)."""
    shares = min(max(shares, 2), 262144)
    return 1 + ((shares - 2) * 9999) // 262142


def apply_v1(paths: Mapping[str, str], r: Resources, where: str) -> None:
    """Write ``r`` into the v1 hierarchies ``paths`` (controller key -> the container's directory).

    Raises CgroupError naming the file, or ``where`` when a controller is missing.
    """
    mem = paths.get("memory")
    if mem:
        if r.memory_limit is not None:
            _write(os.path.join(mem, "memory.limit_in_bytes"), str(r.memory_limit))
        if r.memory_swap is not None:
            _write(os.path.join(mem, "memory.memsw.limit_in_bytes"), str(r.memory_swap),
                   hint="swap accounting is off (boot with swapaccount=1) or remove memory.swap")
        if r.memory_reservation is not None:
            _write(os.path.join(mem, "memory.soft_limit_in_bytes"), str(r.memory_reservation))
    elif any(v is not None for v in (r.memory_limit, r.memory_swap, r.memory_reservation)):
        raise CgroupError(where, "memory limits given but the memory controller is not mounted")
    if r.pids_limit is not None:
        _write(os.path.join(_need(paths, where, "pids"), "pids.max"), _max(r.pids_limit))
    if r.cpu_shares is not None:
        _write(os.path.join(_need(paths, where, "cpu"), "cpu.shares"), str(r.cpu_shares))
    if r.cpu_period is not None:
        _write(os.path.join(_need(paths, where, "cpu"), "cpu.cfs_period_us"), str(r.cpu_period))
    if r.cpu_quota is not None:
        _write(os.path.join(_need(paths, where, "cpu"), "cpu.cfs_quota_us"), str(r.cpu_quota))
    if r.cpuset_cpus is not None:
        _write(os.path.join(_need(paths, where, "cpuset"), "cpuset.cpus"), r.cpuset_cpus)
    if r.cpuset_mems is not None:
        _write(os.path.join(_need(paths, where, "cpuset"), "cpuset.mems"), r.cpuset_mems)


def apply_v2(path: str, r: Resources, where: str) -> None:
    """Write ``r`` into the container's v2 directory ``path``. Raises CgroupError naming the file."""

    def put(name: str, value: str) -> None:
        _write(os.path.join(path, name), value,
               hint=f"enable the {name.split('.')[0]} controller in the parent's cgroup.subtree_control")

    if r.memory_limit is not None:
        put("memory.max", _max(r.memory_limit))
    if r.memory_swap is not None:
        put("memory.swap.max", _max(_v2_swap(r, where)))
    if r.memory_reservation is not None:
        put("memory.low", _max(r.memory_reservation))
    if r.pids_limit is not None:
        put("pids.max", _max(r.pids_limit))
    if r.cpu_shares is not None:
        put("cpu.weight", str(shares_to_weight(r.cpu_shares)))
    if r.cpu_quota is not None or r.cpu_period is not None:
        quota = "max" if r.cpu_quota in (None, -1) else str(r.cpu_quota)
        put("cpu.max", f"{quota} {r.cpu_period or 100000}")
    if r.cpuset_cpus is not None:
        put("cpuset.cpus", r.cpuset_cpus)
    if r.cpuset_mems is not None:
        put("cpuset.mems", r.cpuset_mems)


def _need(paths: Mapping[str, str], where: str, ctrl: str) -> str:
    try:
        return paths[ctrl]
    except KeyError:
        raise CgroupError(where, f"the {ctrl} controller is not mounted on this host") from None


def _max(value: int) -> str:
    return "max" if value < 0 else str(value)


def _v2_swap(r: Resources, where: str) -> int:
    """OCI ``memory.swap`` is memory+swap; v2's ``memory.swap.max`` is swap alone."""
    swap, limit = r.memory_swap, r.memory_limit
    assert swap is not None
    if swap < 0:
        return -1
    if limit is None or limit < 0:
        raise CgroupError(where, "memory.swap needs a memory.limit on cgroup v2")
    if swap < limit:
        raise CgroupError(where, f"memory.swap ({swap}) is below memory.limit ({limit})")
    return swap - limit
