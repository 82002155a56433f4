"""What if a tenant's work moved from one model to another: its forecast demand leaves the first model's
pool and joins the second's, converted by the models' throughput (a device of the new model does
``throughput_new / throughput_old`` of the work of one of the old), and its allocated device-hours cost the new
model's owned cost per allocated hour instead of the old's.

Quantiles do not add: the pools' interval bounds after a move are the bounds before, minus or plus the
tenant's own bounds: an approximation, high where a pool gains the demand and low where it loses it.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from fleetmeter.planning.demand import POOL
from fleetmeter.planning.procurement import economics_of
from fleetmeter.sql.settings import AnalysisSettings

_BOUNDS = ("mean", "lo_80", "hi_80", "lo_95", "hi_95")


@dataclass(frozen=True)
class Move:
    tenant: str
    from_model: str
    to_model: str

    @classmethod
    def parse(cls, text: str) -> Move:
        """TENANT:FROM_MODEL:TO_MODEL (a tenant's name may hold colons; model names do not)."""
        parts = text.rsplit(":", 2)
        if len(parts) != 3 or not all(parts):
            raise ValueError(f"--move {text!r}: give TENANT:FROM_MODEL:TO_MODEL")
        return cls(*parts)

    def __str__(self) -> str:
        return f"{self.tenant}: {self.from_model} -> {self.to_model}"


def moved(forecasts: pl.DataFrame, moves: list[Move], settings: AnalysisSettings,
          costs: pl.DataFrame) -> tuple[pl.DataFrame, float]:
    """The forecasts after the moves, and the change in running cost over the horizon (NaN: a cost unknown)."""
    per_hour = dict(costs.select("model", "per_allocated_hour").iter_rows())
    change = 0.0
    for move in moves:
        ratio = _throughput(move.from_model, settings) / _throughput(move.to_model, settings)
        tenant = forecasts.filter((pl.col("tenant") == move.tenant) & (pl.col("model") == move.from_model)
                                  & pl.col("mean").is_not_null())
        if tenant.is_empty():
            raise ValueError(f"--move {move}: no forecast of {move.tenant} on {move.from_model}")
        peak = tenant.filter(pl.col("measure") == "peak_devices")
        forecasts = _shift(forecasts, peak, move.from_model, -1.0)
        forecasts = _shift(forecasts, peak, move.to_model, ratio)
        hours = tenant.filter(pl.col("measure") == "allocated_device_hours")["mean"].sum()
        old, new = per_hour.get(move.from_model), per_hour.get(move.to_model)
        change += float("nan") if old is None or new is None else hours * (ratio * new - old)
    return forecasts, change


def _throughput(model: str, settings: AnalysisSettings) -> float:
    entry = economics_of(model, settings)
    return entry.throughput if entry is not None else 1.0


def _shift(forecasts: pl.DataFrame, peak: pl.DataFrame, model: str, factor: float) -> pl.DataFrame:
    """The pool of ``model`` in the tenant's clusters, with ``factor`` x the tenant's peak demand added."""
    delta = peak.select("cluster", "day", *[(pl.col(b) * factor).alias(f"delta_{b}") for b in _BOUNDS])
    pool = forecasts.filter((pl.col("tenant") == POOL) & (pl.col("model") == model)
                            & (pl.col("measure") == "peak_devices") & pl.col("mean").is_not_null())
    template = peak.with_columns(tenant=pl.lit(POOL), model=pl.lit(model), actual=None,
                                 **{b: pl.lit(0.0) for b in _BOUNDS})
    missing = template.join(pool, on=["cluster", "day"], how="anti")  # a pool the model does not have yet
    both = pl.concat([pool, missing], how="diagonal_relaxed").join(delta, on=["cluster", "day"], how="left")
    shifted = both.with_columns(
        *[(pl.col(b) + pl.col(f"delta_{b}").fill_null(0.0)).clip(lower_bound=0.0).alias(b) for b in _BOUNDS]
    ).drop([f"delta_{b}" for b in _BOUNDS])
    rest = forecasts.join(pool.select("cluster", "tenant", "model", "measure", "day"),
                          on=["cluster", "tenant", "model", "measure", "day"], how="anti")
    return pl.concat([rest, shifted.select(forecasts.columns)], how="vertical_relaxed")
