from types import SimpleNamespace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fleetmeter.collectors import cadence
from fleetmeter.collectors.cadence import ScaledClock, WallClock, next_tick


def test_on_time_scrapes_advance_one_tick() -> None:
    assert next_tick(start=100.0, period=10.0, now=100.3, last_tick=0) == (1, 0)
    assert next_tick(start=100.0, period=10.0, now=110.2, last_tick=1) == (2, 0)


def test_an_overrun_skips_the_ticks_it_missed() -> None:
    # The scrape of tick 1 ended at 135 s: ticks 2 and 3 (120 s, 130 s) are gone, tick 4 (140 s) is next.
    assert next_tick(start=100.0, period=10.0, now=135.0, last_tick=1) == (4, 2)
    assert next_tick(start=10.0, period=10.0, now=135.0, last_tick=1) == (13, 11)  # long after the start


def test_a_scrape_ending_on_a_tick_fires_it_and_one_ending_past_it_skips_it() -> None:
    assert next_tick(start=100.0, period=10.0, now=120.0, last_tick=1) == (2, 0)
    assert next_tick(start=100.0, period=10.0, now=125.0, last_tick=1) == (3, 1)
    assert next_tick(start=100.0, period=10.0, now=130.0, last_tick=1) == (3, 1)


def test_the_wall_clock_is_epoch_milliseconds_at_real_speed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cadence, "time", SimpleNamespace(time_ns=lambda: 1_767_225_600_123_456_789))
    assert (WallClock().now_ms(), WallClock.speedup) == (1_767_225_600_123, 1.0)


def test_the_scaled_clock_runs_speedup_times_faster_from_its_start(monkeypatch: pytest.MonkeyPatch) -> None:
    readings = iter([500.0, 1502.5])  # the module's own clock only: other threads keep the real one
    monkeypatch.setattr(cadence, "time", SimpleNamespace(monotonic=lambda: next(readings)))
    clock = ScaledClock(start_ms=1_767_225_600_000, speedup=60.0)
    assert clock.now_ms() == 1_767_225_600_000 + 60_150_000  # 1002.5 real seconds are 60,150 simulated ones


@given(period=st.floats(0.01, 100), lateness=st.lists(st.floats(0, 0.99), min_size=1, max_size=200))
def test_lateness_within_a_period_never_drifts(period: float, lateness: list[float]) -> None:
    start, tick = 1000.0, 0
    for late in lateness:
        now = start + tick * period + late * period
        tick, missed = next_tick(start, period, now, tick)
        assert missed == 0
    assert tick == len(lateness)  # the n-th wake-up is still exactly start + n * period
