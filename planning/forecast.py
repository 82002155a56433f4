"""Demand forecasts with statsforecast, each model earning its place on backtests.

Per series: every candidate model (AutoETS, MSTL with weekly seasonality, AutoARIMA, AutoTheta: the
configuration says which) and the seasonal-naive baseline are backtested on rolling origins
(``backtest_windows`` forecasts of ``backtest_days``, each from a later origin). A candidate is used only
where its MASE (mean absolute error over the backtests, scaled by the in-sample seasonal-naive error) is below
the baseline's; otherwise the baseline is, and the row says so. A model that cannot fit a series (AutoARIMA
finds no suitable model) stands aside there: statsforecast fits seasonal-naive in its place. The chosen method
is then fitted on the whole history and forecasts ``horizon_days`` with 80 % and 95 % prediction intervals,
clipped at zero (demand is never negative). A series shorter than two seasons plus the backtests gets "not
enough history" and no forecast."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np
import pandas as pd
import polars as pl
from statsforecast import StatsForecast
from statsforecast.models import MSTL, AutoARIMA, AutoETS, AutoTheta, SeasonalNaive

from fleetmeter.sql.settings import ForecastSettings

BASELINE = "SeasonalNaive"
KEYS = ("cluster", "tenant", "model", "measure")
_SEPARATOR = "\x1f"
CANDIDATES: dict[str, Callable[[int], Any]] = {
    "AutoETS": lambda season: AutoETS(season_length=season),
    "AutoARIMA": lambda season: AutoARIMA(season_length=season),
    "MSTL": lambda season: MSTL(season_length=season, trend_forecaster=AutoETS(model="ZZN")),
    "AutoTheta": lambda season: AutoTheta(season_length=season),
}


@dataclass(frozen=True)
class Choice:
    method: str
    method_mase: float | None
    baseline_mase: float | None
    coverage_80: float | None  # share of the chosen method's backtest days inside its 80 % interval
    note: str | None


def forecast(series: pl.DataFrame, settings: ForecastSettings) -> pl.DataFrame:
    """``series`` (cluster, tenant, model, measure, day, y) as rows of the forecasts table, without ``run_at``."""
    series = _recent(series, settings.history_days).with_columns(
        unique_id=pl.concat_str([pl.col(key) for key in KEYS], separator=_SEPARATOR))
    lengths = series.group_by("unique_id").len()
    enough = set(lengths.filter(pl.col("len") >= settings.min_history_days)["unique_id"])
    choices = {uid: Choice("", None, None, None, f"not enough history: {length} days of "
                                                 f"{settings.min_history_days} needed")
               for uid, length in lengths.iter_rows() if uid not in enough}
    history = series.filter(pl.col("unique_id").is_in(list(enough)))
    predicted = pl.DataFrame()
    if not history.is_empty():
        frame = history.select("unique_id", pl.col("day").cast(pl.Datetime("ns")).alias("ds"), "y").to_pandas()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a model that cannot fit a series is the baseline's case, not a warning
            choices |= _backtest(frame, settings)
            predicted = _predict(frame, choices, settings)
    return _rows(series, predicted, choices)


def _recent(series: pl.DataFrame, days: int) -> pl.DataFrame:
    last = pl.col("day").max().over(list(KEYS))
    return series.filter(pl.col("day") > last - timedelta(days=days))


def _models(names: Sequence[str], season: int) -> list[Any]:
    return [CANDIDATES[name](season) for name in names]


def _backtest(frame: pd.DataFrame, settings: ForecastSettings) -> dict[str, Choice]:
    season, horizon = settings.season_days, settings.backtest_days
    engine = StatsForecast(models=[*_models(settings.models, season), SeasonalNaive(season_length=season)],
                           freq="D", n_jobs=1, fallback_model=SeasonalNaive(season_length=season))
    backtests: Any = engine.cross_validation(df=frame, h=horizon, n_windows=settings.backtest_windows,
                                             step_size=horizon, level=[80])  # pandas in, pandas out
    first_cutoff = backtests.groupby("unique_id")["cutoff"].min()
    choices = {}
    for uid, tests in backtests.groupby("unique_id"):
        observed = frame.loc[(frame["unique_id"] == uid) & (frame["ds"] <= first_cutoff[uid]), "y"].to_numpy()
        scale = float(np.mean(np.abs(observed[season:] - observed[:-season])))
        errors = {name: float(np.mean(np.abs(tests["y"] - tests[name]))) for name in [*settings.models, BASELINE]}
        # MASE where the in-sample seasonal-naive error is not zero; else the plain errors rank the models
        mase = {name: error / scale if scale > 0 else error for name, error in errors.items()}
        best = min(settings.models, key=lambda name: mase[name])
        beats = np.isfinite(mase[best]) and mase[best] < mase[BASELINE]
        method = best if beats else BASELINE
        inside = (tests["y"] >= tests[f"{method}-lo-80"]) & (tests["y"] <= tests[f"{method}-hi-80"])
        choices[str(uid)] = Choice(method, _finite(mase[method]), _finite(mase[BASELINE]), float(inside.mean()),
                                   None if beats else f"seasonal-naive: no model beat it ({best} MASE "
                                                      f"{mase[best]:.3g} against {mase[BASELINE]:.3g})")
    return choices


def _predict(frame: pd.DataFrame, choices: dict[str, Choice], settings: ForecastSettings) -> pl.DataFrame:
    """Each series' forecast by its chosen method (series grouped by method, each group fitted once)."""
    parts = []
    for method in sorted({choice.method for choice in choices.values() if choice.method}):
        ids = [uid for uid, choice in choices.items() if choice.method == method]
        model = SeasonalNaive(season_length=settings.season_days) if method == BASELINE else CANDIDATES[method](
            settings.season_days)
        engine = StatsForecast(models=[model], freq="D", n_jobs=1,
                               fallback_model=SeasonalNaive(season_length=settings.season_days))
        predicted: Any = engine.forecast(df=frame[frame["unique_id"].isin(ids)], h=settings.horizon_days,
                                         level=[80, 95])
        predicted = predicted.reset_index() if "unique_id" not in predicted.columns else predicted
        parts.append(pl.from_pandas(predicted).select(
            pl.col("unique_id").cast(pl.String), pl.col("ds").cast(pl.Date).alias("day"),
            *[pl.col(f"{method}{suffix}").clip(lower_bound=0).alias(name) for suffix, name in
              zip(("", "-lo-80", "-hi-80", "-lo-95", "-hi-95"), _BOUNDS, strict=True)]))
    return pl.concat(parts) if parts else pl.DataFrame()


