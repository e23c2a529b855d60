"""runtime.linux.cgroups against fake cgroup trees (plain directories): paths, resources, records."""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime.errors import CgroupError
from runtime.linux.cgroups import UNIFIED, V1_CONTROLLERS, Cgroups, detect_layout, resolve_cgroup_path, shares_to_weight
from runtime.oci.spec import Resources


def fake_root(tmp_path: Path, layout: str) -> Path:
    root = tmp_path / "cgroup"
    root.mkdir()
    if layout == "v2":
        (root / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
        return root
    for d in V1_CONTROLLERS:
        (root / d).mkdir()
    if layout == "hybrid":
        (root / "unified").mkdir()
        (root / "unified" / "cgroup.controllers").write_text("\n")
    return root


@pytest.mark.parametrize("layout", ["v1", "hybrid", "v2"])
def test_detect_layout(tmp_path: Path, layout: str) -> None:
    assert detect_layout(str(fake_root(tmp_path, layout))) == layout


def test_detect_layout_nothing_mounted(tmp_path: Path) -> None:
    with pytest.raises(CgroupError) as ei:
        detect_layout(str(tmp_path))
    assert ei.value.path == str(tmp_path)


@pytest.mark.parametrize("given,expected", [
    ("", "/criu-cr/web"),
    ("/a/b", "/a/b"),
    ("/a//b/", "/a/b"),
    ("mine/web", "/criu-cr/mine/web"),
])
def test_resolve_cgroup_path(given: str, expected: str) -> None:
    assert resolve_cgroup_path(given, "web") == expected


@pytest.mark.parametrize("given,words", [
    ("system.slice:criu-cr:web", "systemd"),
    ("/a/../b", "'..'"),
    ("/", "below the root"),
])
def test_resolve_cgroup_path_refused(given: str, words: str) -> None:
    with pytest.raises(CgroupError) as ei:
        resolve_cgroup_path(given, "web")
    assert words in str(ei.value)
    assert ei.value.path == given


@pytest.mark.parametrize("shares,weight", [(2, 1), (1024, 39), (262144, 10000), (1, 1), (10**9, 10000)])
def test_shares_to_weight(shares: int, weight: int) -> None:
    assert shares_to_weight(shares) == weight


def test_paths_v1(tmp_path: Path) -> None:
    root = fake_root(tmp_path, "v1")
    cg = Cgroups("/x/y", "id", root=str(root))
    assert cg.layout == "v1"
    assert cg.paths["memory"] == f"{root}/memory/x/y"
    assert cg.paths["name=systemd"] == f"{root}/systemd/x/y"
    assert UNIFIED not in cg.paths
    assert cg.freezer_path() == f"{root}/freezer/x/y"


def test_paths_hybrid_has_unified_too(tmp_path: Path) -> None:
    root = fake_root(tmp_path, "hybrid")
    cg = Cgroups("", "web", root=str(root))
    assert cg.paths[UNIFIED] == f"{root}/unified/criu-cr/web"
    assert cg.paths["freezer"] == f"{root}/freezer/criu-cr/web"
    assert cg.freezer_path() == cg.paths["freezer"]  # v1 freezer wins on hybrid
    assert len(cg.paths) == len(V1_CONTROLLERS) + 1
    assert all(path == "/criu-cr/web" for _, path in cg.cg_roots())
    assert ("name=systemd", "/criu-cr/web") in cg.cg_roots()


def test_paths_v2(tmp_path: Path) -> None:
    root = fake_root(tmp_path, "v2")
    cg = Cgroups("", "web", root=str(root))
    assert cg.paths == {UNIFIED: f"{root}/criu-cr/web"}
    assert cg.freezer_path() == f"{root}/criu-cr/web"
    assert cg.cg_roots() == [(UNIFIED, "/criu-cr/web")]


def test_dict_round_trip(tmp_path: Path) -> None:
    cg = Cgroups("", "web", root=str(fake_root(tmp_path, "hybrid")))
    again = Cgroups.from_dict(cg.to_dict())
    assert again.to_dict() == cg.to_dict()
    assert again.paths == cg.paths and again.path == "/criu-cr/web"


def test_from_paths_with_uneven_runc_paths(tmp_path: Path) -> None:
    # runc puts a relative cgroupsPath under its own cgroup, which may differ per controller.
    root = fake_root(tmp_path, "hybrid")
    paths = {UNIFIED: f"{root}/unified/c1", "memory": f"{root}/memory/outer/c1", "freezer": f"{root}/freezer/c1"}
    cg = Cgroups.from_paths(paths, root=str(root))
    assert dict(cg.cg_roots()) == {UNIFIED: "/c1", "memory": "/outer/c1", "freezer": "/c1"}
    assert cg.freezer_path() == f"{root}/freezer/c1"


def test_from_paths_co_mounted_v1(tmp_path: Path) -> None:
    root = fake_root(tmp_path, "v1")
    (root / "cpu").rmdir()
    (root / "cpuacct").rmdir()
    (root / "cpu,cpuacct").mkdir()
    (root / "cpu").symlink_to("cpu,cpuacct")
    (root / "cpuacct").symlink_to("cpu,cpuacct")
    paths = {"cpu": f"{root}/cpu,cpuacct/c1", "cpuacct": f"{root}/cpu,cpuacct/c1", "pids": f"{root}/pids/c1"}
    cg = Cgroups.from_paths(paths, root=str(root))
    assert set(cg.cg_roots()) == {("cpu", "/c1"), ("cpuacct", "/c1"), ("pids", "/c1")}


def test_from_paths_empty(tmp_path: Path) -> None:
    with pytest.raises(CgroupError):
        Cgroups.from_paths({}, root=str(fake_root(tmp_path, "v2")))


def _made(cg: Cgroups) -> None:
    for p in cg.paths.values():
        Path(p).mkdir(parents=True)


def test_apply_v1(tmp_path: Path) -> None:
    cg = Cgroups("", "web", root=str(fake_root(tmp_path, "v1")))
    _made(cg)
    cg.apply(Resources(memory_limit=64 << 20, memory_swap=-1, pids_limit=-1, cpu_shares=512,
                       cpu_quota=50000, cpu_period=100000, cpuset_cpus="0-1"))
    read = lambda ctrl, f: Path(cg.paths[ctrl], f).read_text()  # noqa: E731
    assert read("memory", "memory.limit_in_bytes") == str(64 << 20)
    assert read("memory", "memory.memsw.limit_in_bytes") == "-1"
    assert read("pids", "pids.max") == "max"
    assert read("cpu", "cpu.shares") == "512"
    assert read("cpu", "cpu.cfs_quota_us") == "50000"
    assert read("cpu", "cpu.cfs_period_us") == "100000"
    assert read("cpuset", "cpuset.cpus") == "0-1"


def test_apply_v2(tmp_path: Path) -> None:
    cg = Cgroups("", "web", root=str(fake_root(tmp_path, "v2")))
    _made(cg)
    cg.apply(Resources(memory_limit=100, memory_swap=300, pids_limit=20, cpu_shares=1024, cpu_quota=-1))
    read = lambda f: Path(cg.paths[UNIFIED], f).read_text()  # noqa: E731
    assert read("memory.max") == "100"
    assert read("memory.swap.max") == "200"  # OCI swap is memory+swap
    assert read("pids.max") == "20"
    assert read("cpu.weight") == "39"
    assert read("cpu.max") == "max 100000"


def test_apply_v2_nothing_given_writes_nothing(tmp_path: Path) -> None:
    cg = Cgroups("", "web", root=str(fake_root(tmp_path, "v2")))
    _made(cg)
    cg.apply(Resources())
    assert list(Path(cg.paths[UNIFIED]).iterdir()) == []


@pytest.mark.parametrize("res,words", [
    (Resources(memory_swap=300), "needs a memory.limit"),
    (Resources(memory_limit=300, memory_swap=100), "below memory.limit"),
])
def test_apply_v2_swap_refused(tmp_path: Path, res: Resources, words: str) -> None:
    cg = Cgroups("", "web", root=str(fake_root(tmp_path, "v2")))
    _made(cg)
    with pytest.raises(CgroupError, match=words):
        cg.apply(res)


def test_apply_missing_dir_names_the_file(tmp_path: Path) -> None:
    cg = Cgroups("", "web", root=str(fake_root(tmp_path, "v2")))
    with pytest.raises(CgroupError) as ei:
        cg.apply(Resources(pids_limit=5))
    assert ei.value.path == f"{cg.paths[UNIFIED]}/pids.max"
    assert "subtree_control" in str(ei.value)


def test_pids_walks_sub_cgroups(tmp_path: Path) -> None:
    cg = Cgroups("", "web", root=str(fake_root(tmp_path, "v2")))
    _made(cg)
    top = Path(cg.paths[UNIFIED])
    (top / "cgroup.procs").write_text("30\n10\n")
    (top / "sub").mkdir()
    (top / "sub" / "cgroup.procs").write_text("20\n")
    assert cg.pids() == [10, 20, 30]


def test_remove_absent_is_fine(tmp_path: Path) -> None:
    cg = Cgroups("", "web", root=str(fake_root(tmp_path, "hybrid")))
    cg.remove()
    assert not cg.exists()


def test_remove_empty_dirs(tmp_path: Path) -> None:
    cg = Cgroups("", "web", root=str(fake_root(tmp_path, "hybrid")))
    _made(cg)
    Path(cg.paths["memory"], "nested").mkdir()
    assert cg.exists()
    cg.remove()
    assert not cg.exists()
    assert Path(cg.paths["memory"]).parent.is_dir()  # the shared /criu-cr parent stays


def test_unknown_layout(tmp_path: Path) -> None:
    with pytest.raises(CgroupError, match="unknown cgroup layout"):
        Cgroups("", "web", root=str(tmp_path), layout="v3")
