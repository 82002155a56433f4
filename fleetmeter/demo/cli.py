"""``fleetmeter demo``: the whole product on one machine in about a minute, with nothing else running.

An embedded Kafka-compatible broker; a simulated fleet (50 nodes x 8 GPUs, a few tenants and jobs, some
idle allocations and a failing GPU) compressed in time; the collector daemon streaming it; a pipeline
worker keeping the Delta Lake warehouse at the same time; then the history of two more clusters through the
import path (nine weeks for forecasts and the capacity plan; two weeks with anomalies of each kind planted on
purpose); then the report, and the commands to go on exploring the warehouse it leaves behind
(``fleetmeter-demo/``).
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import polars as pl
import typer
import yaml
from prometheus_client.parser import text_string_to_metric_families
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

from fleetmeter.anomalies.cli import Metrics, evaluate
from fleetmeter.anomalies.detectors import KINDS
from fleetmeter.collectors.backends import open_backends
from fleetmeter.collectors.daemon import CollectorDaemon
from fleetmeter.collectors.settings import CollectorSettings
from fleetmeter.common import logs
from fleetmeter.common.listen import PortUnavailable, listening_socket
from fleetmeter.common.settings import LoggingSettings
from fleetmeter.demo.broker import EmbeddedBroker, free_port
from fleetmeter.demo.history import HISTORY_CLUSTER, demo_history, whole_hour
from fleetmeter.demo.planted import PLANTED_CLUSTER, demo_planted
from fleetmeter.pipeline.importing.runner import run_import
from fleetmeter.pipeline.settings import PipelineSettings
from fleetmeter.planning.refresh import refresh
from fleetmeter.reports.build import build_report
from fleetmeter.reports.focus import focus_export, write_focus
from fleetmeter.reports.html import write_html
from fleetmeter.reports.terminal import print_report
from fleetmeter.schemas.wire import DEFAULT_TOPIC
from fleetmeter.sql.catalog import Catalog
from fleetmeter.sql.output import console
from fleetmeter.sql.settings import AnalysisSettings
from fleetmeter.sql.since import parse_since
from fleetmeter.web.app import create_app
from fleetmeter.web.auth import add_token
from fleetmeter.web.cli import serve_on

MARKER = ".fleetmeter-demo"
#: The demo worker's consumer group: this process's own, so that its progress reads no other demo's worker.
_DEMO_GROUP = f"fleetmeter-demo-{os.getpid()}"
#: The tenant whose token the demo prints beside the admin's.
DEMO_TENANT = "research"
#: Illustrative economics (planning and TCO): what a device costs to buy and run, and what it is worth.
DEMO_ECONOMICS = [
    {"model": "NVIDIA H100 80GB HBM3", "purchase_price": 30_000, "depreciation_years": 4, "hosting_per_year": 3_000,
     "support_per_year": 1_500, "throughput": 2.0, "power_kw": 0.7, "lead_time_quarters": 1, "min_order": 8,
     "on_demand_per_hour": 4.0, "reserved_per_hour": 2.6},
    {"model": "NVIDIA A100-SXM4-80GB", "purchase_price": 12_000, "depreciation_years": 4, "hosting_per_year": 2_500,
     "support_per_year": 1_000, "throughput": 1.0, "power_kw": 0.4, "lead_time_quarters": 0, "min_order": 8,
     "on_demand_per_hour": 1.8},
]
#: Illustrative prices: the longest matching pattern wins, so H100s cost 2.50 and anything else 2.00.
DEMO_PRICES = [
    {"model": "*", "per_device_hour": 2.00, "per_kwh": 0.12},
    {"model": "NVIDIA H100*", "per_device_hour": 2.50},
]


def demo(
    nodes: Annotated[int, typer.Option(help="Simulated nodes.")] = 50,
    devices_per_node: Annotated[int, typer.Option(help="GPUs per node.")] = 8,
    hours: Annotated[float, typer.Option(help="Hours of fleet time to simulate.")] = 6.0,
    seconds: Annotated[float, typer.Option(help="Real seconds the fleet runs for.")] = 45.0,
    partitions: Annotated[int, typer.Option(help="Kafka partitions of the samples topic.")] = 4,
    directory: Annotated[Path, typer.Option(help="Where the warehouse, config and report go (replaced).")]
    = Path("fleetmeter-demo"),
    metrics_port: Annotated[int, typer.Option(help="Collector /metrics port while the demo runs (0: a free one).",
                                              min=0, max=65535)] = 0,
    pipeline_metrics_port: Annotated[int, typer.Option(help="Pipeline /metrics port while it runs (0: a free one).",
                                                       min=0, max=65535)] = 0,
    history: Annotated[bool, typer.Option(help="Import nine weeks of a second cluster's history and two weeks of "
                                               "a third's with anomalies planted, then forecast and plan.")] = True,
    serve: Annotated[bool, typer.Option(help="At the end, serve the dashboard and the API until Ctrl-C.")] = True,
) -> None:
    """Run a simulated fleet through collector, Kafka and pipeline into a warehouse, then report on it."""
    logs.configure(LoggingSettings(level="warning", format="console"))
    logging.getLogger("kafka").setLevel(logging.ERROR)  # its event-loop timing warnings are noise here
    try:  # before anything is replaced: a port that is taken leaves the last demo's results as they were
        if metrics_port:
            listening_socket("127.0.0.1", metrics_port, "--metrics-port").close()
        worker_port = _free_for_worker(pipeline_metrics_port)
    except PortUnavailable as exc:
        typer.echo(f"fleetmeter demo: {exc}", err=True)
        raise typer.Exit(2) from exc
    _prepare(directory)
    warehouse = directory / "warehouse"
    out = console()
    with EmbeddedBroker() as broker, tempfile.TemporaryDirectory(prefix="fleetmeter-demo-") as spool_dir:
        broker.create_topic(DEFAULT_TOPIC, partitions)
        collector = CollectorDaemon(*_collector(broker, Path(spool_dir), nodes, devices_per_node, hours, seconds,
                                                metrics_port))
        try:
            collector_port = collector.listen()
        except PortUnavailable as exc:  # taken since it was checked
            collector.spool.close()
            typer.echo(f"fleetmeter demo: {exc}", err=True)
            raise typer.Exit(2) from exc
        pipeline_config = directory / "pipeline.yaml"
        pipeline_config.write_text(yaml.safe_dump(_pipeline(broker, warehouse, worker_port)))
        out.print(f"[bold]fleetmeter demo[/]: {nodes * devices_per_node} simulated GPUs on {nodes} nodes, "
                  f"{hours:g} h of fleet time in about {seconds:.0f} s; Kafka at {broker.bootstrap_servers}\n"
                  f"  while it runs: http://127.0.0.1:{collector_port}/metrics (collector), "
                  f"http://127.0.0.1:{worker_port}/metrics (pipeline worker)")
        with Progress(TextColumn("{task.description:<30}"), BarColumn(), TaskProgressColumn(),
                      TextColumn("{task.fields[detail]}"), TimeElapsedColumn(), console=out) as progress:
            bars = _Bars(progress, collector, hours, worker_port, _DEMO_GROUP)
            collecting = threading.Thread(target=collector.run, name="collector")
            collecting.start()
            try:
                _run_pipeline(pipeline_config, directory / "pipeline.log", collecting, bars)
            finally:
                collector.stopping.set()
                collecting.join()
    tokens_file = directory / "tokens.yaml"
    tokens = {"admin": add_token(tokens_file, "demo-admin", "admin", None),
              DEMO_TENANT: add_token(tokens_file, f"demo-{DEMO_TENANT}", "tenant", DEMO_TENANT)}
    analysis = {"warehouse": str(warehouse), "prices": DEMO_PRICES, "economics": DEMO_ECONOMICS, "per_kwh": 0.12,
                "procurement": {"quarters": 3, "budget_per_quarter": 2_000_000},
                "http": {"tokens_file": str(tokens_file)},
                # the live fleet runs for a few hours: judge jobs seen for two (production's default is 12)
                "rightsizing": {"min_hours": 2}}
    config = directory / "analysis.yaml"
    config.write_text(yaml.safe_dump(analysis, sort_keys=False))
    settings = AnalysisSettings.model_validate(analysis)
    if history:
        with Progress(TextColumn("{task.description:<30}"), BarColumn(), TaskProgressColumn(),
                      TextColumn("{task.fields[detail]}"), TimeElapsedColumn(), console=out) as progress:
            _history(progress, _pipeline_settings(pipeline_config))
            planning = progress.add_task("forecasts and capacity plan", total=1, detail="statsforecast, backtested")
            refresh(Catalog.open(settings, parse_since(None)))
            progress.update(planning, completed=1)
    with Progress(TextColumn("{task.description:<30}"), TextColumn("{task.fields[detail]}"), TimeElapsedColumn(),
                  console=out) as progress:
        task = progress.add_task("anomalies", detail="idle, stragglers, regressions, hardware, spikes")
        table = evaluate(Catalog.open(settings, parse_since(None)), list(KINDS), None, Metrics()).table
        progress.update(task, detail=f"{table.height} found, {table.filter(pl.col('status') == 'open').height} open")
    report = build_report(Catalog.open(settings, parse_since(None)))
    print_report(report, out)
    html = directory / "report.html"
    write_html(report, html)
    focus = directory / "focus.csv"
    today = datetime.now(UTC).date()
    write_focus(focus_export(Catalog.open(settings, parse_since(None)), settings, today - timedelta(days=90),
                             today + timedelta(days=1)).table, str(focus), "csv")
    _next_steps(config, html, focus)
    if serve:
        _serve(settings, tokens)


def _serve(settings: AnalysisSettings, tokens: dict[str, str]) -> None:
    """The dashboard and the API over the demo's warehouse, on a free port, until Ctrl-C."""
    sock = listening_socket("127.0.0.1", 0, "a free port")
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    console().print(f"""
[bold]The dashboard and the REST API[/] (Ctrl-C stops them): {url}/
  sign in as an admin with   {tokens["admin"]}
  or as tenant {DEMO_TENANT} with   {tokens[DEMO_TENANT]}
  curl -H "Authorization: Bearer {tokens[DEMO_TENANT]}" {url}/v1/tenants/{DEMO_TENANT}
  the API's OpenAPI document: {url}/openapi.json""")
    serve_on(create_app(settings), sock)


