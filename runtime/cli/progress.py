"""A one-line progress display on stderr for long exports and imports (runtime.cr.meter.Progress).

On a terminal: ``export  512.0 MiB / 1.0 GiB  50%  812.3 MiB/s`` redrawn in
place (``\\r``) at most ``rate`` times a second, ended with a newline. The
first draw waits one interval after the first report, so an operation
shorter than that shows nothing. Not a terminal, or ``--quiet``: nothing at all (scripts and logs
get only the command's result).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import IO

__all__ = ["ProgressLine", "progress_for", "human_bytes", "RATE_HZ"]

RATE_HZ = 4.0
_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")


def human_bytes(n: float) -> str:
    """``1536`` -> ``"1.5 KiB"``. Pure."""
    for unit in _UNITS:
        if abs(n) < 1024 or unit == _UNITS[-1]:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


class ProgressLine:
    """A Progress callback that draws one line on ``stream``; ``close()`` ends the line.

    ``clock`` (seconds, monotonic) is injectable so tests need no sleeping.
    """

    def __init__(self, label: str, stream: IO[str], *, clock: Callable[[], float] | None = None,
                 rate: float = RATE_HZ) -> None:
        self._label, self._stream, self._clock = label, stream, clock or time.monotonic
        self._interval = 1.0 / rate
        # Started by the first report, not at creation: a checkpoint's export begins after CRIU's dump.
        self._start: float | None = None
        self._next = 0.0
        self._width = 0  # of the last line drawn, to blank what a shorter one leaves
        self._last: tuple[int, int | None] = (0, None)

    @property
    def drawn(self) -> bool:
        return self._width > 0

    def __call__(self, done: int, total: int | None) -> None:
        self._last = (done, total)
        now = self._clock()
        if self._start is None:
            self._start, self._next = now, now + self._interval
        if now < self._next:
            return
        self._next = now + self._interval
        self._draw(now)

    def phase(self, label: str) -> None:
        """A new phase of the same operation (a migration: pages, images, restore): its own label
        and rate, drawn at the next report; the line stays the same."""
        self._label, self._start, self._last = label, None, (0, None)

    def _draw(self, now: float) -> None:
        done, total = self._last
        elapsed = now - (self._start if self._start is not None else now)
        if not done and not total:  # a phase that moves no bytes (waiting for the other side)
            text = self._label
            self._stream.write("\r" + text + " " * max(0, self._width - len(text)))
            self._stream.flush()
            self._width = len(text)
            return
        text = f"{self._label}  {human_bytes(done)}"
        if total:
            text += f" / {human_bytes(total)}  {min(100, done * 100 // total):3d}%"
        if elapsed > 0:
            text += f"  {human_bytes(done / elapsed)}/s"
        pad = max(0, self._width - len(text))
        self._stream.write("\r" + text + " " * pad)
        self._stream.flush()
        self._width = len(text)

    def close(self) -> None:
        """The final figures and a newline, if anything was drawn (a short operation stays silent)."""
        if self.drawn:
            self._draw(self._clock())
            self._stream.write("\n")
            self._stream.flush()


def progress_for(label: str, *, quiet: bool, stream: IO[str] | None = None,
                 clock: Callable[[], float] | None = None) -> ProgressLine | None:
    """A ProgressLine on ``stream`` (default stderr) when it is a terminal and not ``quiet``; else None."""
    stream = sys.stderr if stream is None else stream
    if quiet:
        return None
    try:
        tty = stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return None
    return ProgressLine(label, stream, clock=clock) if tty else None