_BOUNDS = ("mean", "lo_80", "hi_80", "lo_95", "hi_95")


def _rows(series: pl.DataFrame, predicted: pl.DataFrame, choices: dict[str, Choice]) -> pl.DataFrame:
    actual = series.select("unique_id", "day", pl.col("y").alias("actual"),
                           *[pl.lit(None, pl.Float64).alias(bound) for bound in _BOUNDS])
    if not predicted.is_empty():
        actual = pl.concat([actual, predicted], how="diagonal_relaxed")
    chosen = pl.DataFrame([{"unique_id": uid, "method": c.method or None, "method_mase": c.method_mase,
                            "baseline_mase": c.baseline_mase, "coverage_80": c.coverage_80, "note": c.note}
                           for uid, c in choices.items()],
                          schema={"unique_id": pl.String, "method": pl.String, "method_mase": pl.Float64,
                                  "baseline_mase": pl.Float64, "coverage_80": pl.Float64, "note": pl.String})
    keys = pl.col("unique_id").str.split(_SEPARATOR)
    return (actual.join(chosen, on="unique_id", how="left")
            .with_columns(*[keys.list.get(i).alias(key) for i, key in enumerate(KEYS)])
            .drop("unique_id").sort(*KEYS, "day"))


def _finite(value: float) -> float | None:
    return value if np.isfinite(value) else None
