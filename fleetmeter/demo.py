"""``fleetmeter demo``: a simulated fleet streaming into an embedded broker, then a look at what arrived.

Today it runs the collector half of the product (the pipeline and the report join it later): it starts
the embedded Kafka-compatible broker, a simulated fleet compressed in time, the collector daemon with
its /metrics endpoint, and then reads the topic back and summarizes it per tenant.
"""

from __future__ import annotations

import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Annotated

import pyarrow as pa
import typer
from kafka import KafkaConsumer

from collectors.backends import open_backends
from collectors.daemon import CollectorDaemon
from collectors.settings import CollectorSettings
from fleetmeter import logs
from fleetmeter.embedded_broker import EmbeddedBroker
from fleetmeter.settings import LoggingSettings
from schemas import wire


def demo(
    nodes: Annotated[int, typer.Option(help="Simulated nodes.")] = 10,
    devices_per_node: Annotated[int, typer.Option(help="GPUs per node.")] = 8,
    seconds: Annotated[float, typer.Option(help="Real seconds to run.")] = 20.0,
    speedup: Annotated[float, typer.Option(help="Simulated seconds per real second.")] = 360.0,
    metrics_port: Annotated[int, typer.Option(help="Port of /metrics while the demo runs.")] = 9410,
) -> None:
    """Run a simulated fleet through the collector into an embedded broker and summarize the result."""
    logs.configure(LoggingSettings(level="warning", format="console"))
    with EmbeddedBroker() as broker, tempfile.TemporaryDirectory(prefix="fleetmeter-demo-") as spool_dir:
        settings = CollectorSettings(
            cluster="demo",
            backends=["simulated"],
            run_for_s=seconds,
            kafka={"bootstrap_servers": [broker.bootstrap_servers]},  # type: ignore[arg-type]
            spool={"dir": Path(spool_dir)},  # type: ignore[arg-type]
            metrics={"address": "127.0.0.1", "port": metrics_port},  # type: ignore[arg-type]
            simulated={"nodes": nodes, "devices_per_node": devices_per_node, "speedup": speedup,  # type: ignore[arg-type]
                       "start": time.time() - seconds * speedup},
        )
        daemon = CollectorDaemon(settings, open_backends(settings))
        runner = threading.Thread(target=daemon.run, name="collector")
        runner.start()
        typer.echo(f"broker at {broker.bootstrap_servers}; {nodes * devices_per_node} simulated GPUs; "
                   f"{seconds * speedup / 3600:.1f} h of fleet time in {seconds:.0f} s")
        typer.echo(f"metrics: http://127.0.0.1:{metrics_port}/metrics  (curl it while the demo runs)")
        with typer.progressbar(length=int(seconds), label="collecting") as progress:
            while runner.is_alive():
                runner.join(1.0)
                progress.update(1)
        summarize(broker.bootstrap_servers, settings.kafka.topic)


def summarize(bootstrap_servers: str, topic: str) -> None:
    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap_servers, auto_offset_reset="earliest",
                             consumer_timeout_ms=2000, group_id=None, enable_auto_commit=False)
    messages, tables = 0, []
    for record in consumer:
        messages += 1
        tables.append(wire.decode(record.value))
    consumer.close()
    if not tables:
        typer.echo("no samples arrived")
        return
    rows = pa.concat_tables(tables).select(["tenant", "interval_s", "util_compute", "energy_j"]).to_pylist()
    totals: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0])
    for row in rows:
        tenant = totals[row["tenant"]]
        tenant[0] += row["interval_s"]
        tenant[1] += (row["util_compute"] or 0.0) * row["interval_s"]
        tenant[2] += row["energy_j"] or 0.0
    typer.echo(f"\n{messages} messages, {len(rows)} samples on topic {topic}\n")
    typer.echo(f"{'tenant':<16}{'device-hours':>14}{'busy':>8}{'energy kWh':>12}")
    for name, (device_s, busy_s, energy_j) in sorted(totals.items(), key=lambda item: -item[1][0]):
        typer.echo(f"{name:<16}{device_s / 3600:>14.1f}{busy_s / device_s:>8.0%}{energy_j / 3.6e6:>12.1f}")
    typer.echo("\nnext: fleetmeter collect --help")
