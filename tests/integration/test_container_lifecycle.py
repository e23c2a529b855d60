"""A busybox container without runc: pid 1, hostname, rootfs, exec, logs, pause/resume, delete."""

from __future__ import annotations

import os
import time

import pytest

from runtime.container import Container
from runtime.linux.mounts import mounts_under

from .container_helpers import need_container_prereqs, until


@pytest.fixture(autouse=True)
def _prereqs() -> None:
    need_container_prereqs()


def test_pid1_hostname_and_own_rootfs(busybox_bundle, container):
    bundle = busybox_bundle(["sh", "-c", "echo pid=$$; hostname; cat /marker; ls /; sleep 1000"],
                            hostname="ctr-host", files={"/marker": "inside-the-rootfs\n"})
    ctr = container(bundle)
    assert ctr.status == "running"
    logs = until(lambda: ctr.logs() if b"sleep" not in ctr.logs() and b"www" in ctr.logs() else None,
                 what="the container's output").decode()
    assert "pid=1\n" in logs
    assert "ctr-host\n" in logs
    assert "inside-the-rootfs\n" in logs
    assert "work" not in logs.split()  # the host's /work is not visible
    pid = ctr.init_pid
    assert os.readlink(f"/proc/{pid}/ns/pid") != os.readlink("/proc/self/ns/pid")
    assert os.readlink(f"/proc/{pid}/ns/mnt") != os.readlink("/proc/self/ns/mnt")
    assert os.readlink(f"/proc/{pid}/root") == "/"  # pivot_root'ed, not chroot'ed
    st = ctr.state()
    assert st["status"] == "running" and st["pid"] == pid
    assert st["stdio"]["stdout"].startswith("pipe:[")
    assert st["namespaces"]["pid"] == f"/proc/{pid}/ns/pid"


def test_exec_joins_the_container(busybox_bundle, container):
    ctr = container(busybox_bundle(["sleep", "1000"], hostname="exec-host"))
    r = ctr.exec(["sh", "-c", "hostname; cat /proc/1/cmdline; echo err >&2; exit 5"])
    assert r.exit_code == 5
    assert r.stdout.split(b"\n")[0] == b"exec-host"
    assert b"sleep\x001000" in r.stdout
    assert r.stderr == b"err\n"
    missing = ctr.exec(["no-such-command"])
    assert missing.exit_code == 127
    assert b"not found" in missing.stderr


def test_logs_hold_stdout_and_stderr(busybox_bundle, container):
    ctr = container(busybox_bundle(["sh", "-c", "echo to-out; echo to-err >&2; exit 3"]))
    assert ctr.wait(timeout=10) == 3
    assert ctr.status == "stopped"
    assert b"to-out\n" in ctr.logs() and b"to-err\n" in ctr.logs()


def test_create_then_start(busybox_bundle, container):
    ctr = container(busybox_bundle(["sh", "-c", "echo started; sleep 1000"]), start=False)
    assert ctr.status == "created"
    time.sleep(0.3)
    assert ctr.logs() == b""  # the process has not run yet
    ctr.start()
    assert ctr.status == "running"
    until(lambda: b"started" in ctr.logs(), what="output after start")


def test_pause_freezes_and_resume_continues(busybox_bundle, container):
    loop = "i=0; while true; do i=$((i+1)); echo $i > /tmp/count; usleep 20000; done"
    ctr = container(busybox_bundle(["sh", "-c", loop], applets=("sh", "usleep", "echo")))
    counter = os.path.join(ctr.state()["rootfs"], "tmp", "count")  # the overlay, seen from the host

    def read() -> int:
        try:
            with open(counter) as f:
                return int(f.read().strip() or 0)
        except (FileNotFoundError, ValueError):
            return 0

    until(lambda: read() > 3, what="the counter to run")
    ctr.pause()
    assert ctr.status == "paused"
    frozen = read()
    time.sleep(0.5)
    assert read() == frozen
    ctr.resume()
    assert ctr.status == "running"
    until(lambda: read() > frozen + 3, what="the counter to continue")


def test_kill_and_delete_leave_nothing(busybox_bundle, state_root):
    ctr = Container.run("gone", busybox_bundle(["sleep", "1000"], cgroups_path="/criu-cr-test/gone"), state_root)
    directory = ctr.directory
    cgroup_dirs = list(ctr.state()["cgroups"]["paths"].values())
    assert all(os.path.isdir(d) for d in cgroup_dirs)
    assert mounts_under(directory)
    ctr.kill(9)
    assert ctr.wait(timeout=10) == 137
    ctr.delete()
    with open("/proc/self/mountinfo") as f:
        assert directory not in f.read()
    assert not any(os.path.exists(d) for d in cgroup_dirs)
    assert not os.path.exists(directory)
    assert Container.list(state_root) == []
    for d in cgroup_dirs:  # the parent is not the container's: the test made it
        os.rmdir(os.path.dirname(d))


