"""``fleetmeter anomalies``: run the detectors over the warehouse, keep their findings in the anomalies table
(ongoing anomalies updated, not repeated), and list them by cost impact; or, with ``--watch``, do so every few
minutes, sending new and resolved anomalies to an Alertmanager-compatible webhook and counting them on
``/metrics``."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, NoReturn

import duckdb
import polars as pl
import structlog
import typer
from deltalake.exceptions import DeltaError
from prometheus_client import CollectorRegistry, Counter, Gauge

from fleetmeter.anomalies import detectors
from fleetmeter.anomalies.ledger import OPEN, RESOLVED, merge
from fleetmeter.anomalies.notify import WebhookFailed, pending, send
from fleetmeter.common.listen import PortUnavailable, serve_metrics
from fleetmeter.common.signals import stop_on_signals
from fleetmeter.planning.store import replace_table
from fleetmeter.schemas.warehouse import ANOMALIES
from fleetmeter.sql.catalog import Catalog, WarehouseEmpty
from fleetmeter.sql.cli import Config, Since, Warehouse, analysis_settings, open_catalog
from fleetmeter.sql.output import Format, console, write
from fleetmeter.sql.since import parse_since

log = structlog.get_logger(__name__)
_ERRORS = (duckdb.Error, DeltaError, OSError, WarehouseEmpty)


#: What a round can fail at: reading or writing the warehouse, a detector's own bug, the webhook.
STEPS = ("warehouse", "detector", "webhook")


class Metrics:
    """The watcher's /metrics, every series there from the start (at 0): an alert on its increase can fire on
    the first failure."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.events = Counter("fleetmeter_anomalies_events", "Anomaly events sent to the webhook.",
                              ["kind", "status"], registry=self.registry)
        self.open = Gauge("fleetmeter_anomalies_open", "Open anomalies, by kind.", ["kind"], registry=self.registry)
        self.failures = Counter("fleetmeter_anomalies_round_failures", "Rounds that failed, by step.",
                                ["step"], registry=self.registry)
        for kind in detectors.KINDS:
            self.open.labels(kind).set(0)
            for status in (OPEN, RESOLVED):
                self.events.labels(kind, status)
        for step in STEPS:
            self.failures.labels(step)


def anomalies(
    warehouse: Warehouse = None,
    config: Config = None,
    since: Since = "7d",
    kind: Annotated[list[str] | None, typer.Option(help=f"Only these kinds: {', '.join(detectors.KINDS)}.")] = None,
    format: Annotated[Format, typer.Option(help="Output format (table, csv, json).")] = Format.table,
    limit: Annotated[int, typer.Option(help="Rows shown in --format table.")] = 50,
    watch: Annotated[bool, typer.Option("--watch", help="Evaluate every --every seconds until stopped.")] = False,
    every: Annotated[float, typer.Option(help="With --watch: seconds between rounds.", min=10, max=86_400)] = 300.0,
    webhook: Annotated[str | None, typer.Option(help="Send new and resolved anomalies here (Alertmanager's "
                                                     "webhook format).",
                                                envvar="FLEETMETER_ANOMALIES_WEBHOOK")] = None,
    metrics_port: Annotated[int | None, typer.Option(help="With --watch: serve /metrics here.",
                                                     min=1, max=65535)] = None,
    metrics_address: Annotated[str, typer.Option(help="With --watch: the address /metrics listens on (0.0.0.0 "
                                                      "in a container).")] = "127.0.0.1",
) -> None:
    """Look for idle allocations, stragglers, regressions, sick hardware and usage spikes since --since; store
    what is found in the anomalies table (view `anomalies`); list the open and resolved anomalies, the costliest
    first."""
    kinds = kind or list(detectors.KINDS)
    unknown = sorted(set(kinds) - set(detectors.KINDS))
    if unknown or format is Format.parquet:
        _fail(f"unknown kind(s) {unknown}: {', '.join(detectors.KINDS)}" if unknown
              else "--format parquet: query the view instead (fleetmeter query --format parquet --output ...)")
    metrics = Metrics()
    if not watch:
        catalog = open_catalog("anomalies", warehouse, config, since)
        try:
            outcome = evaluate(catalog, kinds, webhook, metrics)
        except (*_ERRORS, NoHourlyData) as exc:
            _fail(str(exc))
        _show(outcome.table, kinds, outcome.findings, catalog.settings.currency, format, limit)
        if outcome.webhook_error is not None:
            typer.echo(f"fleetmeter anomalies: {outcome.webhook_error}; the events are sent again next run", err=True)
            raise typer.Exit(1)
        return
    settings = analysis_settings("anomalies", warehouse, config)  # the warehouse may be empty yet: rounds retry
    if metrics_port is not None:
        try:
            serve_metrics(metrics.registry, metrics_address, metrics_port, "--metrics-port")
        except PortUnavailable as exc:
            _fail(str(exc))
    stopping = threading.Event()
    stop_on_signals(stopping)
    while not stopping.is_set():
        try:
            outcome = evaluate(Catalog.open(settings, parse_since(since)), kinds, webhook, metrics)
            log.info("anomalies evaluated", findings=outcome.findings,
                     open=outcome.table.filter(pl.col("status") == "open").height)
        except (*_ERRORS, NoHourlyData) as exc:  # a round that fails is tried again at the next: never stop watching
            metrics.failures.labels("warehouse").inc()
            log.warning("anomaly round failed", error=str(exc))
        except Exception:  # a detector's bug must not end the watch either: counted, logged, tried again
            metrics.failures.labels("detector").inc()
            log.exception("anomaly round failed unexpectedly")
        stopping.wait(every)


