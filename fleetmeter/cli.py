"""The ``fleetmeter`` command: one entry point, a subcommand per job.

Each subcommand's module is imported only when that subcommand runs, so that the collector daemon on
every node (``fleetmeter collect``) does not carry the pipeline's polars, the analysts' DuckDB and the
reports' matplotlib in its memory (about 90 MB of the 190 MB they took together).
"""

from __future__ import annotations

import importlib
from typing import Any

import typer
from typer.core import TyperGroup

#: subcommand -> "module:attribute": a command function, or a Typer app for a group of commands.
SUBCOMMANDS = {
    "collect": "fleetmeter.collectors.cli:collect",
    "demo": "fleetmeter.demo.cli:demo",
    "pipeline": "fleetmeter.pipeline.cli:app",
    "import": "fleetmeter.importing.cli:app",
    "query": "fleetmeter.sql.cli:query",
    "sql": "fleetmeter.sql.cli:sql",
    "report": "fleetmeter.reports.cli:report",
    "export": "fleetmeter.reports.cli:export_app",
    "forecast": "fleetmeter.planning.cli:forecast",
    "plan": "fleetmeter.planning.cli:plan",
    "anomalies": "fleetmeter.anomalies.cli:anomalies",
    "serve": "fleetmeter.web.cli:serve",
    "token": "fleetmeter.web.cli:token_app",
}


class _Subcommands(TyperGroup):
    """The click group behind ``app``. Contexts and commands are click's own types, which newer typer
    releases vendor: ``Any`` keeps this working with either."""

    def list_commands(self, ctx: Any) -> list[str]:
        return list(SUBCOMMANDS)

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        if cmd_name not in SUBCOMMANDS:
            return None
        module, _, attribute = SUBCOMMANDS[cmd_name].partition(":")
        target = getattr(importlib.import_module(module), attribute)
        if isinstance(target, typer.Typer):
            command: Any = typer.main.get_group(target)
        else:
            single = typer.Typer(add_completion=False)
            single.command(name=cmd_name)(target)
            command = typer.main.get_command(single)
        command.name = cmd_name
        return command


app = typer.Typer(cls=_Subcommands, no_args_is_help=True, add_completion=False)


@app.callback()
def main() -> None:
    """Accelerator utilization metrics: collectors -> Kafka -> Delta Lake tables -> DuckDB, Spark, Trino, polars."""
