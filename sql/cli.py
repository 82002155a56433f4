"""``fleetmeter query`` and ``fleetmeter sql``: SQL over the warehouse, with the views of ``views.sql``."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Annotated

import duckdb
import pyarrow as pa
import typer
from deltalake.exceptions import DeltaError

from fleetmeter.common.settings import ConfigError, load_settings
from fleetmeter.sql.catalog import QUERIES, Catalog, WarehouseEmpty, canned_queries
from fleetmeter.sql.output import Format, console, write
from fleetmeter.sql.settings import AnalysisSettings
from fleetmeter.sql.since import parse_as_of, parse_since

Warehouse = Annotated[str | None, typer.Option(
    help="Warehouse directory or URI (default: from --config, else ./warehouse).")]
Config = Annotated[str | None, typer.Option(help="TOML or YAML file: warehouse, prices, idle_threshold.",
                                            envvar="FLEETMETER_CONFIG")]
Since = Annotated[str | None, typer.Option(help="Canned queries start here: an age (7d, 36h) or a date; "
                                                "rounded down to a UTC midnight. Default: everything.")]


AsOf = Annotated[str | None, typer.Option(
    "--as-of", help="Read an older version: a version of the samples table (every table as of that commit) "
                    "or a time (2026-11-30T12:00:00Z). Default: the current one.")]


def open_catalog(command: str, warehouse: str | None, config: str | None, since: str | None,
                 as_of: str | None = None) -> Catalog:
    """The warehouse as configured, or a one-line error and exit status 2."""
    settings = analysis_settings(command, warehouse, config)
    try:
        return Catalog.open(settings, parse_since(since), parse_as_of(as_of))
    except (WarehouseEmpty, ValueError, OSError, DeltaError) as exc:
        typer.echo(f"fleetmeter {command}: {exc}", err=True)
        raise typer.Exit(2) from exc


def analysis_settings(command: str, warehouse: str | None, config: str | None) -> AnalysisSettings:
    """The analysis configuration, or a one-line error and exit status 2."""
    try:
        return load_settings(AnalysisSettings, config_file=config, warehouse=warehouse)
    except (ConfigError, ValueError, OSError) as exc:
        typer.echo(f"fleetmeter {command}: {exc}", err=True)
        raise typer.Exit(2) from exc


def _query_text(statement: str | None, file: str | None) -> str:
    if (statement is None) == (file is None):
        raise ValueError("give either SQL or --file")
    if statement is not None:
        return statement
    assert file is not None
    path = Path(file)
    if not path.exists() and file in canned_queries():
        path = canned_queries()[file]
    return path.read_text()


def query(
    statement: Annotated[str | None, typer.Argument(help="SQL to run against the views.", show_default=False)] = None,
    file: Annotated[str | None, typer.Option(help="A .sql file, or a canned query's name (see --list).")] = None,
    warehouse: Warehouse = None,
    config: Config = None,
    since: Since = None,
    as_of: AsOf = None,
    format: Annotated[Format, typer.Option(help="Output format.")] = Format.table,
    output: Annotated[Path | None, typer.Option(help="Write here instead of stdout (needed for parquet).")] = None,
    limit: Annotated[int, typer.Option(help="Rows shown in --format table.")] = 100,
    list_queries: Annotated[bool, typer.Option("--list", help="List the canned queries and exit.")] = False,
) -> None:
    """Run SQL on the warehouse: the views `samples`, `util_1m`, `util_1h`, `util_1d`, `jobs`, `costs`, ..."""
    if list_queries:
        for name, path in canned_queries().items():
            question = path.read_text().splitlines()[0].removeprefix("--").strip()
            typer.echo(f"{name:<28} {question}")
        return
    try:
        text = _query_text(statement, file)
    except (ValueError, OSError) as exc:
        typer.echo(f"fleetmeter query: {exc}", err=True)
        raise typer.Exit(2) from exc
    catalog = open_catalog("query", warehouse, config, since, as_of)
    try:
        result = _result(catalog.connect().sql(text))
        write(result, format, output, limit)
    except (duckdb.Error, ValueError, OSError) as exc:
        typer.echo(f"fleetmeter query: {exc}", err=True)
        raise typer.Exit(1) from exc


def _result(relation: duckdb.DuckDBPyRelation | None) -> pa.Table:
    """A statement's rows; a statement that returns none (CREATE, SET) gives an empty table."""
    return pa.table({}) if relation is None else relation.to_arrow_table()


def _duckdb_cli() -> str | None:
    """The ``duckdb`` executable: on PATH, or beside this Python (the ``duckdb-cli`` package's)."""
    beside = Path(sys.executable).parent / "duckdb"
    return shutil.which("duckdb") or (str(beside) if beside.exists() else None)


def sql(
    warehouse: Warehouse = None,
    config: Config = None,
    since: Since = None,
    as_of: AsOf = None,
    print_script: Annotated[bool, typer.Option("--print-script",
                                               help="Print the SQL that loads the views, and exit.")] = False,
) -> None:
    """An interactive DuckDB shell with the warehouse's views loaded (local warehouses)."""
    catalog = open_catalog("sql", warehouse, config, since, as_of)
    try:
        script = catalog.script()
    except ValueError as exc:
        typer.echo(f"fleetmeter sql: {exc}", err=True)
        raise typer.Exit(2) from exc
    if print_script:
        typer.echo(script)
        return
    cli = _duckdb_cli()
    if cli is None:
        typer.echo("fleetmeter sql: no duckdb CLI found; `fleetmeter sql --print-script > fleet.sql` "
                   "then `duckdb -init fleet.sql`", err=True)
        raise typer.Exit(1)
    with tempfile.NamedTemporaryFile("w", prefix="fleetmeter-", suffix=".sql") as init:
        init.write(script)
        init.flush()
        console().print(f"views: samples, util_1m, util_1h, util_1d, device_1h, jobs, job_devices, costs, "
                        f"model_prices, quarantine; canned queries: .read {QUERIES}/<name>.sql")
        subprocess.run([cli, "-init", init.name], check=False)
