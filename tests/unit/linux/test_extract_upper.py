"""runtime.linux.mounts.extract_upper: a copy's filesystem changes, unpacked from an untrusted tarball."""

from __future__ import annotations

import io
import os
import tarfile

import pytest

from runtime.linux.mounts import extract_upper
from tests.conftest import require


def _tar(path, *members: tarfile.TarInfo) -> str:
    with tarfile.open(path, "w") as tar:
        for m in members:
            tar.addfile(m, io.BytesIO(b"x" * m.size) if m.isreg() else None)
    return str(path)


def _member(name: str, kind: bytes = tarfile.REGTYPE, **kw: int) -> tarfile.TarInfo:
    m = tarfile.TarInfo(name)
    m.type = kind
    m.size = 1 if kind == tarfile.REGTYPE else 0
    for k, v in kw.items():
        setattr(m, k, v)
    return m


def test_files_and_whiteouts_are_unpacked(tmp_path):
    upper = tmp_path / "upper"
    upper.mkdir()
    require(os.geteuid() == 0, "making a whiteout (a 0/0 character device) needs root")
    extract_upper(_tar(tmp_path / "d.tar", _member("etc/motd"), _member("old.html", tarfile.CHRTYPE,
                                                                            devmajor=0, devminor=0)), str(upper))
    assert (upper / "etc" / "motd").read_bytes() == b"x"
    st = os.stat(upper / "old.html", follow_symlinks=False)
    assert os.major(st.st_rdev) == 0 and os.minor(st.st_rdev) == 0


@pytest.mark.parametrize("member", [
    _member("dev/sda", tarfile.BLKTYPE, devmajor=8, devminor=0),
    _member("mem", tarfile.CHRTYPE, devmajor=1, devminor=1),
    _member("../escape"),
], ids=["block device", "char device", "dotdot"])
def test_what_a_container_could_not_have_made_is_refused(tmp_path, member):
    upper = tmp_path / "upper"
    upper.mkdir()
    with pytest.raises(tarfile.TarError):
        extract_upper(_tar(tmp_path / "d.tar", member), str(upper))
    assert not (tmp_path / "escape").exists()


def test_an_absolute_name_stays_inside(tmp_path):
    upper = tmp_path / "upper"
    upper.mkdir()
    extract_upper(_tar(tmp_path / "d.tar", _member("/etc/motd")), str(upper))
    assert (upper / "etc" / "motd").exists()
