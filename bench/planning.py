"""Planning at scale: forecasting many daily series, and solving a large procurement MILP, on one core.

Forecasts: ``series`` daily series of ``days`` days with trend, a weekly season and noise (each its own),
through ``fleetmeter.planning.forecast`` with the default configuration (AutoETS and MSTL, each backtested
on 3 rolling origins of 14 days against seasonal-naive, then a 90-day forecast with 80 % and 95 % intervals).
Procurement: ``models`` models to choose from over ``quarters`` quarters in 4 clusters, with lead times,
minimum orders, a budget per quarter and site power, demand growing every quarter.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
import polars as pl

from fleetmeter.demo.history import WEEKDAY
from fleetmeter.planning.forecast import forecast
from fleetmeter.planning.procurement import Offer, Problem, solve
from fleetmeter.sql.settings import ForecastSettings

WEEK = WEEKDAY  # the demo history's weekday effect, Monday first


@dataclass(frozen=True)
class ForecastRun:
    series: int
    days: int
    seconds: float
    methods: dict[str, int]
    coverage_80: float


@dataclass(frozen=True)
class PlanRun:
    models: int
    quarters: int
    clusters: int
    variables: int
    seconds: float
    feasible: bool
    devices: int


def forecast_run(series: int, days: int) -> ForecastRun:
    rng = np.random.default_rng(11)
    start = date(2025, 1, 6)
    frames = []
    for number in range(series):
        base, trend, season = rng.uniform(5, 500), rng.uniform(-0.01, 0.05), rng.uniform(0, 0.6)
        t = np.arange(days)
        y = base * (1 + trend * t / 7) * (1 + season * np.array(WEEK)[t % 7]) + rng.normal(0, base * 0.08, days)
        frames.append(pl.DataFrame({"cluster": "c", "tenant": f"t{number}", "model": "m", "measure": "peak_devices",
                                    "day": [start + timedelta(days=int(d)) for d in t], "y": np.maximum(y, 0)}))
    started = time.perf_counter()
    result = forecast(pl.concat(frames), ForecastSettings())
    seconds = time.perf_counter() - started
    chosen = result.group_by("tenant").agg(pl.col("method").first(), pl.col("coverage_80").first())
    methods = dict(chosen.group_by("method").len().iter_rows())
    return ForecastRun(series, days, seconds, methods, float(chosen["coverage_80"].mean() or 0))  # type: ignore[arg-type]


def plan_run(models: int, quarters: int, clusters: int = 4) -> PlanRun:
    rng = np.random.default_rng(5)
    offers = [Offer(f"model-{m}", price=float(rng.uniform(5_000, 40_000)), throughput=float(rng.uniform(0.5, 4)),
                    power_kw=float(rng.uniform(0.3, 1.2)), lead=int(rng.integers(0, 3)),
                    min_order=int(rng.choice([1, 4, 8])), running_per_quarter=float(rng.uniform(300, 2_000)))
              for m in range(models)]
    names = [f"site-{c}" for c in range(clusters)]
    need = {(name, q): float(200 * (1 + c) * (q + 1) ** 1.2) for c, name in enumerate(names) for q in range(quarters)}
    problem = Problem(names, [f"Q{q + 1}" for q in range(quarters)], need, dict.fromkeys(need, 0.0), offers,
                      budget_per_quarter=60_000_000.0, site_power_kw={name: 20_000.0 for name in names})
    started = time.perf_counter()
    solution = solve(problem)
    return PlanRun(models, quarters, clusters, 2 * models * quarters * clusters, time.perf_counter() - started,
                   solution.feasible, sum(p.devices for p in solution.purchases))
