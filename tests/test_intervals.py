import pytest
from hypothesis import given
from hypothesis import strategies as st

from fleetmeter.collectors.attribution.sharing import Share
from fleetmeter.collectors.intervals import IntervalBuilder
from fleetmeter.collectors.readings import Counter, Device, DeviceReading, Owner

DEVICE = Device("node-a", "GPU-1", 0, "gpu", "nvidia", "H100")
OWNER = Owner("team", "job-1")


def reading(**values: object) -> DeviceReading:
    return DeviceReading(device=DEVICE, **values)  # type: ignore[arg-type]


def build(builder: IntervalBuilder, ts_ms: int, item: DeviceReading) -> list[dict[str, object]]:
    return builder.rows([item], ts_ms, seq=ts_ms // 1000, shares_of=lambda _: [Share(OWNER)])


def test_first_reading_primes_and_the_second_covers_the_interval_between() -> None:
    builder = IntervalBuilder("c1", max_interval_s=60)
    assert build(builder, 1_000_000, reading(util_compute=0.5)) == []
    [row] = build(builder, 1_010_000, reading(util_compute=0.7))
    assert row["ts"] == 1_000_000 and row["interval_s"] == 10.0
    assert row["util_compute"] == 0.7 and row["tenant"] == "team" and row["job_id"] == "job-1"
    assert row["cluster"] == "c1" and row["node"] == "node-a" and row["seq"] == 1010


def test_counters_become_deltas_and_a_reset_is_not_negative() -> None:
    builder = IntervalBuilder("c", max_interval_s=60)
    build(builder, 0, reading(counters={"energy_j": Counter(5000.0), "ecc_corrected": Counter(7)}))
    [row] = build(builder, 10_000, reading(counters={"energy_j": Counter(8000.0), "ecc_corrected": Counter(9)}))
    assert row["energy_j"] == 3000.0 and row["ecc_corrected"] == 2
    [row] = build(builder, 20_000, reading(counters={"energy_j": Counter(120.0), "ecc_corrected": Counter(0)}))
    assert row["energy_j"] == 120.0 and row["ecc_corrected"] == 0


def test_energy_comes_from_mean_power_where_there_is_no_counter() -> None:
    builder = IntervalBuilder("c", max_interval_s=60)
    build(builder, 0, reading(power_w=100.0))
    [row] = build(builder, 10_000, reading(power_w=300.0))
    assert row["energy_j"] == pytest.approx((100 + 300) / 2 * 10)


def test_rates_become_amounts_over_the_interval() -> None:
    builder = IntervalBuilder("c", max_interval_s=60)
    build(builder, 0, reading(rates={"pcie_tx_bytes": 1000.0}))
    [row] = build(builder, 4_000, reading(rates={"pcie_tx_bytes": 3000.0}))
    assert row["pcie_tx_bytes"] == 8000
    assert row["nvlink_tx_bytes"] is None


def test_a_long_gap_primes_again_instead_of_reporting_a_stale_interval() -> None:
    builder = IntervalBuilder("c", max_interval_s=30)
    build(builder, 0, reading())
    assert build(builder, 100_000, reading()) == []
    assert builder.gaps == 1
    assert len(build(builder, 110_000, reading())) == 1


def test_a_clock_that_goes_back_yields_no_row() -> None:
    builder = IntervalBuilder("c", max_interval_s=30)
    build(builder, 50_000, reading())
    assert build(builder, 40_000, reading()) == []
    assert builder.clock_regressions == 1



@given(
    steps=st.lists(st.tuples(st.integers(0, 10**6), st.booleans()), min_size=1, max_size=60),
    start=st.integers(10**6 + 1, 10**9),
)
def test_energy_rows_add_up_to_the_energy_really_used_across_resets(steps: list[tuple[int, bool]], start: int) -> None:
    """Each step uses some energy; sometimes the driver resets the counter to zero first.

    A reset is only taken when the counter then reads below its previous value (otherwise no reader
    could tell it from growth), which holds whenever the counter stood above what one interval can add.
    """
    builder = IntervalBuilder("c", max_interval_s=60)
    counter, ts, reported = float(start), 0, 0.0
    build(builder, ts, reading(counters={"energy_j": Counter(counter)}))
    for used, reset in steps:
        counter = (0.0 if reset and counter > 10**6 else counter) + used
        ts += 10_000
        [row] = build(builder, ts, reading(counters={"energy_j": Counter(counter)}))
        reported += row["energy_j"]  # type: ignore[operator]
    assert reported == sum(used for used, _ in steps)


def test_a_device_that_primes_regresses_or_gaps_never_holds_back_the_others() -> None:
    builder = IntervalBuilder("c", max_interval_s=30)
    other = Device("node-a", "GPU-2", 1, "gpu", "nvidia", "H100")
    late = DeviceReading(device=other)
    assert builder.rows([late], 40_000, 1, lambda _: [Share(OWNER)]) == []  # GPU-2 seen at 40 s
    assert build(builder, 50_000, reading()) == []  # GPU-1 seen at 50 s
    rows = builder.rows([reading(), late], 45_000, 2, lambda _: [Share(OWNER)])  # GPU-1's clock went back
    assert [row["device_uuid"] for row in rows] == ["GPU-2"]
    rows = builder.rows([DeviceReading(device=Device("n", "GPU-3", 2, "gpu", "nvidia", "H100")), late], 55_000, 3,
                        lambda _: [Share(OWNER)])  # GPU-3 only primes
    assert [row["device_uuid"] for row in rows] == ["GPU-2"]
    assert len(build(builder, 60_000, reading())) == 1
    rows = builder.rows([late, reading()], 86_000, 4, lambda _: [Share(OWNER)])  # 31 s: a gap for GPU-2 only
    assert [row["device_uuid"] for row in rows] == ["GPU-1"]


def test_intervals_keep_their_fractions_of_a_second_and_their_bounds() -> None:
    builder = IntervalBuilder("c", max_interval_s=30)
    build(builder, 0, reading())
    assert [row["interval_s"] for row in build(builder, 10_500, reading())] == [10.5]
    assert [row["interval_s"] for row in build(builder, 11_000, reading())] == [0.5]
    assert [row["interval_s"] for row in build(builder, 41_000, reading())] == [30.0]  # exactly the longest
    assert build(builder, 41_000, reading()) == []  # no time passed: no row
    assert builder.clock_regressions == 1


def test_mean_power_keeps_its_half_watts() -> None:
    builder = IntervalBuilder("c", max_interval_s=60)
    build(builder, 0, reading(power_w=100.0))
    [row] = build(builder, 10_000, reading(power_w=301.0))
    assert row["energy_j"] == pytest.approx(2005.0)


def test_an_energy_rate_is_used_before_the_power_reading() -> None:
    builder = IntervalBuilder("c", max_interval_s=60)
    build(builder, 0, reading(power_w=300.0, rates={"energy_j": 250.0}))
    [row] = build(builder, 10_000, reading(power_w=300.0, rates={"energy_j": 250.0}))
    assert row["energy_j"] == pytest.approx(2500.0)


def test_a_counter_that_appears_for_the_first_time_falls_back_to_power() -> None:
    builder = IntervalBuilder("c", max_interval_s=60)
    build(builder, 0, reading(power_w=200.0))
    [row] = build(builder, 10_000, reading(power_w=200.0, counters={"energy_j": Counter(1e6)}))
    assert row["energy_j"] == pytest.approx(2000.0)


def test_extras_reach_the_row_and_none_is_null() -> None:
    builder = IntervalBuilder("c", max_interval_s=60)
    build(builder, 0, reading())
    [row] = build(builder, 10_000, reading(extras={"mig.enabled": 1.0}))
    assert row["extras"] == {"mig.enabled": 1.0}
    [row] = build(builder, 20_000, reading())
    assert row["extras"] is None
