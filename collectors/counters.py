"""Counter arithmetic: from cumulative readings to per-interval deltas (pure functions)."""

from __future__ import annotations


def counter_delta(previous: float, current: float, wrap_at: float | None = None) -> float:
    """Increase of a monotonic counter between two readings; never negative.

    A decrease is either a wrap (the counter has a known width and rolled over) or a reset (the driver
    reloaded, the device was reset, and the counter restarted from zero). It is taken as a wrap when
    the width is known and the wrapped increase is under half the range, which a counter read every few
    seconds cannot exceed without wrapping twice; otherwise as a reset, whose increase is ``current``.
    """
    if current >= previous:
        return current - previous
    if wrap_at is not None:
        wrapped = wrap_at - previous + current
        if 0 <= wrapped < wrap_at / 2:
            return wrapped
    return current
