from datetime import UTC, datetime

from fleetmeter.collectors.backends.simulated import FAILURE_AFTER_MS, SimulatedBackend
from fleetmeter.collectors.settings import SimulatedSettings

START = datetime(2026, 3, 2, tzinfo=UTC)
START_MS = int(START.timestamp() * 1000)


def backend(**overrides: object) -> SimulatedBackend:
    values: dict[str, object] = {"nodes": 6, "devices_per_node": 8, "seed": 3, "start": START} | overrides
    return SimulatedBackend(SimulatedSettings(**values), cluster="sim")  # type: ignore[arg-type]


def test_the_fleet_has_the_configured_shape_and_unique_devices() -> None:
    devices = backend().discover()
    assert len(devices) == 48 and len({d.uuid for d in devices}) == 48
    assert {d.node for d in devices} == {f"sim-sim-{i:03d}" for i in range(6)}


def test_the_same_seed_gives_the_same_readings() -> None:
    first, second = backend(), backend()
    for ts in (START_MS, START_MS + 10_000, START_MS + 20_000):
        assert first.read(ts) == second.read(ts)
    assert backend(seed=4).read(START_MS) != backend().read(START_MS)


def test_readings_stay_in_their_physical_ranges_over_a_simulated_day() -> None:
    fleet = backend()
    for ts in range(START_MS, START_MS + 24 * 3_600_000, 600_000):
        for reading in fleet.read(ts):
            assert 0.0 <= (reading.util_compute or 0.0) <= 1.0
            assert 0 <= (reading.mem_used_bytes or 0) <= (reading.mem_total_bytes or 0)
            assert reading.power_w is not None and 0 < reading.power_w <= 700


def test_workloads_look_like_their_kind() -> None:
    fleet = backend(nodes=20, failing_devices=0)
    by_workload: dict[str, list[float]] = {}
    for ts in range(START_MS, START_MS + 6 * 3_600_000, 70_000):  # a stride that does not alias checkpoints
        for reading in fleet.read(ts):
            workload = next(key for key in reading.extras if key.startswith("sim.workload_"))
            by_workload.setdefault(workload, []).append(reading.util_compute or 0.0)
    mean = {kind: sum(values) / len(values) for kind, values in by_workload.items()}
    assert mean["sim.workload_training"] > 0.8
    assert mean["sim.workload_idle"] < 0.02 and mean["sim.workload_free"] == 0.0
    assert 0.1 < mean["sim.workload_inference"] < 0.8


def test_free_devices_have_no_owner_and_allocated_ones_do() -> None:
    for reading in backend().read(START_MS):
        assert (not reading.owners) == ("sim.workload_free" in reading.extras)


def test_a_failing_device_raises_xids_and_stops_working() -> None:
    fleet = backend(failing_devices=1)
    seen_xids: list[int] = []
    for ts in range(START_MS, START_MS + FAILURE_AFTER_MS + 60_000, 10_000):
        for reading in fleet.read(ts):
            seen_xids.extend(reading.xid_errors or ())
    assert 79 in seen_xids
    failed = [r for r in fleet.read(START_MS + FAILURE_AFTER_MS + 70_000) if r.counters["ecc_uncorrected"].value]
    assert len(failed) == 1 and failed[0].util_compute == 0.0


def test_energy_counter_integrates_power() -> None:
    fleet = backend(nodes=1, devices_per_node=1)
    first = fleet.read(START_MS)[0]
    second = fleet.read(START_MS + 10_000)[0]
    gained = second.counters["energy_j"].value - first.counters["energy_j"].value
    assert gained == second.power_w * 10  # type: ignore[operator]


def test_some_jobs_are_busy_on_few_sms_and_some_would_fit_a_small_slice() -> None:
    """The waste that the driver's utilization hides is in the simulated fleet, per job (docs/efficiency.md)."""
    fleet = backend(nodes=20, failing_devices=0)
    busy_low_sm, small, jobs = set(), set(), set()
    for ts in range(START_MS, START_MS + 6 * 3_600_000, 600_000):
        for reading in fleet.read(ts):
            if not reading.owners or reading.owners[0].job_id is None:
                continue
            job = reading.owners[0].job_id
            jobs.add(job)
            util, sm = reading.util_compute or 0.0, reading.sm_active or 0.0
            assert sm <= util  # no SM is active without a kernel running
            if util > 0.9 and sm < 0.1:
                busy_low_sm.add(job)
            if job.startswith("inference") and (reading.mem_used_bytes or 0) < 0.1 * (reading.mem_total_bytes or 1):
                small.add(job)
    assert all(job.startswith("training") for job in busy_low_sm)
    assert 0.05 < len(busy_low_sm) / len(jobs) < 0.5 and small
