"""Time for the scrape loop: a clock (wall, or scaled for the simulator) and drift-free ticks."""

from __future__ import annotations

import math
import time
from typing import Protocol


class Clock(Protocol):
    speedup: float

    def now_ms(self) -> int:
        """Epoch milliseconds UTC as the samples should be stamped."""
        ...


class WallClock:
    speedup = 1.0

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000


class ScaledClock:
    """Simulated time: starts at ``start_ms`` and runs ``speedup`` times faster than real time."""

    def __init__(self, start_ms: int, speedup: float) -> None:
        self.speedup = speedup
        self._start_ms = start_ms
        self._started = time.monotonic()

    def now_ms(self) -> int:
        return self._start_ms + int((time.monotonic() - self._started) * self.speedup * 1000)


def next_tick(start: float, period: float, now: float, last_tick: int) -> tuple[int, int]:
    """The next tick to wait for after ``last_tick``, and how many ticks were skipped to get there.

    Ticks are ``start + k * period``, so lateness in one scrape never shifts the later ones (no drift).
    A scrape that overran one or more ticks skips them rather than firing a burst of catch-up scrapes; one that
    ended exactly on the next tick's time has missed nothing.
    """
    due = last_tick + 1
    overdue = math.ceil((now - start) / period) - 1  # the last tick whose time has passed (not one due now)
    if overdue >= due:
        return overdue + 1, overdue + 1 - due
    return due, 0