def _history(progress: Progress, settings: PipelineSettings) -> None:
    """Nine weeks of a second cluster's history (what forecasts need) and two weeks of a third's with anomalies
    planted, through the import path."""
    midnight = whole_hour(datetime.now(UTC)).replace(hour=0)
    history = demo_history(midnight)
    task = progress.add_task(f"history of cluster {HISTORY_CLUSTER}", total=1,
                             detail=f"{history.days} days, {sum(len(pool.devices) for pool in history.pools)} GPUs")
    summary = run_import(history, settings)
    progress.update(task, completed=1, detail=f"{summary.stored:,} device-hours stored")
    planted = demo_planted(midnight)
    task = progress.add_task(f"history of cluster {PLANTED_CLUSTER}", total=1,
                             detail=f"{planted.days} days, {planted.devices} GPUs, {len(planted.truth)} anomalies "
                                    "planted")
    summary = run_import(planted, settings)
    progress.update(task, completed=1, detail=f"{summary.stored:,} device-hours stored, "
                                              f"{len(planted.truth)} anomalies planted")


def _free_for_worker(port: int) -> int:
    """The worker's /metrics port: a free one for 0, else ``port`` once it is seen to be free (the worker binds
    it itself, in its own process, and would only say so in its log)."""
    if not port:
        return free_port()
    listening_socket("127.0.0.1", port, "--pipeline-metrics-port").close()
    return port


