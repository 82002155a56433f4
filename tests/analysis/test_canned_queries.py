"""Every canned query of sql/queries/ on the generated warehouse, against figures computed in the test
from the topic's rows (tests/analysis/fleet.py)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from fleetmeter.sql.catalog import canned_queries
from tests.analysis.conftest import Fleet
from tests.analysis.fleet import GPU_MODEL, MIG_MODEL, Row, Totals, approx_equal, capacity_s, floor, group

HW_REASONS = {"hw_slowdown", "hw_thermal", "hw_power_brake"}
SW_REASONS = {"sw_thermal", "sw_power_cap"}


def run(fleet: Fleet, name: str, since: str | None = None) -> list[dict[str, Any]]:
    return fleet.query(canned_queries()[name].read_text(), since)


def assert_rows(actual: list[dict[str, Any]], expected: dict[tuple[Any, ...], dict[str, Any]],
                keys: tuple[str, ...]) -> None:
    """Each result row matches the expected row of its key, and no key is missing or extra."""
    got = {tuple(row[k] for k in keys): row for row in actual}
    assert set(got) == set(expected)
    for key, values in expected.items():
        for column, value in values.items():
            assert approx_equal(got[key][column], value), (key, column, got[key][column], value)


def test_every_canned_query_says_what_it_answers() -> None:
    queries = canned_queries()
    assert {"utilization_by_tenant_day", "waste_by_job", "low_utilization_jobs", "fleet_capacity_hourly",
            "energy_by_tenant", "hardware_health_by_node"} <= set(queries)
    for path in queries.values():
        assert path.read_text().startswith("-- "), path


def test_the_fleet_has_what_the_queries_look_for(fleet: Fleet) -> None:
    """Guards the other tests against a fleet that would make them vacuous."""
    tenants = {row["tenant"] for row in fleet.rows}
    assert {"unallocated", "research"} <= tenants
    assert len({floor(row["ts"], "day") for row in fleet.rows}) == 2  # crosses a UTC midnight
    assert any(row["util_compute"] is not None and row["util_compute"] < 0.05 and row["tenant"] != "unallocated"
               for row in fleet.rows)
    assert any(row["xid_errors"] for row in fleet.rows)
    assert any(row["device_kind"] == "mig" for row in fleet.rows)


def _day_tenant(fleet: Fleet) -> dict[tuple[Any, ...], Totals]:
    return group(fleet.rows, lambda row: (floor(row["ts"], "day"), row["tenant"]))


def test_utilization_by_tenant_day(fleet: Fleet) -> None:
    expected = {key: {"device_hours": t.device_s / 3600, "busy_device_hours": t.busy_s / 3600,
                      "utilization": t.utilization, "idle_device_hours": t.idle_s / 3600,
                      "energy_kwh": t.energy_j / 3.6e6, "cost": t.cost}
                for key, t in _day_tenant(fleet).items()}
    assert_rows(run(fleet, "utilization_by_tenant_day"), expected, ("day", "tenant"))


def test_since_keeps_the_days_from_that_midnight_on(fleet: Fleet) -> None:
    second_day = (fleet.start + timedelta(days=1)).date().isoformat()
    rows = run(fleet, "utilization_by_tenant_day", since=second_day)
    assert rows and {row["day"].date().isoformat() for row in rows} == {second_day}


def test_energy_by_tenant(fleet: Fleet) -> None:
    expected = {key: {"energy_kwh": t.energy_j / 3.6e6,
                      "mean_power_w": 1000 * (t.energy_j / 3.6e6) / (t.device_s / 3600) if t.device_s else None,
                      "energy_cost": t.energy_cost}
                for key, t in _day_tenant(fleet).items()}
    assert_rows(run(fleet, "energy_by_tenant"), expected, ("day", "tenant"))


def test_waste_by_job_ranks_allocated_idle_time_by_its_price(fleet: Fleet) -> None:
    totals = group(fleet.rows, lambda row: (row["cluster"], row["tenant"], row["job_id"]),
                   where=lambda row: row["tenant"] != "unallocated")
    expected = {key: {"allocated_device_hours": t.device_s / 3600, "idle_device_hours": t.idle_s / 3600,
                      "idle_fraction": t.idle_s / t.known_s, "wasted_cost": t.wasted_cost}
                for key, t in totals.items() if t.idle_s > 0}
    rows = run(fleet, "waste_by_job")
    assert_rows(rows, expected, ("cluster", "tenant", "job_id"))
    costs = [row["wasted_cost"] for row in rows]
    assert costs == sorted(costs, reverse=True) and costs[0] > 0


def test_low_utilization_jobs_for_their_size(fleet: Fleet) -> None:
    jobs = group(fleet.rows, lambda row: (row["cluster"], row["tenant"], row["job_id"]),
                 where=lambda row: row["job_id"] is not None)
    expected = {}
    for key, t in jobs.items():
        size = len(t.devices)
        bar = 0.60 if size >= 8 else 0.40 if size >= 2 else 0.20
        if t.utilization is not None and t.utilization < bar:
            expected[key] = {"devices": size, "device_hours": t.device_s / 3600, "utilization": t.utilization,
                             "expected_utilization": bar, "idle_device_hours": t.idle_s / 3600,
                             "wasted_cost": t.wasted_cost}
    assert expected  # idle allocations are below any bar
    assert_rows(run(fleet, "low_utilization_jobs"), expected, ("cluster", "tenant", "job_id"))


def test_fleet_capacity_hourly_counts_mig_instances_not_their_gpu(fleet: Fleet) -> None:
    def hour_key(row: Row) -> tuple[Any, ...]:
        return floor(row["ts"], "hour"), row["cluster"], row["model"]

    capacity = group(fleet.rows, hour_key, where=lambda row: capacity_s(row) > 0)
    allocated = group(fleet.rows, hour_key, where=lambda row: capacity_s(row) > 0 and row["tenant"] != "unallocated")
    everything = group(fleet.rows, hour_key)
    expected = {}
    for key, t in everything.items():
        seen = capacity.get(key)
        held = allocated.get(key)
        expected[key] = {
            "devices_seen": len(seen.devices) if seen else None,
            "devices_allocated": len(held.devices) if held else (0 if seen else None),
            "device_equivalents": t.device_s / 3600, "allocated_equivalents": held.device_s / 3600 if held else 0.0,
            "busy_equivalents": t.busy_s / 3600, "utilization": t.utilization,
        }
    rows = run(fleet, "fleet_capacity_hourly")
    assert_rows(rows, expected, ("hour", "cluster", "model"))
    mig_hour = next(row for row in rows if row["model"] == MIG_MODEL)
    assert mig_hour["devices_seen"] == 2  # two instances; their GPU is not capacity of its own
    assert any(row["model"] == GPU_MODEL and row["hour"] == mig_hour["hour"] for row in rows)


def test_hardware_health_by_node(fleet: Fleet) -> None:
    nodes: dict[tuple[str, str], dict[str, Any]] = {}
    for row in fleet.rows:
        node = nodes.setdefault((row["cluster"], row["node"]), {
            "devices": set(), "hw_throttled_device_hours": 0.0, "sw_throttled_device_hours": 0.0,
            "ecc_corrected": 0, "ecc_uncorrected": 0, "xid_events": 0, "xid_codes": set(), "max_temp_c": None})
        reasons = set(row["throttle_reasons"] or [])
        node["devices"].add(row["device_uuid"])
        node["hw_throttled_device_hours"] += row["interval_s"] / 3600 if reasons & HW_REASONS else 0.0
        node["sw_throttled_device_hours"] += row["interval_s"] / 3600 if reasons & SW_REASONS else 0.0
        node["ecc_corrected"] += row["ecc_corrected"] or 0
        node["ecc_uncorrected"] += row["ecc_uncorrected"] or 0
        node["xid_events"] += len(row["xid_errors"] or [])
        node["xid_codes"] |= set(row["xid_errors"] or [])
        if row["temp_c"] is not None:
            node["max_temp_c"] = max(node["max_temp_c"] or row["temp_c"], row["temp_c"])
    expected = {key: values | {"devices": len(values["devices"]), "xid_codes": sorted(values["xid_codes"])}
                for key, values in nodes.items()}
    rows = run(fleet, "hardware_health_by_node")
    assert_rows(rows, expected, ("cluster", "node"))
    assert rows[0]["ecc_uncorrected"] > 0 or rows[0]["xid_events"] > 0  # the failing GPU's node comes first


@pytest.mark.parametrize("threshold", [0.05, 0.10])
def test_the_idle_threshold_is_read_off_the_histogram_at_query_time(fleet: Fleet, threshold: float) -> None:
    totals = group(fleet.rows, lambda row: row["tenant"], idle_threshold=threshold)
    rows = fleet.query("SELECT tenant, sum(idle_seconds) AS idle_seconds FROM util_1h GROUP BY tenant",
                       idle_threshold=threshold)
    assert {row["tenant"]: pytest.approx(row["idle_seconds"]) for row in rows} == \
        {tenant: t.idle_s for tenant, t in totals.items()}
