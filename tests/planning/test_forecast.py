"""Forecasts against series whose truth is known: trend and weekly season recovered, 80 % intervals that
hold about 80 % of the backtest days, the baseline where nothing beats it, no forecast without history."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import polars as pl
import pytest

from fleetmeter.demo.history import WEEKDAY
from fleetmeter.planning.forecast import BASELINE, forecast
from fleetmeter.sql.settings import ForecastSettings

WEEK = WEEKDAY  # the demo history's weekday effect, Monday first
FIRST = date(2026, 1, 5)  # a Monday
HISTORY, HORIZON = 126, 28


def truth(base: float, trend: float, season: float, day: int) -> float:
    return base * (1 + trend * day / 7) * (1 + season * WEEK[day % 7])


def series(count: int, noise: float, seed: int = 3) -> tuple[pl.DataFrame, dict[tuple[str, date], float]]:
    rng = np.random.default_rng(seed)
    rows, future = [], {}
    for number in range(count):
        base, trend, season = rng.uniform(20, 200), rng.uniform(0, 0.05), rng.uniform(0.2, 0.6)
        for day in range(HISTORY + HORIZON):
            value = truth(base, trend, season, day)
            if day < HISTORY:
                rows.append({"cluster": "c", "tenant": f"t{number}", "model": "H100", "measure": "peak_devices",
                             "day": FIRST + timedelta(days=day), "y": value + rng.normal(0, base * noise)})
            else:
                future[f"t{number}", FIRST + timedelta(days=day)] = value
    return pl.DataFrame(rows), future


def test_trend_and_weekly_season_are_recovered_and_intervals_hold_what_they_say() -> None:
    history, future = series(30, noise=0.05)
    result = forecast(history, ForecastSettings(horizon_days=HORIZON))
    predicted = result.filter(pl.col("mean").is_not_null())
    assert predicted.height == 30 * HORIZON and predicted["day"].min() == FIRST + timedelta(days=HISTORY)
    errors = [abs(row["mean"] - future[row["tenant"], row["day"]]) / future[row["tenant"], row["day"]]
              for row in predicted.iter_rows(named=True)]
    assert np.mean(errors) < 0.04 and np.quantile(errors, 0.95) < 0.10  # the noise alone is 5 % of the base
    per_series = result.group_by("tenant").agg(pl.col("coverage_80").first(), pl.col("method").first())
    assert 0.70 <= per_series["coverage_80"].mean() <= 0.90  # type: ignore[operator]
    assert set(per_series["method"]) <= {"AutoETS", "MSTL"}  # both beat seasonal-naive on trending series
    assert (predicted["lo_95"] <= predicted["lo_80"]).all() and (predicted["hi_80"] <= predicted["hi_95"]).all()
    history_rows = result.filter(pl.col("actual").is_not_null())
    assert history_rows.height == history.height and history_rows["mean"].is_null().all()


def test_the_baseline_where_no_model_beats_it_and_no_forecast_without_history() -> None:
    repeating = [{"cluster": "c", "tenant": "steady", "model": "A100", "measure": "peak_devices",
                  "day": FIRST + timedelta(days=day), "y": 10.0 + 20 * WEEK[day % 7]} for day in range(84)]
    young = [{"cluster": "c", "tenant": "new", "model": "A100", "measure": "peak_devices",
              "day": FIRST + timedelta(days=day), "y": 3.0} for day in range(20)]
    settings = ForecastSettings(horizon_days=14)
    result = forecast(pl.DataFrame(repeating + young), settings)
    steady = result.filter(pl.col("tenant") == "steady")
    assert steady["method"].unique().to_list() == [BASELINE] and steady["note"][0].startswith("seasonal-naive")
    predicted = steady.filter(pl.col("mean").is_not_null())
    assert predicted["mean"].to_list() == pytest.approx([10.0 + 20 * WEEK[(84 + day) % 7] for day in range(14)])
    new = result.filter(pl.col("tenant") == "new")
    assert new["mean"].is_null().all() and new["method"].is_null().all()
    assert new["note"][0] == f"not enough history: 20 days of {settings.min_history_days} needed"


def test_falling_demand_is_never_forecast_below_zero() -> None:
    falling = [{"cluster": "c", "tenant": "leaving", "model": "V100", "measure": "allocated_device_hours",
                "day": FIRST + timedelta(days=day), "y": max(0.0, 300 - 4.0 * day)} for day in range(70)]
    result = forecast(pl.DataFrame(falling), ForecastSettings(horizon_days=60))
    predicted = result.filter(pl.col("mean").is_not_null())
    assert predicted.height == 60
    assert (predicted.select(pl.min_horizontal("mean", "lo_80", "lo_95", "hi_80", "hi_95")) >= 0).to_series().all()
