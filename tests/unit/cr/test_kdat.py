"""runtime.cr.kdat: when the kernel-facts cache is kept, made again, or left alone (files in a tmp dir)."""

from __future__ import annotations

import json

import pytest

from runtime.cr import kdat


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """kdat's files in tmp_path, /run taken as a plain directory, and a fake criu check."""
    criu = tmp_path / "criu"
    criu.write_text("#!/bin/sh\n")
    monkeypatch.setattr(kdat, "KDAT_FILE", str(tmp_path / "criu.kdat"))
    monkeypatch.setattr(kdat, "STAMP_FILE", str(tmp_path / "criu-cr.kdat.json"))
    monkeypatch.setattr(kdat, "_BOOT_ID", str(tmp_path / "boot_id"))
    monkeypatch.setattr(kdat, "_is_tmpfs", lambda path: False)
    made = []
    monkeypatch.setattr(kdat, "_make", lambda path: made.append(path) or b"KDAT")
    monkeypatch.delenv(kdat.OPT_OUT_ENV, raising=False)
    (tmp_path / "boot_id").write_text("boot-1\n")
    return tmp_path, str(criu), made


def test_made_once_then_kept_while_boot_and_binary_stay(cache):
    tmp, criu, made = cache
    assert kdat.ensure(criu) == "made" and (tmp / "criu.kdat").read_bytes() == b"KDAT"
    assert (tmp / "criu.kdat").stat().st_mode & 0o777 == 0o600
    assert kdat.ensure(criu) == "present" and len(made) == 1
    assert json.loads((tmp / "criu-cr.kdat.json").read_text())["boot_id"] == "boot-1"


def test_a_reboot_or_another_criu_makes_it_again(cache):
    tmp, criu, made = cache
    kdat.ensure(criu)
    (tmp / "boot_id").write_text("boot-2\n")
    assert kdat.ensure(criu) == "made"
    (tmp / "criu").write_text("#!/bin/sh\n# a newer criu\n")
    assert kdat.ensure(criu) == "made"
    (tmp / "criu.kdat").unlink()  # CRIU deletes a cache of another build itself
    assert kdat.ensure(criu) == "made" and len(made) == 4


def test_opting_out_removes_only_what_criu_cr_made(cache, monkeypatch):
    tmp, criu, made = cache
    kdat.ensure(criu)
    monkeypatch.setenv(kdat.OPT_OUT_ENV, "0")
    assert kdat.ensure(criu) == "disabled"
    assert not (tmp / "criu.kdat").exists() and not (tmp / "criu-cr.kdat.json").exists()
    (tmp / "criu.kdat").write_bytes(b"CRIU's own")  # no stamp: CRIU made it (a tmpfs /run)
    kdat.remove()
    assert (tmp / "criu.kdat").read_bytes() == b"CRIU's own"


def test_a_tmpfs_run_is_left_to_criu_and_a_failure_is_only_reported(cache, monkeypatch):
    tmp, criu, made = cache
    monkeypatch.setattr(kdat, "_is_tmpfs", lambda path: True)
    assert kdat.ensure(criu) == "tmpfs" and made == []
    monkeypatch.setattr(kdat, "_is_tmpfs", lambda path: False)

    def broken(path):
        raise OSError("criu check saved no kernel-facts cache")

    monkeypatch.setattr(kdat, "_make", broken)
    assert kdat.ensure(criu).startswith("failed: criu check saved no")
