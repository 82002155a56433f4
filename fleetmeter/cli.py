"""The ``fleetmeter`` command: one entry point, a subcommand per job."""

from __future__ import annotations

import typer

from collectors.cli import collect
from fleetmeter.demo import demo
from pipeline.cli import app as pipeline_app

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
app.command()(collect)
app.command()(demo)
app.add_typer(pipeline_app, name="pipeline")


@app.callback()
def main() -> None:
    """Accelerator utilization metrics: collectors -> Kafka -> Parquet -> DuckDB."""
