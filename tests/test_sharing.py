"""Shared devices: shares from per-process utilization or equal, and rows whose amounts add up."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fleetmeter.collectors.attribution.sharing import Claim, Share, largest_remainder, split
from fleetmeter.collectors.intervals import IntervalBuilder
from fleetmeter.collectors.readings import Counter, Device, DeviceReading, Owner, ProcessUsage, Workload
from fleetmeter.schemas.sample_v1_columns import SHARE_BY_PROCESS_UTIL, SHARE_EQUALLY

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


def test_an_owners_containers_divide_its_share_by_their_processes_and_name_no_sample() -> None:
    """Two replicas of one service time-slice a GPU with another tenant's pod: the service's row is one (the
    sample key is tenant and job), its two containers get their parts of it for /metrics."""
    one, two, other = (Workload("serving", "api-0", "main"), Workload("serving", "api-1", "main"),
                       Workload("research", "nb", "lab"))
    processes = (ProcessUsage(1, 10, sm_util=0.30), ProcessUsage(2, 10, sm_util=0.10),
                 ProcessUsage(3, 10, sm_util=0.40))
    shares = split(reading(processes), [Claim(dataclasses.replace(A, workload=one), frozenset({1})),
                                        Claim(dataclasses.replace(A, workload=two), frozenset({2})),
                                        Claim(dataclasses.replace(B, workload=other), frozenset({3}))])
    assert [(s.owner, s.fraction) for s in shares] == [(A, pytest.approx(0.5)), (B, pytest.approx(0.5))]
    assert shares[0].workloads == ((one, pytest.approx(0.75), {1}), (two, pytest.approx(0.25), {2}))
    assert shares[1].workloads == ((other, 1.0, {3}),)
    alone = split(reading(), [Claim(dataclasses.replace(A, workload=one)), Claim(A)])  # one claim names no pod
    assert alone == [Share(A, workloads=((one, 1.0, frozenset()),))]


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


def test_no_claim_gives_no_share_and_claims_and_shares_are_immutable() -> None:
    assert split(reading(), []) == []
    share, claim = Share(A, 0.5, SHARE_EQUALLY), Claim(A, frozenset({1}))
    with pytest.raises(dataclasses.FrozenInstanceError):
        share.fraction = 1.0  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        claim.pids = frozenset()  # type: ignore[misc]


def test_a_process_without_a_utilization_sample_weighs_nothing() -> None:
    processes = (ProcessUsage(1, 10, sm_util=0.3), ProcessUsage(2, 10, sm_util=None), ProcessUsage(3, 10, sm_util=0.1))
    shares = split(reading(processes), [Claim(A, frozenset({1, 2})), Claim(B, frozenset({3}))])
    assert [(s.owner, s.fraction, s.rule) for s in shares] == [
        (A, pytest.approx(0.75), SHARE_BY_PROCESS_UTIL), (B, pytest.approx(0.25), SHARE_BY_PROCESS_UTIL)]


@pytest.mark.parametrize(("sm_util", "claims"), [
    (0.4, [Claim(A, frozenset({1})), Claim(B)]),  # B's processes are unknown: utilization cannot weigh it
    (0.0, [Claim(A, frozenset({1})), Claim(B, frozenset({2}))]),  # neither ran a kernel in the interval
])
def test_shares_are_equal_when_utilization_cannot_weigh_every_owner(sm_util: float, claims: list[Claim]) -> None:
    processes = (ProcessUsage(1, 10, sm_util=sm_util), ProcessUsage(2, 10, sm_util=0.0))
    assert [(s.fraction, s.rule) for s in split(reading(processes), claims)] == [
        (0.5, SHARE_EQUALLY), (0.5, SHARE_EQUALLY)]


def test_the_units_left_over_go_to_the_largest_remainders() -> None:
    assert largest_remainder(3, [0.7, 0.3]) == [2, 1]  # exact 2.1 and 0.9: the 0.9 gets the unit
    assert largest_remainder(10, [0.56, 0.24, 0.2]) == [6, 2, 2]
    assert largest_remainder(2, [0.4, 0.3, 0.3]) == [1, 1, 0]  # every floor is zero


def test_an_amount_the_device_cannot_report_leaves_the_others_split() -> None:
    builder = IntervalBuilder("c", max_interval_s=60)
    claims = [Claim(A), Claim(B)]
    builder.rows([reading(counters={"ecc_corrected": Counter(0)})], 0, 1, lambda r: split(r, claims))
    rows = builder.rows([reading(counters={"ecc_corrected": Counter(5)})], 10_000, 2, lambda r: split(r, claims))
    assert [(r["energy_j"], r["ecc_corrected"]) for r in rows] == [(None, 3), (None, 2)]


def test_xid_events_go_to_the_largest_share_wherever_it_stands_and_a_zero_share_gets_no_amount() -> None:
    builder = IntervalBuilder("c", max_interval_s=60)
    processes = (ProcessUsage(1, 10, sm_util=0.0), ProcessUsage(2, 10, sm_util=0.4), ProcessUsage(3, 10, sm_util=0.2))
    claims = [Claim(A, frozenset({1})), Claim(B, frozenset({2})), Claim(C, frozenset({3}))]

    def device(energy_j: float, ecc: float) -> DeviceReading:
        return reading(processes, xid_errors=(79,),
                       counters={"energy_j": Counter(energy_j), "ecc_corrected": Counter(ecc)})

    builder.rows([device(0.0, 0)], 0, 1, lambda r: split(r, claims))
    rows = builder.rows([device(3000.0, 9)], 10_000, 2, lambda r: split(r, claims))
    assert [r["share"] for r in rows] == [0.0, pytest.approx(2 / 3), pytest.approx(1 / 3)]
    assert [r["xid_errors"] for r in rows] == [(), (79,), ()]
    assert [r["energy_j"] for r in rows] == [0.0, pytest.approx(2000.0), pytest.approx(1000.0)]
    assert [r["ecc_corrected"] for r in rows] == [0, 6, 3]
