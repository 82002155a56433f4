"""``fleetmeter collect``: run the collector daemon on this node."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fleetmeter.collectors.backends import open_backends
from fleetmeter.collectors.backends.base import BackendUnavailable
from fleetmeter.collectors.daemon import CollectorDaemon
from fleetmeter.collectors.settings import CollectorSettings
from fleetmeter.collectors.transport.spool import SpoolLocked
from fleetmeter.common import logs
from fleetmeter.common.listen import PortUnavailable
from fleetmeter.common.settings import ConfigError, flag_section, load_settings
from fleetmeter.common.signals import stop_on_signals


def collect(
    backend: Annotated[str | None, typer.Option(help="auto, nvml, simulated, or a comma-separated list.")] = None,
    bootstrap_servers: Annotated[str | None, typer.Option(help="Kafka HOST:PORT[,HOST:PORT...].")] = None,
    topic: Annotated[str | None, typer.Option(help="Kafka topic for samples.")] = None,
    metrics_port: Annotated[int | None, typer.Option(help="Port of the Prometheus /metrics endpoint.")] = None,
    interval: Annotated[float | None, typer.Option(help="Seconds between scrapes.")] = None,
    config: Annotated[Path | None, typer.Option(help="TOML or YAML configuration file.",
                                                envvar="FLEETMETER_CONFIG")] = None,
    spool_dir: Annotated[Path | None, typer.Option(help="Directory of the disk spool.")] = None,
    profile: Annotated[str | None, typer.Option(help="Metric names: fleetmeter or dcgm.")] = None,
    nodes: Annotated[int | None, typer.Option(help="Simulated backend: number of nodes.")] = None,
    devices_per_node: Annotated[int | None, typer.Option(help="Simulated backend: devices per node.")] = None,
    seed: Annotated[int | None, typer.Option(help="Simulated backend: random seed.")] = None,
    speedup: Annotated[float | None, typer.Option(help="Simulated backend: simulated s per real s.")] = None,
    run_for: Annotated[float | None, typer.Option(help="Stop after this many seconds.")] = None,
) -> None:
    """Read this node's accelerators every interval; serve /metrics; send samples to Kafka."""
    simulated = {"nodes": nodes, "devices_per_node": devices_per_node, "seed": seed, "speedup": speedup}
    try:
        settings = load_settings(
            CollectorSettings,
            config_file=config,
            backends=backend,
            interval_s=interval,
            run_for_s=run_for,
            kafka=flag_section(bootstrap_servers=bootstrap_servers, topic=topic),
            metrics=flag_section(port=metrics_port, profile=profile),
            spool=flag_section(dir=spool_dir),
            simulated=flag_section(**simulated),
        )
        logs.configure(settings.logging)
        daemon = CollectorDaemon(settings, open_backends(settings))
        daemon.listen()
    except (ConfigError, BackendUnavailable, SpoolLocked, PortUnavailable, OSError) as exc:
        typer.echo(f"fleetmeter collect: {exc}", err=True)
        raise typer.Exit(2) from exc

    stop_on_signals(daemon.stopping)
    daemon.run()
