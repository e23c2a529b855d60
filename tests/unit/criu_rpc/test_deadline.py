"""deadline_for: a CRIU deadline scaled to the images' size."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from criu_rpc.deadline import DEADLINE_BASE, DEADLINE_RATE, deadline_for, images_size


def test_base_plus_size_over_rate() -> None:
    assert deadline_for(0) == DEADLINE_BASE == 60
    assert deadline_for(1 << 30) == pytest.approx(60 + 21.47, abs=0.01)  # 1 GiB at 50 MB/s
    assert deadline_for(100, base=1, rate=10) == 11


def test_the_defaults_give_a_big_container_minutes_not_hours() -> None:
    assert deadline_for(10 << 30) < 300 < deadline_for(20 << 30)
    assert DEADLINE_RATE == 50e6


def test_an_images_dir_is_measured(tmp_path: Path) -> None:
    (tmp_path / "pages-1.img").write_bytes(b"x" * 5000)
    (tmp_path / "core-1.img").write_bytes(b"x" * 100)
    with open(tmp_path / "sparse.img", "wb") as f:
        f.truncate(1 << 20)  # apparent size counts: CRIU reads it all
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "ignored").write_bytes(b"x" * 999)
    os.symlink("/etc/passwd", tmp_path / "parent")
    assert images_size(tmp_path) == 5100 + (1 << 20)
    assert deadline_for(tmp_path, base=0, rate=1) == 5100 + (1 << 20)
    assert deadline_for(str(tmp_path)) == deadline_for(images_size(tmp_path))


@pytest.mark.parametrize("kw", [{"size": -1}, {"size": 1, "base": -1}, {"size": 1, "rate": 0},
                                {"size": 1, "rate": float("nan")}])
def test_bad_input(kw: dict) -> None:
    with pytest.raises(ValueError):
        deadline_for(**kw)


def test_missing_dir_names_it(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope"):
        deadline_for(tmp_path / "nope")
