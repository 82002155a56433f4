"""``fleetmeter import``: rows from outside Kafka into the warehouse, with the live path's guarantees."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from deltalake.exceptions import DeltaError
from kafka.errors import KafkaError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from fleetmeter.collectors.prometheus.api import (
    AnswerTooLarge,
    PrometheusAPI,
    PrometheusRefused,
    PrometheusUnavailable,
)
from fleetmeter.collectors.prometheus.history import ChunkRows
from fleetmeter.collectors.prometheus.source import Chunk, Plan, PrometheusSource, parse_moment
from fleetmeter.common import logs
from fleetmeter.common.settings import ConfigError, flag_section, load_settings
from fleetmeter.importing.kafka import KafkaUnavailable, send_import
from fleetmeter.importing.prometheus import PrometheusBatches
from fleetmeter.importing.settings import ImportSettings
from fleetmeter.pipeline.importing.files import FileSource, UnreadableFile
from fleetmeter.pipeline.importing.runner import Summary, run_import
from fleetmeter.pipeline.partition import PartitionLost
from fleetmeter.pipeline.warehouse.delta import WarehouseRefused

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="History into the warehouse: from files, or from the Prometheus that scraped an exporter.")

Config = Annotated[str | None, typer.Option(help="TOML or YAML configuration (warehouse, validation, prometheus).",
                                            envvar="FLEETMETER_CONFIG")]
Warehouse = Annotated[str | None, typer.Option(help="Warehouse directory or URI.")]
GroupId = Annotated[str | None, typer.Option(help="The consumer group that owns the warehouse.")]


@app.command()
def file(
    paths: Annotated[list[Path], typer.Argument(help="CSV or Parquet files of schema-v1 rows.", exists=True,
                                                dir_okay=False, show_default=False)],
    warehouse: Warehouse = None,
    group_id: GroupId = None,
    batch_rows: Annotated[int, typer.Option(help="Rows per batch (an interrupted import redoes at most 8).",
                                            min=1, max=1_000_000)] = 20_000,
    config: Config = None,
) -> None:
    """Store the rows of each file through validation, dedup, rollups and exactly-once commits. Run again
    after an interruption with the same arguments: it resumes, and stores nothing twice."""
    try:
        settings = _settings(config, warehouse, group_id)
        for path in paths:
            summary = run_import(FileSource(path, batch_rows, settings.file), settings)
            typer.echo(f"{path}: {_summary(summary)}")
    except (ConfigError, UnreadableFile, WarehouseRefused) as exc:
        _fail("file", exc, 2)
    except (OSError, DeltaError) as exc:
        _fail("file", f"the warehouse refused the import, run it again: {exc}", 1)


@app.command()
def prometheus(
    url: Annotated[str | None, typer.Option(help="The Prometheus server, e.g. http://prometheus:9090.")] = None,
    since: Annotated[str, typer.Option(help="Start: a duration back from now (90d, 36h) or an RFC 3339 time.")
                     ] = "30d",
    until: Annotated[str | None, typer.Option(help="End, in the same forms; default: now, to the whole hour.")
                     ] = None,
    step: Annotated[int | None, typer.Option(help="Seconds between points: each row's length.")] = None,
    exporter: Annotated[str | None, typer.Option(help="dcgm (dcgm-exporter) or amd (device-metrics-exporter).")
                        ] = None,
    warehouse: Warehouse = None,
    group_id: GroupId = None,
    bootstrap_servers: Annotated[str | None, typer.Option(
        help="Send through Kafka like a collector instead of writing the warehouse.")] = None,
    topic: Annotated[str | None, typer.Option(help="With --bootstrap-servers: the samples topic.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print what would be read, and stop.")] = False,
    config: Config = None,
) -> None:
    """Read an exporter's history from Prometheus's HTTP API and store it as samples: through validation,
    dedup, rollups and exactly-once commits (--warehouse), or through the samples topic (--bootstrap-servers).
    Interrupted and run again with the same arguments, it resumes and stores nothing twice. Into the
    warehouse, rows whose time a collector already reported for their device are left out."""
    try:
        settings = load_settings(
            ImportSettings, config_file=config, warehouse=flag_section(uri=warehouse),
            consumer=flag_section(group_id=group_id), kafka=flag_section(bootstrap_servers=bootstrap_servers,
                                                                          topic=topic),
            prometheus=flag_section(url=url, step_s=step, exporter=exporter))
        logs.configure(settings.logging)
        hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)  # a rerun within the hour resumes
        start, end = parse_moment(since, hour), parse_moment(until, hour) if until else hour
        if end > hour:  # a chunk committed before Prometheus had all its samples would never be read again
            typer.echo(f"--until is after the current hour: importing up to {hour.isoformat()}", err=True)
            end = hour
        source_settings = settings.prometheus
        api = PrometheusAPI(source_settings.url, timeout_s=source_settings.timeout_s, retries=source_settings.retries,
                            max_answer_bytes=source_settings.max_answer_bytes, headers=source_settings.headers())
        source = PrometheusSource(source_settings, api, start, end)
        plan = source.plan()
    except (ConfigError, ValueError, OSError) as exc:
        _fail("prometheus", exc, 2)
    except (PrometheusUnavailable, PrometheusRefused, AnswerTooLarge) as exc:
        _fail("prometheus", exc, 1)
    if dry_run:
        _describe(source, plan)
        return
    if not plan.nodes:
        _fail("prometheus", f"no series of the {source_settings.exporter} mapping's metrics between "
                            f"{_time(plan.start_s)} and {_time(plan.end_s)} at {source_settings.url}", 1)
    console = Console(stderr=True)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[at]}"),
                  TimeElapsedColumn(), console=console, disable=not console.is_terminal) as progress:
        task = progress.add_task("chunks", total=len(plan.chunks), at="")
        seen = {"series": 0}

        def chunk_done(chunk: Chunk, rows: ChunkRows) -> None:
            seen["series"] += rows.series
            progress.update(task, completed=chunk.number + 1,
                            at=f"up to {_time(chunk.end_s)}, {seen['series']:,} series read")

        batches = PrometheusBatches(source, plan, chunk_done)
        try:
            if bootstrap_servers is not None:
                sent = send_import(batches, settings.kafka)
                typer.echo(f"{source_settings.url}: {sent.rows:,} rows sent to {settings.kafka.topic} in "
                           f"{sent.messages:,} messages, {len(plan.chunks):,} chunks; set aside: "
                           f"{_counts(sent.set_aside)}")
                return
            summary = run_import(batches, settings, yield_to_stored=True)
        except (PrometheusUnavailable, PrometheusRefused, AnswerTooLarge) as exc:
            again = "send it again (the workers drop what they hold)" if bootstrap_servers else "resume"
            _fail("prometheus", f"{exc}; run the same command again to {again}", 1)
        except (KafkaUnavailable, KafkaError) as exc:
            _fail("prometheus", f"the topic did not take the import: {exc!r}; run the same command again", 1)
        except PartitionLost as exc:
            _fail("prometheus", f"another run of this import committed it meanwhile ({exc})", 1)
        except WarehouseRefused as exc:
            _fail("prometheus", exc, 2)
        except (OSError, DeltaError) as exc:
            _fail("prometheus", f"the warehouse refused the import, run it again: {exc}", 1)
        finally:
            api.close()
    typer.echo(f"{source_settings.url}: {len(plan.nodes):,} nodes, {_time(plan.start_s)} to {_time(plan.end_s)}, "
               f"{seen['series']:,} series read; {_summary(summary)}; metrics not in Prometheus (their columns "
               f"from other sources, or null): {', '.join(plan.missing) or 'none'}")


def _settings(config: str | None, warehouse: str | None, group_id: str | None) -> ImportSettings:
    settings = load_settings(ImportSettings, config_file=config, warehouse=flag_section(uri=warehouse),
                             consumer=flag_section(group_id=group_id))
    logs.configure(settings.logging)
    return settings


def _summary(summary: Summary) -> str:
    text = (f"{summary.rows:,} rows read, {summary.stored:,} stored, {summary.duplicates:,} already there, "
            f"quarantined: {_counts(summary.quarantined)}")
    if summary.covered:
        text += f", {summary.covered:,} left out where the warehouse holds the device's time already"
    if summary.set_aside:
        text += f", set aside: {_counts(summary.set_aside)}"
    return text + (f" (resumed after batch {summary.resumed_after})" if summary.resumed_after else "")


def _describe(source: PrometheusSource, plan: Plan) -> None:
    windows = len({chunk.start_s for chunk in plan.chunks})
    typer.echo(f"would read {source.settings.url} from {_time(plan.start_s)} to {_time(plan.end_s)} every "
               f"{source.settings.step_s:g} s: {len(plan.nodes):,} nodes, {len(plan.chunks):,} chunks "
               f"({windows:,} windows x {len(plan.chunks) // max(windows, 1):,} node groups), "
               f"{len(plan.sources)} queries a chunk; import id {source.identity(plan)}")
    typer.echo(f"metrics not in Prometheus: {', '.join(plan.missing) or 'none'}")
    if plan.chunks:
        typer.echo("the first chunk's queries:")
        for query in source.queries(plan, plan.chunks[0]):
            typer.echo(f"  {query}")


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{reason} {count:,}" for reason, count in sorted(counts.items())) or "none"


def _time(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _fail(command: str, problem: object, code: int) -> NoReturn:
    typer.echo(f"fleetmeter import {command}: {problem}", err=True)
    sys.stderr.flush()
    raise typer.Exit(code)
