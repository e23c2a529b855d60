"""runtime.cli.progress: one line redrawn at most 4 times a second on a terminal, nothing elsewhere;
and the archive reports its progress through the callback (runtime.cr.meter)."""

from __future__ import annotations

import io
import json

import pytest

from runtime.cli import build_parser
from runtime.cli.progress import ProgressLine, human_bytes, progress_for
from runtime.cr import archive
from runtime.cr.manifest import write_manifest

MiB = 1 << 20


class FakeTTY(io.StringIO):
    def __init__(self, tty: bool = True) -> None:
        super().__init__()
        self.tty = tty
        self.flushes = 0

    def isatty(self) -> bool:
        return self.tty

    def flush(self) -> None:
        self.flushes += 1


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _frames(text: str) -> list[str]:
    """What the user sees drawn, frame by frame (each redraw starts with \\r)."""
    return [f.rstrip() for f in text.split("\r") if f]


def test_redraws_at_most_four_times_a_second_and_ends_the_line():
    out, clock = FakeTTY(), FakeClock()
    line = progress_for("export", quiet=False, stream=out, clock=clock)
    assert isinstance(line, ProgressLine)
    for i in range(1, 101):  # 100 reports over 1 s of fake time
        line(i * 10 * MiB, 1000 * MiB)
        clock.now += 0.01
    line.close()
    text = out.getvalue()
    assert text.endswith("\n") and text.count("\n") == 1
    frames = _frames(text.rstrip("\n"))
    assert 3 <= len(frames) <= 5  # ~4 Hz over one second, plus the final figures
    assert frames[-1].startswith("export  1000.0 MiB / 1000.0 MiB  100%")
    assert "MiB/s" in frames[-1]


def test_rate_is_bytes_per_second_since_the_first_report():
    out, clock = FakeTTY(), FakeClock()
    line = ProgressLine("import", out, clock=clock)
    clock.now += 50  # created long before the copy starts (a checkpoint's dump): not counted
    line(0, 2 << 30)
    clock.now += 1.0
    line(512 * MiB, 2 << 30)
    assert _frames(out.getvalue())[-1] == "import  512.0 MiB / 2.0 GiB   25%  512.0 MiB/s"


def test_unknown_total_shows_bytes_and_rate_only():
    out, clock = FakeTTY(), FakeClock()
    line = ProgressLine("import", out, clock=clock)
    line(0, None)
    clock.now += 2
    line(3 * MiB, None)
    assert _frames(out.getvalue())[-1] == "import  3.0 MiB  1.5 MiB/s"


def test_a_shorter_line_blanks_what_the_longer_one_left():
    out, clock = FakeTTY(), FakeClock()
    line = ProgressLine("x", out, clock=clock)
    line(0, None)
    clock.now += 0.001
    line(1023 * MiB, None)  # not drawn yet: within the first interval
    assert out.getvalue() == ""
    clock.now += 1
    line(1023 * MiB, None)
    first = out.getvalue()
    clock.now += 100
    line(1023 * MiB, None)  # the rate shrinks: fewer characters
    second = out.getvalue()[len(first):]
    assert len(second) == len(first)


def test_a_short_operation_draws_nothing_not_even_a_newline():
    out, clock = FakeTTY(), FakeClock()
    line = ProgressLine("export", out, clock=clock)
    line(1, 2)
    clock.now += 0.1
    line(2, 2)
    line.close()
    assert out.getvalue() == ""


def test_not_a_terminal_or_quiet_gives_no_renderer():
    assert progress_for("export", quiet=False, stream=FakeTTY(tty=False)) is None
    assert progress_for("export", quiet=True, stream=FakeTTY()) is None
    assert progress_for("export", quiet=False, stream=io.StringIO()) is None


def test_cli_export_on_a_pipe_or_quiet_writes_nothing_to_stderr(monkeypatch, tmp_path, image_dir):
    from runtime.cli import cr_cmds

    extra = {archive.SPEC_DUMP: b"{}", archive.CONFIG_DUMP: b"{}"}
    for tty, quiet in ((False, False), (True, True)):
        err = FakeTTY(tty=tty)
        monkeypatch.setattr("sys.stderr", err)
        args = build_parser().parse_args(["checkpoint", "--export", "x", *(["-q"] if quiet else []), "web"])
        with cr_cmds.progress(args, "export", args.export) as progress:
            assert progress is None
            archive.write_archive(str(tmp_path / f"a{tty}.tar"), str(image_dir), extra=extra, progress=progress)
        assert err.getvalue() == ""


def test_cli_progress_on_a_terminal_ends_its_line_even_on_failure(monkeypatch):
    from runtime.cli import cr_cmds

    err, clock = FakeTTY(), FakeClock()
    monkeypatch.setattr("sys.stderr", err)
    monkeypatch.setattr("time.monotonic", clock)
    args = build_parser().parse_args(["restore", "--import", "x"])
    with pytest.raises(OSError):
        with cr_cmds.progress(args, "import", True) as progress:
            progress(0, 10 * MiB)
            clock.now += 1
            progress(MiB, 10 * MiB)
            raise OSError("disk full")
    assert _frames(err.getvalue())[-1].startswith("import  1.0 MiB / 10.0 MiB   10%")
    assert err.getvalue().endswith("\n")


def test_human_bytes():
    assert [human_bytes(n) for n in (0, 1023, 1536, 5 * MiB, 3 << 40)] == \
        ["0 B", "1023 B", "1.5 KiB", "5.0 MiB", "3.0 TiB"]


def test_quiet_flags():
    p = build_parser()
    assert p.parse_args(["checkpoint", "-q", "--export", "x", "web"]).quiet
    assert p.parse_args(["restore", "--quiet", "--import", "x"]).quiet
    assert not p.parse_args(["restore", "web"]).quiet


@pytest.fixture
def image_dir(tmp_path):
    d = tmp_path / "images"
    d.mkdir()
    (d / "pages-1.img").write_bytes(b"\x07" * (3 * MiB + 5))
    (d / "inventory.img").write_bytes(b"\x01" * 100)
    (d / "criu-cr.json").write_text('{"version": 1}')
    write_manifest(str(d))
    return d


@pytest.mark.parametrize("compression", archive.COMPRESSIONS)
def test_archive_reports_progress_up_to_its_total(tmp_path, image_dir, compression):
    calls: list[tuple[int, int | None]] = []
    extra = {archive.SPEC_DUMP: json.dumps({"root": {"path": "/r"}}).encode(),
             archive.CONFIG_DUMP: json.dumps({"id": "web"}).encode()}
    out = str(tmp_path / "ck.tar")
    archive.write_archive(out, str(image_dir), extra=extra, compression=compression,
                          progress=lambda d, t: calls.append((d, t)))
    total = sum(p.stat().st_size for p in image_dir.iterdir())
    assert len(calls) >= 4  # the 3 MiB of pages come in 1 MiB chunks
    assert all(t == total for _, t in calls) and calls[-1] == (total, total)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)

    calls.clear()
    archive.read_archive(out, str(tmp_path / "in"), progress=lambda d, t: calls.append((d, t)))
    size = (tmp_path / "ck.tar").stat().st_size
    assert calls and all(t == size for _, t in calls) and calls[-1] == (size, size)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)


def test_archive_without_progress_calls_nothing(tmp_path, image_dir):
    extra = {archive.SPEC_DUMP: b"{}", archive.CONFIG_DUMP: b"{}"}
    archive.write_archive(str(tmp_path / "a.tar"), str(image_dir), extra=extra)  # progress=None: no error
