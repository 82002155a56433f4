"""``fleetmeter anomalies``: run the detectors over the warehouse, keep their findings in the anomalies table
(ongoing anomalies updated, not repeated), and list them by cost impact."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, NoReturn

import duckdb
import polars as pl
import typer
from deltalake.exceptions import DeltaError

from fleetmeter.anomalies import detectors
from fleetmeter.anomalies.ledger import merge
from fleetmeter.planning.store import replace_table
from fleetmeter.schemas.warehouse import ANOMALIES
from fleetmeter.sql.cli import Config, Since, Warehouse, open_catalog
from fleetmeter.sql.output import Format, console, write

_DETECTORS = {detectors.IDLE_ALLOCATION: detectors.idle_allocations, detectors.STRAGGLER: detectors.stragglers,
              "regression": detectors.regressions, "sick_hardware": detectors.sick_hardware,
              "spike": detectors.spikes}


def anomalies(
    warehouse: Warehouse = None,
    config: Config = None,
    since: Since = "7d",
    kind: Annotated[list[str] | None, typer.Option(help=f"Only these kinds: {', '.join(detectors.KINDS)}.")] = None,
    format: Annotated[Format, typer.Option(help="Output format (table, csv, json).")] = Format.table,
    limit: Annotated[int, typer.Option(help="Rows shown in --format table.")] = 50,
) -> None:
    """Look for idle allocations, stragglers, regressions, sick hardware and usage spikes since --since; store
    what is found in the anomalies table (view `anomalies`); list the open and resolved anomalies, the costliest
    first."""
    kinds = kind or list(detectors.KINDS)
    unknown = sorted(set(kinds) - set(detectors.KINDS))
    if unknown or format is Format.parquet:
        _fail(f"unknown kind(s) {unknown}: {', '.join(detectors.KINDS)}" if unknown
              else "--format parquet: query the view instead (fleetmeter query --format parquet --output ...)")
    catalog = open_catalog("anomalies", warehouse, config, since)
    try:
        connection = catalog.connect()
        latest = detectors.last_hour(connection)
        if latest is None:
            _fail("the warehouse holds no hourly rollups")
        findings = [finding for name in kinds for finding in _DETECTORS[name](
            connection, catalog.settings.anomalies, latest)]
        stored = pl.DataFrame(pl.from_arrow(connection.sql("SELECT * FROM anomalies").to_arrow_table()))
        table = merge(stored, findings, datetime.now(UTC))
        replace_table(catalog.settings, ANOMALIES, table, datetime.now(UTC))
    except (duckdb.Error, DeltaError, OSError) as exc:
        _fail(str(exc))
    shown = table.filter(pl.col("kind").is_in(kinds)).sort("status", pl.col("cost_impact").fill_null(-1.0),
                                                            descending=[False, True])
    if format is Format.table:
        console().print(f"{len(findings)} finding(s); {shown.filter(pl.col('status') == 'open').height} open "
                        f"anomalies, {shown.filter(pl.col('status') == 'resolved').height} resolved "
                        f"(costs in {catalog.settings.currency})")
    write(shown.drop("id", "first_detected", "last_detected").to_arrow(), format, None, limit)


def _fail(problem: str) -> NoReturn:
    typer.echo(f"fleetmeter anomalies: {problem}", err=True)
    raise typer.Exit(2)
