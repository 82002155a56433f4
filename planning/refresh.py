"""One planning run: the demand and supply series from the warehouse, their forecasts and the capacity plan,
stored as the forecasts and capacity_plan tables (``fleetmeter forecast``, the demo)."""

from __future__ import annotations

from datetime import UTC, date, datetime

import polars as pl

from fleetmeter.planning import demand
from fleetmeter.planning.capacity import capacity_plan
from fleetmeter.planning.forecast import forecast
from fleetmeter.planning.store import replace_table
from fleetmeter.schemas.warehouse import CAPACITY_PLAN, FORECASTS
from fleetmeter.sql.catalog import Catalog


class NoHistory(Exception):
    """The warehouse holds no hourly rollups in the range."""


def refresh(catalog: Catalog) -> tuple[pl.DataFrame, pl.DataFrame, date]:
    """Forecast every series, plan every pool, store both; the forecasts, the plan and the last day fitted."""
    settings = catalog.settings
    hours = demand.hourly(catalog)
    through = demand.last_full_day(hours)
    if through is None:
        raise NoHistory("the warehouse holds no hourly rollups in that range")
    forecasts = forecast(demand.daily_demand(hours, through), settings.forecast)
    plan = capacity_plan(forecasts, demand.daily_supply(hours, through), settings.capacity)
    run_at = datetime.now(UTC)
    replace_table(settings, FORECASTS, forecasts, run_at)
    replace_table(settings, CAPACITY_PLAN, plan, run_at)
    return forecasts, plan, through
