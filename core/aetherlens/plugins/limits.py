"""Watching a plugin process from /proc: CPU share as a rate over a sliding window, and resident memory.

The CPU share is (utime+stime) gained inside the window divided by the window's wall time, so a
plugin that has run for months and accumulated hours of CPU is judged only by what it does now.
"""

from __future__ import annotations

import os
from collections import deque
from pathlib import Path
from typing import Final

_TICKS: Final = os.sysconf("SC_CLK_TCK")
_PAGE: Final = os.sysconf("SC_PAGE_SIZE")


def read_cpu_seconds(pid: int) -> float | None:
    """utime+stime of ``pid`` in seconds, or None when the process is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses: split after its closing ')'.
    fields = text[text.rindex(")") + 2 :].split()
    # fields[0] is field 3 (state); utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / _TICKS


def read_rss_bytes(pid: int) -> int | None:
    try:
        text = Path(f"/proc/{pid}/statm").read_text()
    except OSError:
        return None
    return int(text.split()[1]) * _PAGE


class CpuWatch:
    """Samples of (wall time, cpu seconds); ``percent()`` is the rate over the last ``window`` seconds."""

    def __init__(self, window: float) -> None:
        self.window = window
        self._samples: deque[tuple[float, float]] = deque()

    def add(self, wall: float, cpu_seconds: float) -> None:
        self._samples.append((wall, cpu_seconds))
        # Keep one sample at or before the window's start so the rate covers the whole window.
        while len(self._samples) > 2 and self._samples[1][0] <= wall - self.window:
            self._samples.popleft()

    def covered(self) -> float:
        """Seconds of wall time the samples span (the rate is trusted only over a full window)."""
        if len(self._samples) < 2:
            return 0.0
        return self._samples[-1][0] - self._samples[0][0]

    def percent(self) -> float | None:
        if len(self._samples) < 2:
            return None
        (w0, c0), (w1, c1) = self._samples[0], self._samples[-1]
        if w1 <= w0:
            return None
        return max(0.0, (c1 - c0) / (w1 - w0) * 100.0)

    def exceeded(self, limit_percent: float) -> bool:
        rate = self.percent()
        return rate is not None and self.covered() >= self.window and rate > limit_percent