def _pipeline_settings(path: Path) -> PipelineSettings:
    return PipelineSettings.model_validate(yaml.safe_load(path.read_text()))


class _Bars:
    """Progress: fleet time the collector has streamed, and how many of its samples the warehouse holds (read
    from the demo's own worker: a /metrics whose ``fleetmeter_pipeline_info`` names the demo's consumer group)."""

    def __init__(self, progress: Progress, collector: CollectorDaemon, hours: float, pipeline_port: int,
                 group_id: str) -> None:
        self.progress = progress
        self.collector = collector
        self.hours = hours
        self.pipeline_metrics = f"http://127.0.0.1:{pipeline_port}/metrics"
        self.group_id = group_id
        self.start_ms = collector.clock.now_ms()
        self.fleet = progress.add_task("collectors -> Kafka", total=hours, detail="")
        self.stored = progress.add_task("pipeline -> Delta tables", total=None, detail="")
        self.stored_before = 0.0  # by the pipeline runs that have finished
        self.stored_now = 0.0

    def finished_run(self) -> None:
        self.stored_before += self.stored_now
        self.stored_now = 0.0

    def update(self) -> None:
        produced = self.collector.registry.get_sample_value("fleetmeter_samples_produced_total") or 0.0
        hours = (self.collector.clock.now_ms() - self.start_ms) / 3_600_000
        self.progress.update(self.fleet, completed=min(hours, self.hours), detail=f"{produced:,.0f} samples")
        self.stored_now = _stored_rows(self.pipeline_metrics, self.group_id, self.stored_now)
        stored = self.stored_before + self.stored_now
        self.progress.update(self.stored, total=max(produced, 1), completed=stored, detail=f"{stored:,.0f} stored")


