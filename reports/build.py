"""The figures of a report, gathered from the views and the canned queries, so that the report and an
analyst's query can never disagree."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import duckdb
import polars as pl

from fleetmeter.sql.catalog import Catalog, canned_queries

TOP = 10

_HEADLINE = """
SELECT sum(device_hours) AS device_hours,
       sum(device_hours) FILTER (WHERE allocated) AS allocated_device_hours,
       sum(busy_device_hours) AS busy_device_hours,
       ratio(sum(busy_device_hours), sum(util_known_device_hours)) AS utilization,
       sum(idle_device_hours) FILTER (WHERE allocated) AS idle_allocated_device_hours,
       sum(energy_kwh) AS energy_kwh,
       sum(cost) AS cost,
       sum(wasted_cost) FILTER (WHERE allocated) AS wasted_cost,
       sum(busy_idle_device_hours) FILTER (WHERE allocated) AS busy_idle_allocated_device_hours,
       sum(busy_idle_cost) FILTER (WHERE allocated) AS busy_idle_cost
FROM costs
WHERE day >= getvariable('since')
"""
_SPAN = "SELECT min(window_start) AS first, max(window_start) AS last FROM stored.util_1m " \
        "WHERE window_start >= getvariable('since')"
_DAILY = """
SELECT day,
       sum(device_hours) AS device_hours,
       ratio(sum(busy_device_hours), sum(util_known_device_hours)) AS utilization,
       sum(idle_device_hours) FILTER (WHERE allocated) AS idle_allocated_device_hours,
       sum(cost) AS cost,
       sum(wasted_cost) FILTER (WHERE allocated) AS wasted_cost
FROM costs
WHERE day >= getvariable('since')
GROUP BY day
ORDER BY day
"""
_TENANTS = """
SELECT tenant,
       sum(device_hours) AS device_hours,
       sum(busy_device_hours) AS busy_device_hours,
       ratio(sum(busy_device_hours), sum(util_known_device_hours)) AS utilization,
       sum(idle_device_hours) AS idle_device_hours,
       sum(cost) AS cost,
       sum(wasted_cost) AS wasted_cost
FROM costs
WHERE allocated AND day >= getvariable('since')
GROUP BY tenant
ORDER BY wasted_cost DESC NULLS LAST, idle_device_hours DESC, tenant
"""
#: The fleet over time: 10-minute buckets of util_1m for a window of up to two days, else hours of util_1h.
_TIMELINE = """
SELECT time_bucket(INTERVAL '{seconds} seconds', window_start) AS time,
       sum(device_seconds) / {seconds} AS device_equivalents,
       coalesce(sum(device_seconds) FILTER (WHERE allocated), 0) / {seconds} AS allocated_equivalents,
       sum(busy_seconds) / {seconds} AS busy_equivalents,
       ratio(sum(busy_seconds), sum(util_known_seconds)) AS utilization
FROM {table}
WHERE window_start >= getvariable('since')
GROUP BY time
ORDER BY time
"""
_FINE_UP_TO = timedelta(days=2)
_HISTOGRAM = "SELECT hist_add(util_hist_seconds) AS h FROM util_1d WHERE window_start >= getvariable('since')"
_UNPRICED = "SELECT model FROM model_prices WHERE per_device_hour IS NULL ORDER BY model"
#: Planning (``fleetmeter forecast``): each pool's demand with its forecast, the plan, and how each series was fitted.
_POOL_FORECASTS = """
SELECT cluster, model, day, actual, mean, lo_80, hi_80, lo_95, hi_95
FROM forecasts WHERE tenant = '*' AND measure = 'peak_devices' ORDER BY cluster, model, day
"""
_PLAN = """
SELECT cluster, model, quarter, quarter_start, supply_devices, demand_devices, headroom_devices, runs_out_on,
       add_devices, note
FROM capacity_plan ORDER BY cluster, model, quarter
"""
_METHODS = """
SELECT cluster, tenant, model, measure, any_value(method) AS method, any_value(method_mase) AS method_mase,
       any_value(baseline_mase) AS baseline_mase, any_value(coverage_80) AS backtest_coverage_80,
       any_value(note) AS note
FROM forecasts GROUP BY ALL ORDER BY cluster, tenant, model, measure
"""
_ANOMALIES = """
SELECT kind, status, cluster, tenant, job_id, coalesce(device_uuid, '') AS device, start, "end", cost_impact,
       cost_per_day, evidence
FROM anomalies ORDER BY status = 'open' DESC, cost_impact DESC NULLS LAST LIMIT 20
"""
#: Efficiency (docs/efficiency.md): per model, what the driver's busy figure hides; the jobs that waste the most; and
#: what right-sizing would save.
_EFFICIENCY = """
SELECT model, device_hours, busy_share, sm_active, sm_coverage, tensor_active, mem_bw_active, mem_peak_share,
       mem_typical_share, kwh_per_busy_device_hour, idle_device_hours, busy_idle_device_hours, unmeasured
FROM efficiency WHERE grain = 'model' ORDER BY device_hours DESC, model
"""
_INEFFICIENT = """
SELECT cluster, tenant, job_id, model, device_hours, idle_cost, busy_idle_cost, wasted_cost, busy_share, sm_active,
       mem_peak_share, unmeasured
