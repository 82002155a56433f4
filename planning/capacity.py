"""The capacity plan: per cluster and model, supply against the pool's forecast demand, quarter by quarter.

Demand is the pool's (every tenant's) peak devices at the upper bound of the configured prediction interval;
supply is the devices present on the last measured day plus the procurement plan's additions and retirements
of exactly that cluster and model from their dates on (never below zero; a model only planned is a pool too).
Headroom is supply minus demand; a pool runs out on the first day it is negative; the devices to add in a
quarter are those that keep ``target_headroom`` above demand on every day of it, beyond what earlier quarters
added."""

from __future__ import annotations

import math
from datetime import date

import polars as pl

from fleetmeter.planning.demand import POOL
from fleetmeter.sql.settings import CapacitySettings


def quarter_of(day: date) -> str:
    return f"{day.year}-Q{(day.month - 1) // 3 + 1}"


def quarter_start(day: date) -> date:
    return date(day.year, 3 * ((day.month - 1) // 3) + 1, 1)


def pool_demand(forecasts: pl.DataFrame, level: int) -> pl.DataFrame:
    """Per cluster, model and forecast day: the pool's peak devices at the interval's upper bound."""
    return (forecasts.filter((pl.col("tenant") == POOL) & (pl.col("measure") == "peak_devices")
                             & pl.col("mean").is_not_null())
            .select("cluster", "model", "day", pl.col(f"hi_{level}").alias("demand")))


def capacity_plan(forecasts: pl.DataFrame, supply: pl.DataFrame, settings: CapacitySettings) -> pl.DataFrame:
    """Rows of the capacity_plan table (without ``run_at``). A pool's devices present are those of the last day
    measured (``supply``'s last day: a model whose rows stopped before it has none left)."""
    demand = pool_demand(forecasts, settings.level)
    last_day = supply["day"].max()
    present = (supply.filter(pl.col("day") == last_day).group_by("cluster", "model").agg(pl.col("devices").sum())
               if last_day is not None else supply.select("cluster", "model", "devices"))
    forecast_pools = set(forecasts.filter(pl.col("tenant") == POOL).select("cluster", "model").unique().iter_rows())
    pools = sorted(set(supply.select("cluster", "model").unique().iter_rows()) | forecast_pools
                   | {(change.cluster, change.model) for change in settings.planned})
    rows = []
    for cluster, model in pools:
        now = present.filter((pl.col("cluster") == cluster) & (pl.col("model") == model))["devices"]
        days = demand.filter((pl.col("cluster") == cluster) & (pl.col("model") == model)).sort("day")
        if days.is_empty():
            why = ("not enough history to forecast its pool's demand" if (cluster, model) in forecast_pools
                   else "no tenant held any of its devices: no demand to forecast")
            rows.append({"cluster": cluster, "model": model, "quarter": "", "quarter_start": None,
                         "supply_devices": float(now[0]) if len(now) else 0.0, "demand_devices": None,
                         "headroom_devices": None, "runs_out_on": None, "add_devices": None, "level": settings.level,
                         "note": why})
            continue
        rows += _quarters(cluster, model, float(now[0]) if len(now) else 0.0, days, settings)
    return pl.DataFrame(rows, schema={
        "cluster": pl.String, "model": pl.String, "quarter": pl.String, "quarter_start": pl.Date,
        "supply_devices": pl.Float64, "demand_devices": pl.Float64, "headroom_devices": pl.Float64,
        "runs_out_on": pl.Date, "add_devices": pl.Int64, "level": pl.Int32, "note": pl.String})


def _quarters(cluster: str, model: str, present: float, days: pl.DataFrame, settings: CapacitySettings,
              ) -> list[dict[str, object]]:
    planned = [change for change in settings.planned if (change.cluster, change.model) == (cluster, model)]
    daily = [(day, demand, max(0.0, present + sum(change.devices for change in planned if change.starting <= day)))
             for day, demand in days.select("day", "demand").iter_rows()]
    runs_out = next((day for day, demand, supply in daily if supply < demand), None)
    rows, added = [], 0
    for quarter in dict.fromkeys(quarter_of(day) for day, _, _ in daily):
        inside = [(day, demand, supply) for day, demand, supply in daily if quarter_of(day) == quarter]
        short = max(demand * (1 + settings.target_headroom) - supply for _, demand, supply in inside)
        add = max(0, math.ceil(short - 1e-9) - added)
        added += add
        rows.append({"cluster": cluster, "model": model, "quarter": quarter,
                     "quarter_start": quarter_start(inside[0][0]), "supply_devices": inside[-1][2],
                     "demand_devices": max(demand for _, demand, _ in inside),
                     "headroom_devices": min(supply - demand for _, demand, supply in inside),
                     "runs_out_on": runs_out, "add_devices": add, "level": settings.level, "note": None})
    return rows
