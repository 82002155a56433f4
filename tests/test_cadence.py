from hypothesis import given
from hypothesis import strategies as st

from fleetmeter.collectors.cadence import next_tick


def test_on_time_scrapes_advance_one_tick() -> None:
    assert next_tick(start=100.0, period=10.0, now=100.3, last_tick=0) == (1, 0)
    assert next_tick(start=100.0, period=10.0, now=110.2, last_tick=1) == (2, 0)


def test_an_overrun_skips_the_ticks_it_missed() -> None:
    # The scrape of tick 1 ended at 135 s: ticks 2 and 3 (120 s, 130 s) are gone, tick 4 (140 s) is next.
    assert next_tick(start=100.0, period=10.0, now=135.0, last_tick=1) == (4, 2)


@given(period=st.floats(0.01, 100), lateness=st.lists(st.floats(0, 0.99), min_size=1, max_size=200))
def test_lateness_within_a_period_never_drifts(period: float, lateness: list[float]) -> None:
    start, tick = 1000.0, 0
    for late in lateness:
        now = start + tick * period + late * period
        tick, missed = next_tick(start, period, now, tick)
        assert missed == 0
    assert tick == len(lateness)  # the n-th wake-up is still exactly start + n * period