FROM ({query}) LIMIT {top}
"""
_RIGHTSIZING = """
SELECT tenant, job_id, model, recommended, saving_per_day, compute_reading, compute_quantile, compute_needed,
       recommended_compute_share, round(mem_peak_bytes / 2^30, 1) AS mem_peak_gib,
       round(recommended_memory_bytes / 2^30, 1) AS recommended_gib, observed_hours
FROM ({query}) LIMIT {top}
"""
_TCO = """
SELECT model, pricing, present_device_hours, allocated_device_hours, busy_device_hours, cost, per_allocated_hour,
       per_busy_hour
FROM tco_by_model ORDER BY model, pricing
"""


@dataclass(frozen=True)
class Report:
    warehouse: str
    currency: str
    idle_threshold: float
    since: datetime
    first: datetime | None  # the first and last minute with data in the window
    last: datetime | None
    headline: dict[str, Any]
    peak_devices: int
    timeline: pl.DataFrame  # the fleet over time: device, allocated and busy equivalents, utilization
    daily: pl.DataFrame
    tenants: pl.DataFrame  # allocated time per tenant, worst waste first
    idle_jobs: pl.DataFrame  # waste_by_job, top rows
    low_jobs: pl.DataFrame  # low_utilization_jobs, top rows
    health: pl.DataFrame  # hardware_health_by_node, nodes with any trouble
    util_histogram_hours: list[float]  # device-hours per util_compute bin of 0.05
    unpriced_models: list[str]
    pool_forecasts: pl.DataFrame  # each pool's peak devices, history and forecast (empty before a forecast)
    capacity_plan: pl.DataFrame
    forecast_methods: pl.DataFrame  # per series: the method used and its backtest scores, or why none
    tco: pl.DataFrame  # tco_by_model, where economics are configured
    anomalies: pl.DataFrame  # the open anomalies, then the resolved, the costliest first (fleetmeter anomalies)
    sm_idle_threshold: float
    efficiency: pl.DataFrame  # per model: busy share beside SM, tensor, memory activity, with coverage
    inefficient_jobs: pl.DataFrame  # inefficient_jobs, top rows
    rightsizing: pl.DataFrame  # rightsizing, top rows


def _frame(connection: duckdb.DuckDBPyConnection, sql: str) -> pl.DataFrame:
    frame = pl.DataFrame(connection.sql(sql).to_arrow_table())
    assert isinstance(frame, pl.DataFrame)
    return frame


def _canned(connection: duckdb.DuckDBPyConnection, name: str) -> pl.DataFrame:
    return _frame(connection, canned_queries()[name].read_text())


def _top(connection: duckdb.DuckDBPyConnection, columns: str, name: str) -> pl.DataFrame:
    """The first rows of a canned query, fewer columns (the terminal is narrow)."""
    return _frame(connection, columns.format(query=canned_queries()[name].read_text().rstrip().rstrip(";"), top=TOP))


def _timeline(first: datetime | None, last: datetime | None) -> str:
    fine = first is not None and last is not None and last - first <= _FINE_UP_TO
    return _TIMELINE.format(seconds=600 if fine else 3600, table="util_1m" if fine else "util_1h")


def build_report(catalog: Catalog) -> Report:
    connection = catalog.connect()
    headline = _frame(connection, _HEADLINE).row(0, named=True)
    first, last = _frame(connection, _SPAN).row(0)
    devices = _canned(connection, "fleet_capacity_hourly").group_by("hour").agg(pl.col("devices_seen").sum())
    health = _canned(connection, "hardware_health_by_node").filter(
        (pl.col("ecc_uncorrected") > 0) | (pl.col("xid_events") > 0) | (pl.col("hw_throttled_device_hours") > 0)
        | (pl.col("ecc_corrected") > 0))
    histogram = _frame(connection, _HISTOGRAM)["h"][0]
    return Report(
        warehouse=catalog.settings.warehouse,
        currency=catalog.settings.currency,
        idle_threshold=catalog.settings.idle_threshold,
        since=catalog.since,
        first=first,
        last=last,
        headline=headline,
        peak_devices=int(devices["devices_seen"].max() or 0) if devices.height else 0,  # type: ignore[arg-type]
        timeline=_frame(connection, _timeline(first, last)),
        daily=_frame(connection, _DAILY),
        tenants=_frame(connection, _TENANTS),
        idle_jobs=_canned(connection, "waste_by_job").head(TOP),
        low_jobs=_canned(connection, "low_utilization_jobs").head(TOP),
        health=health.head(TOP),
        util_histogram_hours=[] if histogram is None else [seconds / 3600 for seconds in histogram],
        unpriced_models=_frame(connection, _UNPRICED)["model"].to_list(),
        pool_forecasts=_frame(connection, _POOL_FORECASTS),
        capacity_plan=_frame(connection, _PLAN),
        forecast_methods=_frame(connection, _METHODS),
        tco=_frame(connection, _TCO),
        anomalies=_frame(connection, _ANOMALIES),
        sm_idle_threshold=catalog.settings.busy_idle_threshold,
        efficiency=_frame(connection, _EFFICIENCY),
        inefficient_jobs=_top(connection, _INEFFICIENT, "inefficient_jobs"),
        rightsizing=_top(connection, _RIGHTSIZING, "rightsizing"),
    )