def _stored_rows(url: str, group_id: str, default: float) -> float:
    """The rows a worker of ``group_id`` has stored, read off its /metrics as Prometheus would (``default``
    while it is not up, or when what answers there is some other process)."""
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            text = response.read().decode()
    except OSError:
        return default
    samples = [sample for family in text_string_to_metric_families(text) for sample in family.samples]
    if not any(sample.name == "fleetmeter_pipeline_info" and sample.labels.get("group_id") == group_id
               for sample in samples):
        return default
    return next((float(sample.value) for sample in samples
                 if sample.name == "fleetmeter_pipeline_rows_total" and sample.labels.get("outcome") == "stored"),
                default)


def _run_pipeline(config: Path, log_path: Path, collecting: threading.Thread, bars: _Bars) -> None:
    """Run ``fleetmeter pipeline run --until-idle`` in its own process, as in production, until one run's
    idle spell began after the collector had sent its last sample: then the warehouse holds every sample."""
    idle_s = float(yaml.safe_load(config.read_text())["idle_s"])
    command = [sys.executable, "-m", "fleetmeter", "pipeline", "run", "--config", str(config), "--until-idle"]
    collector_done: float | None = None
    with log_path.open("a") as log:
        while True:
            worker = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
            try:
                while worker.poll() is None:
                    bars.update()
                    if collector_done is None and not collecting.is_alive():
                        collector_done = time.monotonic()
                    time.sleep(0.25)
            finally:
                if worker.poll() is None:  # interrupted: SIGTERM makes the worker commit what it holds
                    worker.terminate()
                    worker.wait()
            bars.finished_run()
            if worker.returncode != 0:
                last = (log_path.read_text(errors="replace").strip().splitlines() or [""])[-1]
                typer.echo(f"fleetmeter demo: the pipeline worker exited with status {worker.returncode} ({last}); "
                           f"see {log_path}", err=True)
                raise typer.Exit(1)
            if collector_done is not None and time.monotonic() - idle_s > collector_done:
                return


def _prepare(directory: Path) -> None:
    """An empty demo directory: one left by an earlier demo is replaced, anything else is refused."""
    if directory.exists():
        if not (directory / MARKER).exists():
            raise typer.BadParameter(f"{directory} exists and is not a demo directory; pick another --directory")
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    (directory / MARKER).touch()