class NoHourlyData(Exception):
    """The warehouse holds no hourly rollups yet."""


@dataclass(frozen=True)
class Round:
    table: pl.DataFrame  # the anomalies table as stored
    findings: int  # what the detectors found this round
    webhook_error: str | None  # the receiver refused the events (kept pending)


def evaluate(catalog: Catalog, kinds: list[str], webhook: str | None, metrics: Metrics) -> Round:
    """One round: detect, merge into the stored anomalies, send what the webhook has not accepted yet, store."""
    connection = catalog.connect()
    latest = detectors.last_hour(connection)
    if latest is None:
        raise NoHourlyData("the warehouse holds no hourly rollups")
    findings = [finding for name in kinds
                for finding in detectors.DETECTORS[name](connection, catalog.settings.anomalies, latest)]
    stored = pl.DataFrame(pl.from_arrow(connection.sql("SELECT * FROM anomalies").to_arrow_table()))
    table = merge(stored, findings, datetime.now(UTC))
    refused = None
    if webhook is not None:
        events = pending(table)
        try:
            send(webhook, events, catalog.settings.currency)
        except WebhookFailed as exc:  # kept pending: sent again at the next round
            refused = str(exc)
            metrics.failures.labels("webhook").inc()
            log.warning("webhook refused the anomaly events; they are sent again next round", error=refused)
        else:
            sent = set(events["id"]) if not events.is_empty() else set()
            table = table.with_columns(notified=pl.when(pl.col("id").is_in(list(sent))).then(pl.col("status"))
                                       .otherwise(pl.col("notified")))
            for row in events.iter_rows(named=True):
                metrics.events.labels(row["kind"], row["status"]).inc()
    for name in detectors.KINDS:  # the merged table always has the catalogue's columns, rows or not
        metrics.open.labels(name).set(table.filter((pl.col("kind") == name) & (pl.col("status") == "open")).height)
    replace_table(catalog.settings, ANOMALIES, table, datetime.now(UTC))
    return Round(table, len(findings), refused)


def _show(table: pl.DataFrame, kinds: list[str], findings: int, currency: str, format: Format, limit: int) -> None:
    shown = table.filter(pl.col("kind").is_in(kinds)).sort("status", pl.col("cost_impact").fill_null(-1.0),
                                                            descending=[False, True])
    if format is Format.table:
        opened = shown.filter(pl.col("status") == "open").height
        console().print(f"{findings} finding(s); {opened} open anomalies, {shown.height - opened} resolved "
                        f"(costs in {currency})")
    write(shown.drop("id", "first_detected", "last_detected", "notified").to_arrow(), format, None, limit)


def _fail(problem: str) -> NoReturn:
    typer.echo(f"fleetmeter anomalies: {problem}", err=True)
    raise typer.Exit(2)
