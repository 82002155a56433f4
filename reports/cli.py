"""``fleetmeter report``: the fleet's utilization, waste and cost since a date, in the terminal and as HTML; and
``fleetmeter export focus``: the chargeback as a FinOps FOCUS dataset."""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Annotated

import duckdb
import typer

from fleetmeter.reports.build import build_report
from fleetmeter.reports.focus import ExportRefused, Format, focus_export, write_focus
from fleetmeter.reports.html import write_html
from fleetmeter.reports.terminal import print_report
from fleetmeter.sql.cli import Config, Warehouse, analysis_settings, open_catalog
from fleetmeter.sql.output import console


def report(
    warehouse: Warehouse = None,
    config: Config = None,
    since: Annotated[str, typer.Option(help="Start: an age (7d, 36h) or a date, rounded down to a UTC midnight.")]
    = "7d",
    html: Annotated[Path | None, typer.Option(help="Also write the report as a self-contained HTML page here.")]
    = None,
) -> None:
    """Fleet utilization, top tenants by waste, top idle jobs, trends and hardware trouble."""
    catalog = open_catalog("report", warehouse, config, since)
    try:
        built = build_report(catalog)
    except duckdb.Error as exc:
        typer.echo(f"fleetmeter report: {exc}", err=True)
        raise typer.Exit(1) from exc
    print_report(built, console())
    if html is not None:
        write_html(built, html)
        console().print(f"written: {html.resolve().as_uri()}")


export_app = typer.Typer(help="The warehouse's figures in formats other tools read.", no_args_is_help=True)


@export_app.command("focus")
def focus(
    start: Annotated[str, typer.Option("--from", help="First UTC day exported (YYYY-MM-DD).")],
    end: Annotated[str, typer.Option("--to", help="First UTC day not exported (YYYY-MM-DD): --from 2026-11-01 "
                                                  "--to 2026-12-01 is November.")],
    output_format: Annotated[Format, typer.Option("--format", help="csv or parquet.")] = "csv",
    output: Annotated[Path | None, typer.Option(help="File to write (replaced whole, or left as it was). "
                                                     "Default: CSV to standard output.")] = None,
    warehouse: Warehouse = None,
    config: Config = None,
) -> None:
    """The chargeback as a FinOps FOCUS 1.2 cost and usage dataset: a charge per tenant, job, model and UTC day,
    idle device time as its own charge (docs/chargeback.md)."""
    try:
        first, stop = date.fromisoformat(start), date.fromisoformat(end)
    except ValueError as exc:
        typer.echo(f"fleetmeter export focus: --from and --to are dates (YYYY-MM-DD): {exc}", err=True)
        raise typer.Exit(2) from exc
    if output is None and output_format == "parquet":
        typer.echo("fleetmeter export focus: Parquet needs --output FILE", err=True)
        raise typer.Exit(2)
    settings = analysis_settings("export focus", warehouse, config)
    catalog = open_catalog("export focus", warehouse, config, None)
    try:
        export = focus_export(catalog, settings, first, stop)
    except ExportRefused as exc:
        typer.echo(f"fleetmeter export focus: {exc}", err=True)
        raise typer.Exit(2) from exc
    except duckdb.Error as exc:
        typer.echo(f"fleetmeter export focus: {exc}", err=True)
        raise typer.Exit(1) from exc
    if output is None:
        write_focus(export.table, sys.stdout, "csv")
    else:
        _replace(output, lambda path: write_focus(export.table, path, output_format))
    if export.unpriced_device_hours:
        typer.echo(f"fleetmeter export focus: {export.unpriced_device_hours:,.1f} device-hours of models no price "
                   "matches were left out (set `prices`)", err=True)


def _replace(path: Path, write: Callable[[str], None]) -> None:
    """Write through a temporary file beside ``path``, then rename it over: never a half-written export."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(handle)
    try:
        write(temporary)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise
