"""The report as one self-contained HTML page: inline CSS and SVG charts, no scripts, no network."""

from __future__ import annotations

from dataclasses import dataclass
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
        _section("health", "Nodes with hardware trouble", report.health, "Canned query hardware_health_by_node."),
    ]
    # every template here is HTML; select_autoescape() judged report.html.j2 by ".j2" and escaped nothing
    environment = Environment(loader=PackageLoader("fleetmeter.reports"), autoescape=True)
    template = environment.get_template("report.html.j2")
    return template.render(report=report, tiles=_tiles(report), charts=page_charts, sections=sections)


def write_html(report: Report, path: Path) -> None:
    path.write_text(render_html(report))
