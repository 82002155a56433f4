import itertools

from hypothesis import example, given
from hypothesis import strategies as st

from fleetmeter.collectors.counters import counter_delta

increments = st.lists(st.integers(min_value=0, max_value=10**6), min_size=1, max_size=50)


@given(start=st.integers(0, 10**12), steps=increments)
def test_deltas_of_a_monotonic_counter_add_up_to_its_increase(start: int, steps: list[int]) -> None:
    readings = [start]
    for step in steps:
        readings.append(readings[-1] + step)
    deltas = [counter_delta(a, b) for a, b in itertools.pairwise(readings)]
    assert deltas == steps
    assert sum(deltas) == readings[-1] - start


@given(width=st.sampled_from([16, 32, 64]), start=st.integers(0, 2**16 - 1), steps=increments)
def test_a_wrapping_counter_yields_the_true_increase(width: int, start: int, steps: list[int]) -> None:
    wrap_at = 2**width
    steps = [step % (wrap_at // 2) for step in steps]  # a scrape never sees half the range pass by
    true_total, reading = start, start % wrap_at
    for step in steps:
        true_total += step
        next_reading = true_total % wrap_at
        assert counter_delta(reading, next_reading, wrap_at) == step
        reading = next_reading


@given(before=st.integers(10**6, 10**9), after=st.integers(0, 10**5))
def test_a_reset_counts_what_accumulated_since_the_restart(before: int, after: int) -> None:
    # The driver reloaded: the counter restarted from zero and has reached `after`.
    assert counter_delta(before, after) == after
    assert counter_delta(before, after, wrap_at=2**64) == after


@given(previous=st.floats(0, 1e15), current=st.floats(0, 1e15), wrap=st.sampled_from([None, 2.0**32, 2.0**64]))
@example(previous=2.0**32 + 1, current=0.0, wrap=2.0**32)  # a broken reading above the counter's width
def test_a_delta_is_never_negative(previous: float, current: float, wrap: float | None) -> None:
    assert counter_delta(previous, current, wrap) >= 0


def test_half_the_range_is_where_a_wrap_becomes_a_reset() -> None:
    wrap_at = 2**16
    assert counter_delta(2**15 + 11, 10, wrap_at) == 2**15 - 1  # just under half the range: a wrap
    assert counter_delta(2**15 + 10, 10, wrap_at) == 10  # half the range: taken as a reset
