"""``fleetmeter forecast`` and ``fleetmeter plan``: demand forecasts and the capacity plan, stored in the
warehouse; what to buy, and what moving a tenant to another model would change."""

from __future__ import annotations

from typing import Annotated, NoReturn

import duckdb
import polars as pl
import pyarrow as pa
import typer
from deltalake.exceptions import DeltaError

from fleetmeter.planning.capacity import capacity_plan
from fleetmeter.planning.procurement import problem_from, solve
from fleetmeter.planning.refresh import NoHistory, refresh
from fleetmeter.planning.whatif import Move, moved
from fleetmeter.sql.cli import Config, Warehouse, open_catalog
from fleetmeter.sql.output import Format, console, write
from fleetmeter.sql.settings import AnalysisSettings

History = Annotated[str | None, typer.Option(
    "--since", help="History to fit on: an age (365d) or a date. Default: forecast.history_days of it.")]


def forecast(warehouse: Warehouse = None, config: Config = None, since: History = None,
             format: Annotated[Format, typer.Option(help="Output format of the summary.")] = Format.table) -> None:
    """Forecast each tenant's and each pool's daily demand (allocated and busy device-hours, peak devices), store
    the forecasts and the capacity plan in the warehouse (views `forecasts`, `capacity_plan`), and print the
    plan. Each series uses the statsforecast model that beat seasonal-naive on its backtests, or the baseline."""
    catalog = open_catalog("forecast", warehouse, config, since)  # forecast.history_days trims each series
    settings = catalog.settings
    try:
        forecasts, plan, through = refresh(catalog)
    except NoHistory as exc:
        _fail("forecast", exc, 2)
    except (duckdb.Error, DeltaError, OSError) as exc:
        _fail("forecast", exc, 1)
    series = forecasts.select("cluster", "tenant", "model", "measure").unique().height
    fitted = forecasts.filter(pl.col("mean").is_not_null()).select("cluster", "tenant", "model", "measure").unique()
    console().print(f"{series} series through {through}: {fitted.height} forecast {settings.forecast.horizon_days} "
                    f"days ahead, {series - fitted.height} without enough history. Capacity plan (demand at the "
                    f"{settings.capacity.level} % upper bound, {settings.capacity.target_headroom:.0%} headroom):")
    write(plan.to_arrow(), format, None, 200)


def plan(warehouse: Warehouse = None, config: Config = None,
         move: Annotated[list[str] | None, typer.Option(
             help="What if TENANT moved from one model to another: TENANT:FROM_MODEL:TO_MODEL (repeatable).")] = None,
         format: Annotated[Format, typer.Option(help="Output format.")] = Format.table) -> None:
    """The capacity plan of the last `fleetmeter forecast`, and the least-cost purchases per quarter that keep
    supply above demand within the budget, site power, lead times and minimum orders (a MILP solved by
    HiGHS). With --move, the plan and the purchases again after moving tenants between models, and the cost."""
    catalog = open_catalog("plan", warehouse, config, None)
    settings = catalog.settings
    try:
        connection = catalog.connect()
        stored_plan = pl.DataFrame(pl.from_arrow(connection.sql("SELECT * FROM capacity_plan").to_arrow_table()))
        forecasts = pl.DataFrame(pl.from_arrow(connection.sql("SELECT * FROM forecasts").to_arrow_table()))
        costs = pl.DataFrame(pl.from_arrow(connection.sql(
            "SELECT model, per_allocated_hour FROM tco_by_model WHERE pricing = 'owned'").to_arrow_table()))
        moves = [Move.parse(text) for text in move or []]
    except (duckdb.Error, ValueError) as exc:
        _fail("plan", exc, 2)
    if stored_plan.is_empty():
        _fail("plan", "no capacity plan in the warehouse: run `fleetmeter forecast` first", 2)
    _show("capacity plan", stored_plan.drop("run_at"), format)
    _show_purchases(stored_plan, settings, format)
    if not moves:
        return
    supply = stored_plan.select("cluster", "model", pl.col("quarter_start").alias("day"),
                                pl.col("supply_devices").alias("devices")).drop_nulls()
    after, cost_change = moved(forecasts, moves, settings, costs)
    changed = capacity_plan(after, supply, settings.capacity)
    _show(f"capacity plan after {', '.join(map(str, moves))}", changed, format)
    _show_purchases(changed, settings, format)
    console().print(f"running cost of the moved demand over the horizon: {cost_change:+,.0f} {settings.currency} "
                    "(owned cost per allocated device-hour, tco_by_model)")


def _show_purchases(plan_rows: pl.DataFrame, settings: AnalysisSettings, format: Format) -> None:
    solution = solve(problem_from(plan_rows.to_dicts(), settings))
    if not solution.feasible:
        console().print(f"[bold]purchases:[/] {solution.message}")
        return
    rows = pa.Table.from_pylist([vars(purchase) for purchase in solution.purchases]) if solution.purchases else (
        pa.table({"cluster": [], "model": [], "quarter": [], "devices": [], "cost": []}))
    _show(f"purchases (least cost, {solution.cost:,.0f} {settings.currency} with running costs)", rows, format)


def _show(title: str, rows: pl.DataFrame | pa.Table, format: Format) -> None:
    if format is Format.table:
        console().print(f"[bold]{title}[/]")
    write(rows.to_arrow() if isinstance(rows, pl.DataFrame) else rows, format, None, 200)


def _fail(command: str, problem: object, code: int) -> NoReturn:
    typer.echo(f"fleetmeter {command}: {problem}", err=True)
    raise typer.Exit(code)