def _collector(broker: EmbeddedBroker, spool: Path, nodes: int, devices_per_node: int, hours: float,
               seconds: float, metrics_port: int) -> tuple[CollectorSettings, Any]:
    settings = CollectorSettings(
        cluster="demo",
        backends=["simulated"],
        run_for_s=seconds,
        interval_s=60.0,  # simulated seconds: a pace one Python process holds for 400 GPUs beside the pipeline
        scrapes_per_message=2,  # two minutes of a node's scrapes per message: fewer, fuller messages
        kafka={"bootstrap_servers": [broker.bootstrap_servers]},  # type: ignore[arg-type]
        spool={"dir": spool},  # type: ignore[arg-type]
        metrics={"address": "127.0.0.1", "port": metrics_port},  # type: ignore[arg-type]
        simulated={"nodes": nodes, "devices_per_node": devices_per_node,  # type: ignore[arg-type]
                   "speedup": hours * 3600 / seconds, "start": time.time() - hours * 3600},
    )
    return settings, open_backends(settings)


def _pipeline(broker: EmbeddedBroker, warehouse: Path, metrics_port: int) -> dict[str, Any]:
    """The worker's configuration file: validated here, so that a mistake fails before anything starts."""
    settings = {
        "kafka": {"bootstrap_servers": [broker.bootstrap_servers]},
        # The embedded broker holds a JoinGroup for the whole rebalance timeout: keep it short here.
        "consumer": {"group_id": _DEMO_GROUP, "max_poll_interval_ms": 3000, "session_timeout_ms": 3000,
                     "heartbeat_interval_ms": 500},
        "warehouse": {"uri": str(warehouse)},
        "flush": {"max_delay_s": 5.0},
        "metrics": {"address": "127.0.0.1", "port": metrics_port},
        "logging": {"level": "warning", "format": "console"},
        "idle_s": 3.0,
    }
    PipelineSettings.model_validate(settings)
    return settings


def _command() -> str:
    """How to call this fleetmeter again: its name if that is what PATH finds, else its path."""
    here = Path(sys.argv[0]).resolve()
    on_path = shutil.which("fleetmeter")
    return "fleetmeter" if on_path and Path(on_path).resolve() == here else os.path.relpath(here)


def _next_steps(config: Path, html: Path, focus: Path) -> None:
    cmd, python, util_1h = _command(), os.path.relpath(sys.executable), config.parent / "warehouse" / "util_1h"
    month = datetime.now(UTC).date().replace(day=1)
    next_month = (month + timedelta(days=32)).replace(day=1)
    console().print(f"""
[bold]The report as a page with charts:[/] {html.resolve().as_uri()}
[bold]The chargeback as a FinOps FOCUS dataset:[/] {focus} (a charge per tenant, job, model and day; idle time its own)
[bold]Go on exploring[/] (the warehouse stays in {config.parent}/):
  {cmd} query --config {config} --list
  {cmd} query --config {config} --file waste_by_job
  {cmd} query --config {config} --file rightsizing          (what right-sizing would save; inefficient_jobs too)
  {cmd} query --config {config} "SELECT tenant, sum(cost) AS cost FROM costs GROUP BY ALL ORDER BY cost DESC"
  {cmd} query --config {config} --file utilization_by_tenant_day --format csv > tenants.csv
  {cmd} sql --config {config}          (a DuckDB shell with the views loaded)
  {cmd} query --config {config} --as-of 3 "SELECT count(*) FROM samples"   (as of an older version)
  {python} -c "import polars as pl; print(pl.read_delta('{util_1h}'))"
      (the tables are Delta Lake tables: Spark, Trino, DuckDB and polars read them; docs/warehouse.md)
  {cmd} report --config {config} --since 7d --html report.html
  {cmd} export focus --config {config} --from {month} --to {next_month} --format parquet --output focus.parquet
  {cmd} collect --help · {cmd} pipeline run --help   (the two daemons, for real hardware and Kafka)
  {cmd} anomalies --config {config} --since 30d   (idle allocations, stragglers, ... with their cost)
  {cmd} plan --config {config}        (what to buy, per quarter: a MILP over the capacity plan)
  {cmd} plan --config {config} --move "research:NVIDIA H100 80GB HBM3:NVIDIA A100-SXM4-80GB"
  {cmd} query --config {config} "SELECT * FROM forecasts WHERE tenant = 'research' AND mean IS NOT NULL"
  {cmd} import prometheus --url http://prometheus:9090 --since 90d --dry-run
      (start with the history your dcgm-exporter left in Prometheus; docs/backfill.md)""")
