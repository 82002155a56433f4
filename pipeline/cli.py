"""``fleetmeter pipeline run``: a pipeline worker in a Kafka consumer group."""

from __future__ import annotations

from typing import Annotated

import structlog
import typer
from deltalake.exceptions import DeltaError
from kafka.errors import KafkaError

from fleetmeter.common import logs
from fleetmeter.common.listen import PortUnavailable, endpoint, serve_metrics
from fleetmeter.common.settings import ConfigError, flag_section, load_settings
from fleetmeter.common.signals import stop_on_signals
from fleetmeter.pipeline.settings import PipelineSettings
from fleetmeter.pipeline.warehouse.delta import WarehouseRefused, hand_over
from fleetmeter.pipeline.worker import PipelineWorker, WarehouseUnavailable

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Kafka -> validated rows -> Delta tables.")
Config = Annotated[str | None, typer.Option(help="TOML or YAML configuration file.", envvar="FLEETMETER_CONFIG")]


@app.command()
def run(
    bootstrap_servers: Annotated[str | None, typer.Option(help="Kafka HOST:PORT[,HOST:PORT...].")] = None,
    topic: Annotated[str | None, typer.Option(help="Kafka topic of samples.")] = None,
    warehouse: Annotated[str | None, typer.Option(help="Warehouse directory or URI (s3://bucket/path).")] = None,
    group_id: Annotated[str | None, typer.Option(help="Kafka consumer group of the workers.")] = None,
    until_idle: Annotated[bool, typer.Option("--until-idle", help="Drain the topic, finish, exit 0.")] = False,
    metrics_port: Annotated[int | None, typer.Option(help="Port of the worker's /metrics (0: any free port).")]
    = None,
    config: Config = None,
) -> None:
    """Consume samples, keep the warehouse's Delta tables and rollups, exactly once across restarts."""
    try:
        settings = load_settings(
            PipelineSettings, config_file=config, until_idle=until_idle or None,
            kafka=flag_section(bootstrap_servers=bootstrap_servers, topic=topic),
            consumer=flag_section(group_id=group_id), warehouse=flag_section(uri=warehouse),
            metrics=flag_section(port=metrics_port),
        )
        logs.configure(settings.logging)
        worker = PipelineWorker(settings)
        server = serve_metrics(worker.metrics.registry, settings.metrics.address, settings.metrics.port,
                               "metrics.port, --metrics-port")
    except (ConfigError, PortUnavailable, OSError) as exc:
        typer.echo(f"fleetmeter pipeline run: {exc}", err=True)
        raise typer.Exit(2) from exc

    structlog.get_logger(__name__).info(
        "serving /metrics", url=f"http://{endpoint(settings.metrics.address, server.server_port)}/metrics")
    stop_on_signals(worker.stopping)
    try:
        worker.run()
    except KafkaError as exc:  # exit non-zero so that systemd or Kubernetes restarts the worker
        typer.echo(f"fleetmeter pipeline run: Kafka at {','.join(settings.kafka.bootstrap_servers)}: {exc}", err=True)
        raise typer.Exit(1) from exc
    except WarehouseRefused as exc:
        typer.echo(f"fleetmeter pipeline run: {exc}", err=True)
        raise typer.Exit(2) from exc
    except (WarehouseUnavailable, DeltaError) as exc:
        typer.echo(f"fleetmeter pipeline run: {exc}", err=True)
        raise typer.Exit(1) from exc


@app.command("hand-over")
def hand_over_command(
    to_group: Annotated[str, typer.Option(help="The consumer group whose workers keep the warehouse from now on.")],
    warehouse: Annotated[str | None, typer.Option(help="Warehouse directory or URI.")] = None,
    config: Config = None,
) -> None:
    """Give the warehouse to another consumer group. Its workers start reading where `consumer.start_from` says
    (the offsets of the old group are not theirs); samples the warehouse already holds are dropped as duplicates.
    Stop the old group's workers first."""
    try:
        settings = load_settings(PipelineSettings, config_file=config, warehouse=flag_section(uri=warehouse))
        tables = hand_over(settings.warehouse.uri, settings.warehouse.storage_options, to_group)
    except (ConfigError, OSError, DeltaError) as exc:
        typer.echo(f"fleetmeter pipeline hand-over: {exc}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(f"{settings.warehouse.uri}: {len(tables)} tables now belong to consumer group {to_group!r}")
