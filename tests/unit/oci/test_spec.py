"""runtime.oci.spec: parsing runc's default config and refusing what we do not support."""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from runtime.errors import SpecError
from runtime.oci.spec import Resources, Spec, load_spec, parse_spec
from runtime.testing.bundle import default_spec
from tests.conftest import require

# `runc spec` (runc 1.1.5) output; the harness keeps the copy (its equality with
# a live `runc spec` is checked in tests/integration/test_container_runc.py).
RUNC_DEFAULT: dict[str, Any] = default_spec()


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    (tmp_path / "rootfs").mkdir()
    return tmp_path


def write(bundle: Path, config: dict[str, Any]) -> Spec:
    (bundle / "config.json").write_text(json.dumps(config))
    return load_spec(bundle)


def cfg() -> dict[str, Any]:
    return copy.deepcopy(RUNC_DEFAULT)


def test_runc_default_parses(bundle: Path) -> None:
    spec = write(bundle, cfg())
    assert spec.oci_version == "1.0.2-dev"
    assert spec.process.args == ("sh",)
    assert spec.process.uid == 0 and spec.process.gid == 0
    assert spec.process.rlimits[0].type == "RLIMIT_NOFILE" and spec.process.rlimits[0].soft == 1024
    assert spec.process.no_new_privileges is True
    assert spec.process.capabilities is not None and "bounding" in spec.process.capabilities
    assert spec.root.path == str(bundle / "rootfs") and spec.root.readonly
    assert spec.hostname == "runc"
    assert [m.destination for m in spec.mounts][:2] == ["/proc", "/dev"]
    assert [n.type for n in spec.namespaces] == ["pid", "network", "ipc", "uts", "mount"]
    assert all(n.path is None for n in spec.namespaces)
    assert spec.namespace("network") is not None and spec.namespace("cgroup") is None
    assert spec.cgroups_path == ""
    assert spec.resources.devices == ({"allow": False, "access": "rwm"},)
    assert "/proc/kcore" in spec.masked_paths and "/proc/sys" in spec.readonly_paths
    assert spec.raw == RUNC_DEFAULT
    # terminal: true is accepted but never silently: it is in the warnings
    assert spec.process.terminal is True
    assert any("process.terminal" in w for w in spec.warnings)


def test_real_runc_spec_parses(bundle: Path) -> None:
    runc = shutil.which("runc")
    require(runc is not None, "runc not installed")
    subprocess.run([runc, "spec"], cwd=bundle, check=True)
    spec = load_spec(bundle)
    assert spec.process.args == ("sh",)


def test_supported_fields_parse(bundle: Path, tmp_path: Path) -> None:
    (bundle / "data").mkdir()
    c = cfg()
    c["ociVersion"] = "1.2.0"
    c["process"]["terminal"] = False
    c["process"]["user"] = {"uid": 1000, "gid": 1000, "additionalGids": [5, 6], "umask": 0o22}
    c["process"]["oomScoreAdj"] = 100
    c["hooks"] = {"prestart": []}
    c["mounts"].append({"destination": "data", "source": "data", "options": ["rbind", "ro"]})
    c["linux"]["namespaces"].append({"type": "cgroup"})
    c["linux"]["cgroupsPath"] = "/criu-cr/x"
    c["linux"]["sysctl"] = {"net.ipv4.ip_forward": "1"}
    c["linux"]["devices"] = [{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 0o666}]
    c["linux"]["resources"].update({
        "memory": {"limit": 64 << 20, "swap": -1, "swappiness": None, "disableOOMKiller": False},
        "cpu": {"shares": 512, "quota": 50000, "period": 100000, "cpus": "0"},
        "pids": {"limit": 0},
        "blockIO": {},
    })
    spec = write(bundle, c)
    assert spec.warnings == ()
    p = spec.process
    assert (p.uid, p.gid, p.additional_gids, p.umask, p.oom_score_adj) == (1000, 1000, (5, 6), 0o22, 100)
    bind = spec.mounts[-1]
    assert bind.destination == "/data" and bind.type == "bind" and bind.is_bind
    assert bind.source == str(bundle / "data")
    assert spec.namespace("cgroup") is not None
    assert spec.cgroups_path == "/criu-cr/x"
    assert spec.sysctl == {"net.ipv4.ip_forward": "1"}
    assert spec.devices[0].path == "/dev/fuse" and spec.devices[0].file_mode == 0o666
    assert spec.resources == Resources(
        memory_limit=64 << 20, memory_swap=-1, pids_limit=None, cpu_shares=512, cpu_quota=50000,
        cpu_period=100000, cpuset_cpus="0", devices=({"allow": False, "access": "rwm"},))


def test_absolute_root_and_joined_namespace(bundle: Path, tmp_path: Path) -> None:
    other = tmp_path / "elsewhere"
    other.mkdir()
    c = cfg()
    c["root"] = {"path": str(other)}
    c["linux"]["namespaces"][1] = {"type": "network", "path": "/proc/self/ns/net"}
    spec = write(bundle, c)
    assert spec.root.path == str(other) and not spec.root.readonly
    assert spec.namespace("network").path == "/proc/self/ns/net"  # type: ignore[union-attr]


