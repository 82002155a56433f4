"""Shared devices: shares from per-process utilization or equal, and rows whose amounts add up."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fleetmeter.collectors.attribution.sharing import Claim, Share, largest_remainder, split
from fleetmeter.collectors.intervals import IntervalBuilder
from fleetmeter.collectors.readings import Counter, Device, DeviceReading, Owner, ProcessUsage
from fleetmeter.schemas.sample_v1 import SHARE_BY_PROCESS_UTIL, SHARE_EQUALLY

DEVICE = Device("node-a", "GPU-1", 0, "gpu", "nvidia", "H100")
A, B, C = Owner("team-a", "job-a"), Owner("team-b", "job-b"), Owner("team-c", "job-c")


def reading(processes: tuple[ProcessUsage, ...] = (), **values: object) -> DeviceReading:
    return DeviceReading(device=DEVICE, processes=processes, **values)  # type: ignore[arg-type]


def test_one_owner_gets_the_whole_device_even_from_several_claims() -> None:
    assert split(reading(), [Claim(A, frozenset({1})), Claim(A, frozenset({2}))]) == [Share(A)]


def test_shares_follow_each_owners_processes_sm_utilization() -> None:
    processes = (ProcessUsage(1, 10, sm_util=0.30), ProcessUsage(2, 10, sm_util=0.10), ProcessUsage(3, 10, 0.40))
    shares = split(reading(processes), [Claim(A, frozenset({1, 2})), Claim(B, frozenset({3}))])
    assert [(s.owner, s.rule) for s in shares] == [(A, SHARE_BY_PROCESS_UTIL), (B, SHARE_BY_PROCESS_UTIL)]
    assert [s.fraction for s in shares] == [pytest.approx(0.5), pytest.approx(0.5)]


@pytest.mark.parametrize("processes", [
    (),  # the backend reports no processes
    (ProcessUsage(1, 10), ProcessUsage(3, 10)),  # ... or no per-process utilization
    (ProcessUsage(1, 10, sm_util=0.0), ProcessUsage(3, 10, sm_util=0.0)),  # nobody computed
])
def test_without_per_process_utilization_the_shares_are_equal(processes: tuple[ProcessUsage, ...]) -> None:
    shares = split(reading(processes), [Claim(A, frozenset({1})), Claim(B, frozenset({3})), Claim(C)])
    assert [(s.owner, s.fraction, s.rule) for s in shares] == [(o, 1 / 3, SHARE_EQUALLY) for o in (A, B, C)]


@given(st.integers(min_value=0, max_value=10**15),
       st.lists(st.floats(min_value=0, max_value=1), min_size=1, max_size=8).filter(lambda w: sum(w) > 0))
def test_largest_remainder_parts_add_up_and_stay_within_one_of_exact(total: int, weights: list[float]) -> None:
    fractions = [w / sum(weights) for w in weights]
    parts = largest_remainder(total, fractions)
    assert sum(parts) == total
    assert all(abs(part - total * fraction) < 1 + 1e-6 * total for part, fraction in zip(parts, fractions, strict=True))


def test_a_shared_devices_rows_add_up_to_the_device() -> None:
    builder = IntervalBuilder("c", max_interval_s=60)
    processes = (ProcessUsage(1, 10, sm_util=0.6), ProcessUsage(2, 10, sm_util=0.2))
    claims = [Claim(A, frozenset({1})), Claim(B, frozenset({2}))]

    def device(energy_j: float, ecc: float, xids: tuple[int, ...]) -> DeviceReading:
        return reading(processes, util_compute=0.8, xid_errors=xids,
                       counters={"energy_j": Counter(energy_j), "ecc_corrected": Counter(ecc)})

    builder.rows([device(1000.0, 10, ())], 1_000_000, 1, lambda r: split(r, claims))
    rows = builder.rows([device(4000.0, 17, (79,))], 1_010_000, 2, lambda r: split(r, claims))
    assert [(r["tenant"], r["job_id"], r["share_rule"]) for r in rows] == [
        ("team-a", "job-a", SHARE_BY_PROCESS_UTIL), ("team-b", "job-b", SHARE_BY_PROCESS_UTIL)]
    assert [r["share"] for r in rows] == [pytest.approx(0.75), pytest.approx(0.25)]
    assert sum(r["energy_j"] for r in rows) == pytest.approx(3000.0)
    assert sum(r["ecc_corrected"] for r in rows) == 7 and all(isinstance(r["ecc_corrected"], int) for r in rows)
    assert [r["xid_errors"] for r in rows] == [(79,), ()]  # on the largest share only
    # device-seconds (interval x share) and busy time add up to the device's
    assert sum(r["interval_s"] * r["share"] for r in rows) == pytest.approx(10.0)
    assert sum(r["util_compute"] * r["interval_s"] * r["share"] for r in rows) == pytest.approx(8.0)
