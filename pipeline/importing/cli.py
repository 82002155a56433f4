"""``fleetmeter import``: rows from outside Kafka into the warehouse, with the live path's guarantees."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from deltalake.exceptions import DeltaError

from fleetmeter.common import logs
from fleetmeter.common.settings import ConfigError, flag_section, load_settings
from fleetmeter.pipeline.importing.files import UnreadableFile, batches, identity
from fleetmeter.pipeline.importing.runner import run_import
from fleetmeter.pipeline.settings import PipelineSettings
from fleetmeter.pipeline.warehouse.delta import WarehouseRefused

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Rows from files into the warehouse.")


@app.command()
def file(
    paths: Annotated[list[Path], typer.Argument(help="CSV or Parquet files of schema-v1 rows.", exists=True,
                                                dir_okay=False, show_default=False)],
    warehouse: Annotated[str | None, typer.Option(help="Warehouse directory or URI.")] = None,
    group_id: Annotated[str | None, typer.Option(help="The consumer group that owns the warehouse.")] = None,
    batch_rows: Annotated[int, typer.Option(help="Rows per batch (an interrupted import redoes at most 8).",
                                            min=1, max=1_000_000)] = 20_000,
    config: Annotated[str | None, typer.Option(help="The pipeline's TOML or YAML configuration file.",
                                               envvar="FLEETMETER_CONFIG")] = None,
) -> None:
    """Store the rows of each file through validation, dedup, rollups and exactly-once commits. Run again
    after an interruption with the same arguments: it resumes, and stores nothing twice."""
    try:
        settings = load_settings(PipelineSettings, config_file=config, warehouse=flag_section(uri=warehouse),
                                 consumer=flag_section(group_id=group_id))
        logs.configure(settings.logging)
        for path in paths:
            summary = run_import(identity(path, batch_rows), batches(path, batch_rows), settings)
            quarantined = ", ".join(f"{reason} {count:,}" for reason, count in sorted(summary.quarantined.items()))
            typer.echo(f"{path}: {summary.rows:,} rows read, {summary.stored:,} stored, {summary.duplicates:,} "
                       f"already there, quarantined: {quarantined or 'none'}"
                       + (f" (resumed after batch {summary.resumed_after})" if summary.resumed_after else ""))
    except (ConfigError, UnreadableFile, WarehouseRefused) as exc:
        typer.echo(f"fleetmeter import file: {exc}", err=True)
        raise typer.Exit(2) from exc
    except (OSError, DeltaError) as exc:
        typer.echo(f"fleetmeter import file: the warehouse refused the import, run it again: {exc}", err=True)
        raise typer.Exit(1) from exc
