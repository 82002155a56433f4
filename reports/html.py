"""The report as one self-contained HTML page: inline CSS and SVG charts, no scripts, no network."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time
from pathlib import Path
from typing import Any

import polars as pl
from jinja2 import Environment, PackageLoader

from fleetmeter.reports import charts
from fleetmeter.reports.build import Report
from fleetmeter.reports.terminal import money, percent
from fleetmeter.sql.output import cell


@dataclass(frozen=True)
class Section:
    id: str
    title: str
    columns: list[str]
    rows: list[list[tuple[str, bool]]]  # (text, numeric)
    note: str = ""


def _section(id_: str, title: str, frame: pl.DataFrame, note: str = "") -> Section:
    numeric = [dtype.is_numeric() for dtype in frame.dtypes]
    rows = [[(cell(value, column), is_number)
             for column, value, is_number in zip(frame.columns, row, numeric, strict=True)]
            for row in frame.iter_rows()]
    return Section(id_, title, frame.columns, rows, note)


def _tiles(report: Report) -> list[dict[str, Any]]:
    h = report.headline
    allocated_share = h["allocated_device_hours"] / h["device_hours"] if h["device_hours"] else None
    return [
        {"id": "devices", "value": f"{report.peak_devices:,}", "label": "devices (peak hour)"},
        {"id": "device-hours", "value": cell(h["device_hours"]), "label": "device-hours"},
        {"id": "allocated", "value": percent(allocated_share), "label": "of device-hours allocated"},
        {"id": "utilization", "value": percent(h["utilization"]), "label": "utilization (busy / known)"},
        {"id": "idle", "value": cell(h["idle_allocated_device_hours"]), "label": "allocated device-hours idle",
         "waste": True},
        {"id": "cost", "value": money(h["cost"], report.currency), "label": "cost"},
        {"id": "wasted", "value": money(h["wasted_cost"], report.currency), "label": "cost of idle allocations",
         "waste": True},
        {"id": "busy-idle", "value": money(h["busy_idle_cost"], report.currency),
         "label": f"cost of busy-but-idle time (SM activity below {report.sm_idle_threshold:g})", "waste": True},
        {"id": "energy", "value": cell(h["energy_kwh"]), "label": "kWh"},
    ]


def render_html(report: Report) -> str:
    times = report.timeline["time"].to_list()
    tenants = report.tenants
    page_charts = {
        "utilization": charts.utilization_over_time(times, report.timeline["utilization"].to_list()),
        "capacity": charts.capacity_over_time(times, report.timeline["device_equivalents"].to_list(),
                                              report.timeline["allocated_equivalents"].to_list(),
                                              report.timeline["busy_equivalents"].to_list()),
        "tenants": charts.waste_by_tenant(tenants["tenant"].to_list(), tenants["device_hours"].to_list(),
                                          tenants["busy_device_hours"].to_list(),
                                          tenants["idle_device_hours"].to_list()),
        "histogram": charts.utilization_histogram(report.util_histogram_hours),
    }
    sections = [
        _section("daily", "Per day", report.daily),
        _section("tenants", "Tenants by wasted cost", report.tenants, "Allocated time only."),
        _section("idle-jobs", "Top idle jobs", report.idle_jobs, "Canned query waste_by_job."),
        _section("low-jobs", "Jobs with low utilization for their size", report.low_jobs,
                 "Canned query low_utilization_jobs."),
        _section("efficiency", "Efficiency by model", report.efficiency,
                 "The driver's busy share beside SM, tensor and memory activity, with coverage (view efficiency; "
                 "docs/efficiency.md)."),
        *([_section("inefficient-jobs", "Jobs by idle and busy-but-idle cost", report.inefficient_jobs,
                    "Canned query inefficient_jobs: idle and busy-but-idle hours never overlap.")]
          if report.inefficient_jobs.height else []),
        *([_section("rightsizing", "Right-sizing", report.rightsizing,
                    "Canned query rightsizing: the cheapest MIG profile or model that holds each job's compute and "
                    "peak memory with headroom.")]
          if report.rightsizing.height else []),
        _section("health", "Nodes with hardware trouble", report.health, "Canned query hardware_health_by_node."),
        *([_section("anomalies", "Anomalies by cost impact", report.anomalies,
                    "Open first, then resolved (fleetmeter anomalies; docs/anomalies.md).")]
          if report.anomalies.height else []),
        *_planning_sections(report),
    ]
    # every template here is HTML; select_autoescape() judged report.html.j2 by ".j2" and escaped nothing
    environment = Environment(loader=PackageLoader("fleetmeter.reports"), autoescape=True)
    template = environment.get_template("report.html.j2")
    return template.render(report=report, tiles=_tiles(report), charts=page_charts, sections=sections,
                           fans=_fans(report))


def _fans(report: Report) -> dict[str, str]:
    """A fan chart per pool that has a forecast, at most eight."""
    fans: dict[str, str] = {}
    pools = report.pool_forecasts.partition_by("cluster", "model", as_dict=True, maintain_order=True)
    for (cluster, model), days in list(pools.items())[:8]:
        past, future = days.filter(pl.col("actual").is_not_null()), days.filter(pl.col("mean").is_not_null())
        if future.is_empty():
            continue
        plan = report.capacity_plan.filter((pl.col("cluster") == cluster) & (pl.col("model") == model)
                                           & pl.col("quarter_start").is_not_null())
        name = f"{cluster} / {model}"
        fans[name] = charts.demand_fan(
            f"{len(fans)}", (_midnights(past["day"]), past["actual"].to_list()),
            {column: future[column].to_list() for column in ("mean", "lo_80", "hi_80", "lo_95", "hi_95")},
            _midnights(future["day"]), _supply_steps(plan, future))
    return fans


def _supply_steps(plan: pl.DataFrame, future: pl.DataFrame) -> tuple[list[datetime], list[float]]:
    """Supply from each quarter's start (the first at the forecast's start), held to the forecast's end."""
    if plan.is_empty():
        return [], []
    starts = _midnights(plan["quarter_start"])
    starts[0] = max(starts[0], _midnights(future["day"])[0])
    supply = plan["supply_devices"].to_list()
    return [*starts, _midnights(future["day"])[-1]], [*supply, supply[-1]]


def _midnights(days: pl.Series) -> list[datetime]:
    return [datetime.combine(day, time()) for day in days.to_list()]


def _planning_sections(report: Report) -> list[Section]:
    if not report.capacity_plan.height:
        return []
    return [_section("capacity-plan", "Capacity plan", report.capacity_plan.drop("quarter_start"),
                     "Pool demand at the configured upper bound against supply, per quarter (fleetmeter forecast)."),
            _section("forecast-methods", "Forecast methods", report.forecast_methods,
                     "Each series' model and its backtest MASE against seasonal-naive; the baseline where no "
                     "model beat it."),
            *([_section("tco", "Total cost of ownership by model", report.tco, "View tco_by_model.")]
              if report.tco.height else [])]


def write_html(report: Report, path: Path) -> None:
    path.write_text(render_html(report))
