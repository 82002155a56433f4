"""``fleetmeter report``: the fleet's utilization, waste and cost since a date, in the terminal and as HTML."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import duckdb
import typer

from fleetmeter.reports.build import build_report
from fleetmeter.reports.html import write_html
from fleetmeter.reports.terminal import print_report
from fleetmeter.sql.cli import Config, Warehouse, open_catalog
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
