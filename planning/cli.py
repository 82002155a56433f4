"""``fleetmeter forecast`` and ``fleetmeter plan``: demand forecasts and the capacity plan, stored in the
warehouse; what to buy, and what moving a tenant to another model would change."""

from __future__ import annotations

import json
import math
import sys
from typing import Annotated, Any, NoReturn

import duckdb
import polars as pl
import typer
from deltalake.exceptions import DeltaError

from fleetmeter.planning import demand
from fleetmeter.planning.capacity import capacity_plan
from fleetmeter.planning.procurement import Solution, problem_from, solve
from fleetmeter.planning.refresh import NoHistory, refresh
from fleetmeter.planning.whatif import Move, moved
from fleetmeter.sql.cli import Config, Warehouse, open_catalog
from fleetmeter.sql.output import Format, console, write
from fleetmeter.sql.settings import AnalysisSettings

History = Annotated[str | None, typer.Option(
    "--since", help="History to fit on: an age (365d) or a date. Default: forecast.history_days of it.")]
TABLES = ("capacity_plan", "purchases", "capacity_plan_after", "purchases_after")


def forecast(warehouse: Warehouse = None, config: Config = None, since: History = None,
             format: Annotated[Format, typer.Option(help="Output format of the capacity plan (table, csv, json).")
                               ] = Format.table) -> None:
    """Forecast each tenant's and each pool's daily demand (allocated and busy device-hours, peak devices), store
    the forecasts and the capacity plan in the warehouse (views `forecasts`, `capacity_plan`), and print the
    plan. Each series uses the statsforecast model that beat seasonal-naive on its backtests, or the baseline."""
    _no_parquet("forecast", format)
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
    _say(f"{series} series through {through}: {fitted.height} forecast {settings.forecast.horizon_days} days ahead, "
         f"{series - fitted.height} without enough history. Capacity plan (demand at the {settings.capacity.level} % "
         f"upper bound, {settings.capacity.target_headroom:.0%} headroom):", format)
    write(plan.to_arrow(), format, None, 200)


def plan(warehouse: Warehouse = None, config: Config = None,
         move: Annotated[list[str] | None, typer.Option(
             help="What if TENANT moved from one model to another: TENANT:FROM_MODEL:TO_MODEL (repeatable).")] = None,
         format: Annotated[Format, typer.Option(help="table; json (every table in one document); csv (--table).")
                           ] = Format.table,
         table: Annotated[str, typer.Option(help=f"With --format csv, the table written: {', '.join(TABLES)}.")
                          ] = "capacity_plan") -> None:
    """The capacity plan of the last `fleetmeter forecast`, and the least-cost purchases per quarter that keep
    supply above demand within the budget, site power, lead times and minimum orders (a MILP solved by
    HiGHS). With --move, the plan and the purchases again after moving tenants between models, and the cost."""
    _no_parquet("plan", format)
    if table not in TABLES:
        _fail("plan", f"--table {table!r}: one of {', '.join(TABLES)}", 2)
    catalog = open_catalog("plan", warehouse, config, None)
    settings = catalog.settings
    try:
        moves = [Move.parse(text) for text in move or []]
        connection = catalog.connect()
        stored = _frame(connection, "SELECT * EXCLUDE (run_at) FROM capacity_plan ORDER BY cluster, model, quarter")
        if stored.is_empty():
            _fail("plan", "no capacity plan in the warehouse: run `fleetmeter forecast` first", 2)
        tables: dict[str, pl.DataFrame] = {"capacity_plan": stored}
        notes = [*_purchases(stored, settings, tables, "purchases")]
        if moves:
            forecasts = _frame(connection, "SELECT * FROM forecasts")
            costs = _frame(connection, "SELECT model, per_allocated_hour FROM tco_by_model WHERE pricing = 'owned'")
            hours = demand.hourly(catalog)
            through = demand.last_full_day(hours)
            after, cost_change = moved(forecasts, moves, settings, costs)
            supply = demand.daily_supply(hours, through) if through else pl.DataFrame()
            tables["capacity_plan_after"] = capacity_plan(after, supply, settings.capacity)
            notes += _purchases(tables["capacity_plan_after"], settings, tables, "purchases_after")
            notes.append(f"after {'; '.join(map(str, moves))}: running cost of the moved demand over the horizon "
                         + ("unknown (a model without an owned cost per allocated hour in tco_by_model)"
                            if math.isnan(cost_change) else f"{cost_change:+,.0f} {settings.currency}"))
    except (duckdb.Error, ValueError) as exc:
        _fail("plan", exc, 2)
    _emit(tables, notes, format, table)


def _purchases(capacity: pl.DataFrame, settings: AnalysisSettings, tables: dict[str, pl.DataFrame],
               name: str) -> list[str]:
    """Solve the procurement problem of a capacity plan into ``tables[name]``; what to say about it."""
    solution = solve(problem_from(capacity.to_dicts(), settings))
    tables[name] = pl.DataFrame([vars(p) for p in solution.purchases], schema={
        "cluster": pl.String, "model": pl.String, "quarter": pl.String, "devices": pl.Int64, "cost": pl.Float64})
    return _said(solution, name, settings.currency)


def _said(solution: Solution, name: str, currency: str) -> list[str]:
    notes = [f"{name}: short {units:,.1f} compute units in {cluster} {quarter}, before any order can arrive"
             for (cluster, quarter), units in solution.unreachable.items()]
    if not solution.feasible:
        return [*notes, f"{name}: {solution.message}"]
    return [*notes, f"{name}: least cost {solution.cost:,.0f} {currency} with running costs; compute units are "
                    "pooled per cluster (a model's surplus covers another's shortfall, by throughput)"]


def _emit(tables: dict[str, pl.DataFrame], notes: list[str], format: Format, table: str) -> None:
    if format is Format.json:
        document: dict[str, Any] = {name: frame.to_dicts() for name, frame in tables.items()} | {"notes": notes}
        sys.stdout.write(json.dumps(document, default=str) + "\n")
        return
    if format is Format.csv:
        for note in notes:
            typer.echo(note, err=True)
        if table not in tables:
            _fail("plan", f"no {table} without --move", 2)
        write(tables[table].to_arrow(), format, None, 0)
        return
    for name, frame in tables.items():
        console().print(f"[bold]{name.replace('_', ' ')}[/]")
        write(frame.to_arrow(), format, None, 200)
    for note in notes:
        console().print(note)


def _frame(connection: duckdb.DuckDBPyConnection, sql: str) -> pl.DataFrame:
    return pl.DataFrame(pl.from_arrow(connection.sql(sql).to_arrow_table()))


def _say(text: str, format: Format) -> None:
    """Prose beside a table: on stderr when stdout is a CSV or JSON document."""
    if format is Format.table:
        console().print(text)
    else:
        typer.echo(text, err=True)


def _no_parquet(command: str, format: Format) -> None:
    if format is Format.parquet:
        _fail(command, "--format parquet: query the view instead (fleetmeter query --format parquet --output ...)", 2)


def _fail(command: str, problem: object, code: int) -> NoReturn:
    typer.echo(f"fleetmeter {command}: {problem}", err=True)
    raise typer.Exit(code)
