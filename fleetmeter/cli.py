"""The ``fleetmeter`` command: one entry point, a subcommand per job."""

from __future__ import annotations

import typer

from collectors.cli import collect
from fleetmeter.demo import demo
from pipeline.cli import app as pipeline_app
from reports.cli import report
from sql.cli import query, sql

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
app.command()(collect)
app.command()(demo)
app.add_typer(pipeline_app, name="pipeline")
app.command()(query)
app.command()(sql)
app.command()(report)


@app.callback()
def main() -> None:
    """Accelerator utilization metrics: collectors -> Kafka -> Parquet -> DuckDB."""