def test_unknown_property_is_a_warning(bundle: Path) -> None:
    c = cfg()
    c["process"]["terminal"] = False
    c["linux"]["frobnicate"] = 1
    spec = write(bundle, c)
    assert spec.warnings == ("linux.frobnicate is not a runtime-spec property; ignored",)


def test_missing_config(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as ei:
        load_spec(tmp_path)
    assert ei.value.field == "config.json"
    assert "does not exist" in str(ei.value) and "runc spec" in str(ei.value)


def test_malformed_json_gives_line_and_column(bundle: Path) -> None:
    (bundle / "config.json").write_text('{\n  "ociVersion": "1.0.2",\n  "process": {,\n}\n')
    with pytest.raises(SpecError) as ei:
        load_spec(bundle)
    assert "line 3 column" in str(ei.value)


def test_not_an_object(bundle: Path) -> None:
    with pytest.raises(SpecError, match="must be a JSON object"):
        parse_spec([1, 2], bundle)


def _set(path: str, value: Any) -> Any:
    """A mutation of the default config: set dotted ``path`` (list indexes allowed) to ``value``."""
    def mutate(c: dict[str, Any]) -> None:
        keys = path.split(".")
        obj: Any = c
        for k in keys[:-1]:
            obj = obj[int(k)] if isinstance(obj, list) else obj.setdefault(k, {})
        last = keys[-1]
        if isinstance(obj, list):
            obj[int(last)] = value
        else:
            obj[last] = value
    return mutate


def _drop(path: str) -> Any:
    def mutate(c: dict[str, Any]) -> None:
        keys = path.split(".")
        obj: Any = c
        for k in keys[:-1]:
            obj = obj[k]
        del obj[keys[-1]]
    return mutate


ERRORS = [
    # (id, mutation, field, words in the message)
    ("missing-rootfs", _set("root.path", "nope"), "root.path", "does not exist"),
    ("no-root", _drop("root"), "root", "missing"),
    ("no-process", _drop("process"), "process", "missing"),
    ("version", _set("ociVersion", "2.0.0"), "ociVersion", "not supported"),
    ("user-ns", _set("linux.namespaces.0", {"type": "user"}), "linux.namespaces[0].type",
     "'user' is not supported"),
    ("time-ns", _set("linux.namespaces.0", {"type": "time"}), "linux.namespaces[0].type", "'time' is not supported"),
    ("unknown-ns", _set("linux.namespaces.2", {"type": "bogus"}), "linux.namespaces[2].type",
     "unknown namespace type"),
    ("dup-ns", _set("linux.namespaces.2", {"type": "pid"}), "linux.namespaces[2].type", "given twice"),
    ("ns-path-missing", _set("linux.namespaces.1", {"type": "network", "path": "/run/netns/does-not-exist-xyz"}),
     "linux.namespaces[1].path", "/run/netns/does-not-exist-xyz does not exist"),
    ("ns-path-relative", _set("linux.namespaces.1", {"type": "network", "path": "netns/x"}),
     "linux.namespaces[1].path", "not an absolute path"),
    ("ns-path-wrong-type", _set("linux.namespaces.1", {"type": "network", "path": "/proc/self/ns/mnt"}),
     "linux.namespaces[1].path", "is a mount namespace, not network"),
    ("ns-path-not-ns", _set("linux.namespaces.1", {"type": "network", "path": "/proc/self/stat"}),
     "linux.namespaces[1].path", "not a namespace file"),
    ("cgroups-systemd", _set("linux.cgroupsPath", "system.slice:criu-cr:web"), "linux.cgroupsPath",
     "systemd-style"),
    ("cgroups-dotdot", _set("linux.cgroupsPath", "/a/../../b"), "linux.cgroupsPath", "'..'"),
    ("cap-set", _set("process.capabilities.frobbing", ["CAP_KILL"]), "process.capabilities.frobbing",
     "unknown capability set"),
    ("cap-name", _set("process.capabilities.bounding", ["KILL"]), "process.capabilities.bounding[0]",
     "not a capability name"),
    ("hostname-long", _set("hostname", "h" * 65), "hostname", "longer than 64"),
    ("annotation", _set("annotations", {"a": 1}), "annotations.a", "string"),
    ("uid-mappings", _set("linux.uidMappings", [{"containerID": 0, "hostID": 1000, "size": 1}]),
     "linux.uidMappings", "user namespaces"),
    ("gid-mappings", _set("linux.gidMappings", [{"containerID": 0, "hostID": 1000, "size": 1}]),
     "linux.gidMappings", "user namespaces"),
    ("hooks", _set("hooks", {"prestart": [{"path": "/bin/true"}]}), "hooks.prestart", "hooks are not supported"),
    ("seccomp", _set("linux.seccomp", {"defaultAction": "SCMP_ACT_ALLOW"}), "linux.seccomp", "seccomp"),
    ("apparmor", _set("process.apparmorProfile", "docker-default"), "process.apparmorProfile", "AppArmor"),
    ("selinux", _set("process.selinuxLabel", "system_u:r:x"), "process.selinuxLabel", "SELinux"),
    ("mount-label", _set("linux.mountLabel", "system_u:object_r:x"), "linux.mountLabel", "SELinux"),
    ("intel-rdt", _set("linux.intelRdt", {"closID": "x"}), "linux.intelRdt", "Intel RDT"),
    ("personality", _set("linux.personality", {"domain": "LINUX32"}), "linux.personality", "not supported"),
    ("time-offsets", _set("linux.timeOffsets", {"monotonic": {"secs": 1}}), "linux.timeOffsets", "time"),
    ("domainname", _set("domainname", "example.org"), "domainname", "not supported"),
    ("args-empty", _set("process.args", []), "process.args", "non-empty"),
    ("args-type", _set("process.args", "sh"), "process.args", "JSON array"),
    ("env", _set("process.env", ["NOEQUALS"]), "process.env[0]", "NAME=value"),
    ("cwd", _set("process.cwd", "tmp"), "process.cwd", "absolute"),
    ("no-user", _drop("process.user"), "process.user", "missing"),
    ("uid", _set("process.user.uid", -1), "process.user.uid", "not a valid id"),
    ("terminal-type", _set("process.terminal", "yes"), "process.terminal", "must be a bool"),
    ("rlimit-type", _set("process.rlimits.0.type", "RLIMIT_BOGUS"), "process.rlimits[0].type", "unknown rlimit"),
    ("rlimit-order", _set("process.rlimits.0.soft", 4096), "process.rlimits[0]", "above hard limit"),
    ("hostname-no-uts", _set("linux.namespaces.3", {"type": "cgroup"}), "hostname", "uts namespace"),
    ("swappiness", _set("linux.resources.memory", {"swappiness": 10}), "linux.resources.memory.swappiness",
     "not supported"),
    ("blkio", _set("linux.resources.blockIO", {"weight": 10}), "linux.resources.blockIO.weight", "not supported"),
    ("hugepages", _set("linux.resources.hugepageLimits", [{"pageSize": "2MB", "limit": 1}]),
     "linux.resources.hugepageLimits", "not supported"),
    ("unified", _set("linux.resources.unified", {"memory.high": "1G"}), "linux.resources.unified.memory.high",
     "not supported"),
    ("shares", _set("linux.resources.cpu", {"shares": -5}), "linux.resources.cpu.shares", "positive"),
    ("bind-source", _set("mounts.0", {"destination": "/x", "type": "bind", "source": "/no/such/dir"}),
     "mounts[0].source", "does not exist"),
    ("mount-no-type", _set("mounts.0", {"destination": "/x", "source": "tmpfs"}), "mounts[0].type", "missing"),
    ("idmapped", _set("mounts.0.uidMappings", [{"containerID": 0, "hostID": 1, "size": 1}]),
     "mounts[0].uidMappings", "id-mapped"),
    ("masked", _set("linux.maskedPaths", ["proc/kcore"]), "linux.maskedPaths[0]", "absolute"),
    ("propagation", _set("linux.rootfsPropagation", "sideways"), "linux.rootfsPropagation", "unknown"),
    ("sysctl", _set("linux.sysctl", {"net.ipv4.ip_forward": 1}), "linux.sysctl.net.ipv4.ip_forward", "string"),
    ("device", _set("linux.devices", [{"path": "/dev/x", "type": "z"}]), "linux.devices[0].type", "unknown"),
]


@pytest.mark.parametrize("mutate,field,words", [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS])
def test_refused(bundle: Path, mutate: Any, field: str, words: str) -> None:
    c = cfg()
    mutate(c)
    with pytest.raises(SpecError) as ei:
        write(bundle, c)
    assert ei.value.field == field
    assert words in str(ei.value)
    assert str(ei.value).startswith(f"config.json: {field}: ")


def test_refusals_say_how_to_fix(bundle: Path) -> None:
    c = cfg()
    c["linux"]["namespaces"].append({"type": "user"})
    with pytest.raises(SpecError) as ei:
        write(bundle, c)
    assert ei.value.hint and "remove" in ei.value.hint


def test_resource_limits_normalised(bundle: Path) -> None:
    c = cfg()
    c["linux"]["resources"]["memory"] = {"limit": -1, "swap": 0}
    c["linux"]["resources"]["pids"] = {"limit": -1}
    c["linux"]["resources"]["cpu"] = {"shares": 0, "quota": -1}
    r = write(bundle, c).resources
    assert (r.memory_limit, r.memory_swap, r.pids_limit, r.cpu_shares, r.cpu_quota) == (-1, None, -1, None, -1)


def test_parse_spec_resolves_against_bundle(bundle: Path) -> None:
    spec = parse_spec(cfg(), str(bundle) + "/")
    assert spec.bundle == str(bundle)
    assert os.path.isabs(spec.root.path)
