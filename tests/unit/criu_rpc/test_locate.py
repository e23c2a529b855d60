"""Finding criu (explicit > $CRIU_CR_CRIU > PATH) and parsing its version."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from criu_rpc._pb import rpc_pb2
from criu_rpc.errors import CriuError, CriuNotFoundError, CriuVersionError
from criu_rpc.locate import (CRIU_ENV, INET_SOCKETS_MIN_VERSION_ON_LINUX_6_16, MIN_VERSION, CriuVersion, binary_version,
                             kernel_release, locate, parse_version, require_version, required_version)


def fake_criu(directory: Path, output: str = "Version: 4.2.1\n", status: int = 0,
              name: str = "criu") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(f"#!/bin/sh\nprintf '%s' '{output}'\nexit {status}\n")
    path.chmod(0o755)
    return path


# -- locate -------------------------------------------------------------------

def test_explicit_path_wins(tmp_path: Path) -> None:
    explicit = fake_criu(tmp_path / "a")
    env = {CRIU_ENV: str(fake_criu(tmp_path / "b")), "PATH": str(tmp_path / "c")}
    fake_criu(tmp_path / "c")
    assert locate(explicit, env=env) == str(explicit)


def test_env_beats_path(tmp_path: Path) -> None:
    from_env = fake_criu(tmp_path / "b")
    fake_criu(tmp_path / "c")
    assert locate(env={CRIU_ENV: str(from_env), "PATH": str(tmp_path / "c")}) == str(from_env)


def test_path_is_last(tmp_path: Path) -> None:
    on_path = fake_criu(tmp_path / "c")
    assert locate(env={"PATH": f"{tmp_path / 'empty'}:{tmp_path / 'c'}"}) == str(on_path)
    assert locate(env={CRIU_ENV: "", "PATH": str(tmp_path / "c")}) == str(on_path)


def test_bare_name_is_looked_up_on_path(tmp_path: Path) -> None:
    mine = fake_criu(tmp_path / "c", name="criu-4.2")
    assert locate("criu-4.2", env={"PATH": str(tmp_path / "c")}) == str(mine)


def test_relative_path_becomes_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_criu(tmp_path / "a")
    monkeypatch.chdir(tmp_path)
    assert locate("a/criu", env={}) == str(tmp_path / "a" / "criu")


def test_broken_env_path_is_an_error_not_skipped(tmp_path: Path) -> None:
    fake_criu(tmp_path / "c")
    missing = tmp_path / "gone" / "criu"
    with pytest.raises(CriuNotFoundError) as info:
        locate(env={CRIU_ENV: str(missing), "PATH": str(tmp_path / "c")})
    assert str(missing) in str(info.value)
    assert CRIU_ENV in str(info.value)
    assert "does not exist" in str(info.value)


def test_not_executable(tmp_path: Path) -> None:
    plain = tmp_path / "criu"
    plain.write_text("")
    with pytest.raises(CriuNotFoundError, match="not an executable"):
        locate(plain, env={})
    with pytest.raises(CriuNotFoundError):
        locate(tmp_path, env={})  # a directory


def test_nothing_found(tmp_path: Path) -> None:
    with pytest.raises(CriuNotFoundError) as info:
        locate(env={"PATH": str(tmp_path)}, fallback=str(tmp_path / "missing"))
    assert "install-criu" in str(info.value)
    assert str(tmp_path / "missing") in str(info.value)
    assert isinstance(info.value, FileNotFoundError)


def test_installer_fallback(tmp_path: Path) -> None:
    fake = tmp_path / "criu"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    assert locate(env={"PATH": "/nonexistent"}, fallback=str(fake)) == str(fake)


# -- versions -------------------------------------------------------------------

@pytest.mark.parametrize("text, numbers, gitid, name", [
    ("Version: 4.2.1\n", (4, 2, 1, 0), None, None),
    ("Version: 3.15\n", (3, 15, 0, 0), None, None),
    ("Version: 4.2\nGitID: v4.2-37-g1a2b3c4\n", (4, 2, 0, 0), "v4.2-37-g1a2b3c4", None),
    ("Version: 3.16.1.2 (Petr)\n", (3, 16, 1, 2), None, "Petr"),
    ("warning: x\nVersion:4.1.1\n", (4, 1, 1, 0), None, None),
])
def test_parse_version(text, numbers, gitid, name) -> None:
    v = parse_version(text)
    assert v.numbers == numbers and v.gitid == gitid and v.name == name


def test_parse_version_rejects_garbage() -> None:
    with pytest.raises(CriuError, match="Version"):
        parse_version("criu: unknown option\n")


def test_version_compares_as_tuple() -> None:
    v = CriuVersion(major=4, minor=2, sublevel=1)
    assert v >= MIN_VERSION and v > (4, 2) and v < (4, 3) and v == (4, 2, 1)
    assert CriuVersion(major=4, minor=2) == (4, 2) == CriuVersion(major=4, minor=2, gitid="g")
    assert CriuVersion(major=4, minor=1, sublevel=1) < MIN_VERSION
    assert sorted([v, CriuVersion(major=3, minor=17)])[0].major == 3
    assert hash(CriuVersion(major=4, minor=2)) == hash(CriuVersion(major=4, minor=2, name="x"))
    assert v != "4.2.1"
    with pytest.raises(TypeError):
        _ = v < "4.3"
    assert str(v) == "4.2.1"


def test_version_from_rpc_answer() -> None:
    msg = rpc_pb2.criu_version(major_number=4, minor_number=2, sublevel=1)
    assert CriuVersion.from_proto(msg) == CriuVersion(major=4, minor=2, sublevel=1)
    msg.gitid = "v4.2-1-gabc"
    assert CriuVersion.from_proto(msg).gitid == "v4.2-1-gabc"


def test_binary_version_runs_the_binary(tmp_path: Path) -> None:
    criu = fake_criu(tmp_path, "Version: 4.2.1\\nGitID: abc\\n")
    assert binary_version(criu) == CriuVersion(major=4, minor=2, sublevel=1, gitid="abc")


def test_binary_version_failures(tmp_path: Path) -> None:
    with pytest.raises(CriuError, match="status 3"):
        binary_version(fake_criu(tmp_path / "a", "boom", status=3))
    with pytest.raises(CriuNotFoundError):
        binary_version(tmp_path / "missing")


def test_require_version() -> None:
    require_version(CriuVersion(major=4, minor=2))
    with pytest.raises(CriuVersionError) as info:
        require_version(CriuVersion(major=4, minor=1, sublevel=1), why="dumping INET sockets",
                        path="/usr/sbin/criu")
    assert info.value.needed == MIN_VERSION and info.value.found == (4, 1, 1)
    assert "dumping INET sockets" in str(info.value)


# -- kernel -----------------------------------------------------------------------

@pytest.mark.parametrize("release, expected", [
    ("6.18.44-fc-v657", (6, 18, 44)),
    ("6.1.0-28-amd64", (6, 1, 0, 28)),
    ("6.16.0-rc1", (6, 16, 0)),
    ("5.15", (5, 15)),
    ("4.19.0+", (4, 19, 0)),
])
def test_kernel_release(release, expected) -> None:
    assert kernel_release(release)[:len(expected)] == expected


def test_kernel_release_of_this_machine() -> None:
    assert kernel_release() == kernel_release(os.uname().release)
    with pytest.raises(ValueError):
        kernel_release("linux")


def test_required_version() -> None:
    assert required_version((6, 18, 44)) >= INET_SOCKETS_MIN_VERSION_ON_LINUX_6_16
    assert required_version((5, 10)) == MIN_VERSION