def test_force_delete_of_a_running_container(busybox_bundle, state_root):
    ctr = Container.run("forced", busybox_bundle(["sleep", "1000"]), state_root)
    pid = ctr.init_pid
    ctr.delete(force=True)
    assert not os.path.exists(f"/proc/{pid}/cmdline") or open(f"/proc/{pid}/stat").read().split()[2] == "Z"
    assert not os.path.exists(ctr.directory)


def test_reused_pid_reads_as_stopped(busybox_bundle, container, state_root):
    from runtime.container.state import StateStore

    ctr = container(busybox_bundle(["sleep", "1000"]))
    store = StateStore(state_root)
    st = store.read(ctr.id)
    store.write(st.replace(init_start_time=st.init_start_time + 1))  # as if the pid were reused
    assert ctr.status == "stopped"


def test_sysctl_and_cgroup_namespace(busybox_bundle, container):
    import json

    bundle = busybox_bundle(["sleep", "1000"], cgroups_path="/criu-cr/sysctl-cgns")
    with open(os.path.join(bundle, "config.json")) as f:
        config = json.load(f)
    config["linux"]["sysctl"] = {"net.ipv4.ip_forward": "1"}
    config["linux"]["namespaces"].append({"type": "cgroup"})
    with open(os.path.join(bundle, "config.json"), "w") as f:
        json.dump(config, f)
    ctr = container(bundle)
    r = ctr.exec(["sh", "-c", "cat /proc/sys/net/ipv4/ip_forward; cat /proc/self/cgroup"])
    lines = r.stdout.decode().split()
    assert lines[0] == "1"
    assert all(line.endswith(":/") for line in lines[1:]), lines  # the cgroup ns is rooted at its cgroup
    assert os.readlink(f"/proc/{ctr.init_pid}/ns/cgroup") != os.readlink("/proc/self/ns/cgroup")


def _status_field(pid: int, field: str) -> str:
    with open(f"/proc/{pid}/status") as f:
        return next(line.split(":", 1)[1].strip() for line in f if line.startswith(field + ":"))


def test_capabilities_of_the_default_spec(busybox_bundle, container):
    ctr = container(busybox_bundle(["sleep", "1000"]))  # runc spec's: AUDIT_WRITE, KILL, NET_BIND_SERVICE
    expected = (1 << 29) | (1 << 5) | (1 << 10)
    assert int(_status_field(ctr.init_pid, "CapBnd"), 16) == expected
    assert int(_status_field(ctr.init_pid, "CapEff"), 16) == expected
    assert int(_status_field(ctr.init_pid, "CapAmb"), 16) == 0  # not inheritable: cannot be ambient


def test_non_root_user(busybox_bundle, container):
    import json

    bundle = busybox_bundle(["sh", "-c", "id; sleep 1000"])
    with open(os.path.join(bundle, "config.json")) as f:
        config = json.load(f)
    config["process"]["user"] = {"uid": 65534, "gid": 65534, "additionalGids": [5]}
    with open(os.path.join(bundle, "config.json"), "w") as f:
        json.dump(config, f)
    ctr = container(bundle)
    until(lambda: b"uid=" in ctr.logs(), what="id's output")
    assert ctr.logs().startswith(b"uid=65534(nobody) gid=65534(nogroup) groups=5")
    assert _status_field(ctr.init_pid, "Uid").split()[0] == "65534"
    assert int(_status_field(ctr.init_pid, "CapEff"), 16) == 0


def test_delete_of_a_created_container_needs_no_force(busybox_bundle, state_root):
    ctr = Container.create("created-only", busybox_bundle(["sleep", "1000"]), state_root)
    pid = ctr.init_pid
    assert ctr.status == "created"
    ctr.delete()
    assert not os.path.exists(ctr.directory)
    from runtime.linux.procfs import proc_start_time

    assert proc_start_time(pid) is None  # delete waited for init to die
    with open("/proc/self/mountinfo") as f:
        assert ctr.directory not in f.read()


def test_exec_timeout_kills_the_process(busybox_bundle, container):
    ctr = container(busybox_bundle(["sleep", "1000"]))
    with pytest.raises(TimeoutError):
        ctr.exec(["sleep", "77"], timeout=0.5)
    until(lambda: len(ctr.ps()) == 1, what="the timed-out exec to be killed")
    # ...and reaped: no zombie child of ours is left.
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            assert not (fields[0] == "Z" and int(fields[1]) == os.getpid()), f"zombie {entry}"
