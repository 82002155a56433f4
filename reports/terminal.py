"""The report in a terminal: headline figures, a sparkline of utilization, the waste rankings."""

from __future__ import annotations

import polars as pl
from rich.console import Console
from rich.table import Table

from fleetmeter.reports.build import Report
from fleetmeter.sql.output import as_markup, cell, rich_table

_BLOCKS = " ▁▂▃▄▅▆▇█"


def sparkline(values: list[float | None]) -> str:
    """Ratios in 0..1 as block characters (a blank for an unknown value)."""
    return "".join(" " if v is None else _BLOCKS[round(max(0.0, min(1.0, v)) * (len(_BLOCKS) - 1))]
                   for v in values)


def money(value: float | None, currency: str) -> str:
    return "n/a" if value is None else f"{value:,.0f} {currency}"


def percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0%}"


def _section(frame: pl.DataFrame, title: str) -> Table:
    return rich_table(frame.to_arrow(), title=f"[bold]{title}[/]")


def print_report(report: Report, out: Console) -> None:
    h = report.headline
    span = "no data" if report.first is None or report.last is None else \
        f"{report.first:%Y-%m-%d %H:%M} to {report.last:%Y-%m-%d %H:%M} UTC"
    allocated = h["allocated_device_hours"] or 0.0
    out.rule("[bold]fleetmeter report")
    out.print(f"warehouse {as_markup(report.warehouse)}, data {span}; idle below util {report.idle_threshold:g}")
    out.print(
        f"[bold]{report.peak_devices:,}[/] devices; [bold]{cell(h['device_hours'])}[/] device-hours, "
        f"{percent(allocated / h['device_hours'] if h['device_hours'] else None)} allocated; "
        f"utilization [bold]{percent(h['utilization'])}[/]; "
        f"[bold]{cell(h['idle_allocated_device_hours'])}[/] allocated device-hours idle; "
        f"cost {money(h['cost'], report.currency)}, of which [bold red]{money(h['wasted_cost'], report.currency)}"
        f"[/] idle and [bold red]{money(h['busy_idle_cost'], report.currency)}[/] busy but idle "
        f"(SM activity below {report.sm_idle_threshold:g}); energy {cell(h['energy_kwh'])} kWh")
    if report.timeline.height:
        out.print(f"utilization over time  [cyan]{sparkline(report.timeline['utilization'].to_list())}[/]")
    if report.unpriced_models:
        unpriced = as_markup(", ".join(report.unpriced_models))
        out.print(f"[yellow]no price configured for: {unpriced}[/] (their cost is n/a)")
    out.print(_section(report.daily, "Per day"))
    out.print(_section(report.tenants, "Tenants by wasted cost (allocated time only)"))
    out.print(_section(report.idle_jobs, "Top idle jobs (waste_by_job)"))
    out.print(_section(report.low_jobs, "Jobs with low utilization for their size (low_utilization_jobs)"))
    out.print(_section(report.efficiency, "Efficiency by model: the driver's busy share beside SM, tensor and "
                                          "memory activity (efficiency)"))
    if report.inefficient_jobs.height:
        out.print(_section(report.inefficient_jobs, "Jobs by idle and busy-but-idle cost (inefficient_jobs)"))
    if report.rightsizing.height:
        out.print(_section(report.rightsizing, "Right-sizing: the cheapest device that holds each job (rightsizing)"))
    if report.health.height:
        out.print(_section(report.health, "Nodes with hardware trouble (hardware_health_by_node)"))
    if report.anomalies.height:
        out.print(_section(report.anomalies, "Anomalies, open first, by cost impact (fleetmeter anomalies)"))
    if report.capacity_plan.height:
        out.print(_section(report.capacity_plan.drop("quarter_start"),
                           "Capacity plan: supply against forecast pool demand (fleetmeter forecast)"))
        pools = report.forecast_methods.filter(pl.col("tenant") == "*").drop("tenant")
        out.print(_section(pools, "Forecast methods of the pools and their backtests (per tenant: the forecasts view)"))
    if report.tco.height:
        out.print(_section(report.tco, "Total cost of ownership by model (tco_by_model)"))
