"""``python -m bench`` (``./dev bench``): every benchmark, each beside its baseline; figures into docs/benchmarks.md.

The worker's processing rates run on one core (the process pinned to CPU 0, polars and Arrow on one
thread, the broker pinned to CPU 1); the other benchmarks run unpinned. Sizes are options, so that the
suite finishes in about a quarter of an hour on a 2-core machine by default and can be run larger.
"""

from __future__ import annotations

import os

os.environ.setdefault("POLARS_MAX_THREADS", "1")  # before polars is imported: "per worker, one core"

import contextlib
import statistics
import tempfile
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, TypeVar

import pyarrow as pa
import typer
from rich.console import Console

from bench import anomalies, api, collector, commits, freshness, imports, ingest, planning, queries, storage
from bench.fleet import DEVICES_PER_NODE, messages
from bench.report import machine, splice, table
from fleetmeter.common import logs
from fleetmeter.common.settings import LoggingSettings
from fleetmeter.demo.broker import EmbeddedBroker

ROWS_PER_MESSAGE = {1: "8 (one scrape)", 8: "64 (8 scrapes)", 64: "512 (64 scrapes)"}
console = Console(stderr=True)
T = TypeVar("T")


def sizes(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


@contextlib.contextmanager
def one_core(broker: EmbeddedBroker) -> Iterator[None]:
    everything = os.sched_getaffinity(0)
    os.sched_setaffinity(broker.pid, {max(everything)})
    os.sched_setaffinity(0, {min(everything)})
    pa.set_cpu_count(1)
    try:
        yield
    finally:
        os.sched_setaffinity(0, everything)
        os.sched_setaffinity(broker.pid, everything)
        pa.set_cpu_count(len(everything))


def median_of(runs: Callable[[], T], repeats: int, key: Callable[[T], float]) -> T:
    results = sorted((runs() for _ in range(repeats)), key=key)
    return results[len(results) // 2]


def step(title: str, run: Callable[[], T]) -> T:
    console.log(f"[bold]{title}[/]")
    return run()


def ingest_section(broker: EmbeddedBroker, devices: list[int], scrapes: int, repeats: int) -> str:
    processing, through_broker, baseline = [], [], []
    profile_text = ""
    with one_core(broker):
        for count in devices:
            rows = ingest.rows_of(count, scrapes)
            for per_message, label in ROWS_PER_MESSAGE.items():
                batch = messages(rows, per_message)
                result = step(f"processing: {count} devices, {label} rows/message",
                              lambda b=batch: median_of(lambda: ingest.processing_rate(b), repeats,
                                                        lambda p: p.steady_rows_per_s))
                flushing = result.flushing
                processing.append((count, label, flushing.rows, flushing.rows_per_s, flushing.messages_per_s,
                                   result.compaction.rows_per_s, result.steady_rows_per_s))
                if count == devices[-1]:
                    topic = f"bench.ingest.{per_message}"
                    rate = step(f"through the broker: {label} rows/message",
                                lambda b=batch, t=topic: ingest.broker_rate(broker, b, t))
                    through_broker.append((label, rate.rows_per_s, rate.messages_per_s, flushing.rows_per_s,
                                           rate.cores))
                if count == devices[len(devices) // 2] and per_message == 8:
                    profile_text = step("profile", lambda b=batch: ingest.profile(b))
            payloads = ingest.json_messages(rows)
            json_rate = step(f"JSON baseline, processing: {count} devices",
                             lambda p=payloads: median_of(lambda: ingest.baseline_processing_rate(p), repeats,
                                                          lambda r: r.rows_per_s))
            json_broker = (step("JSON baseline through the broker",
                                lambda p=payloads: ingest.baseline_broker_rate(broker, p, "bench.json"))
                           if count == devices[-1] else None)
            baseline.append((count, json_rate.rows_per_s, json_broker.rows_per_s if json_broker else ""))
    steady = {row[1]: row[6] for row in processing if row[0] == devices[-1]}
    broker_rates = {row[0]: row[1] for row in through_broker}
    json_processing, json_broker_rate = baseline[-1][1], baseline[-1][2]
    ratios = [(label, steady[label] / json_processing,
               broker_rates[label] / json_broker_rate if isinstance(json_broker_rate, float) else "")
              for label in ROWS_PER_MESSAGE.values()]
    return "\n\n".join([
        "### 1. Ingest throughput (one worker, one core)",
        f"Processing rate, messages already fetched, median of {repeats}. *Flush path*: decode, check, dedup, "
        "Delta appends to samples, rollups and job_devices, in about 8 flushes. *Compaction*: each Delta "
        "partition's appends compacted once (rollup and job partials merged, the samples' day rewritten). "
        "*Steady state*: both, every row flushed once and compacted once:",
        table(["devices", "rows/message", "samples", "flush path samples/s", "messages/s", "compaction samples/s",
               "steady state samples/s"], processing),
        f"Through the embedded broker ({devices[-1]} devices, the same 8 flushes; the worker pinned to one "
        "core, the broker to the other; a worker compacts only when idle, so no compaction here):",
        table(["rows/message", "samples/s", "messages/s", "flush path alone, samples/s", "worker cores"],
              through_broker),
        "Baseline: one JSON object per sample, `json.loads` and per-minute sums in dicts (no validation, dedup, "
        "histograms, idle time or raw storage):",
        table(["devices", "processing samples/s", "through the broker samples/s"], baseline),
        f"Ratio to the baseline at {devices[-1]} devices (processing: steady state; broker: flush path through "
        "the broker against the baseline through the broker):",
        table(["rows/message", "processing", "through the broker"], ratios),
        "Where the time goes (cProfile of flush path and compaction, 64 rows/message, own time):",
        f"```\n{profile_text}\n```",
    ])


def freshness_section(broker: EmbeddedBroker, devices: list[int], seconds: float) -> str:
    rows = []
    for count in devices:
        result = step(f"freshness: {count} devices for {seconds:.0f} s",
                      lambda c=count: freshness.measure(broker, c, seconds))
        rows.append((result.devices, result.samples, result.p50_s, result.p99_s, result.max_s,
                     result.worker_cores, result.visible_in_util_1m == result.samples))
    return "\n\n".join([
        "### 2. End-to-end freshness (10 s scrapes, 4 partitions, one worker with the default 30 s flush)",
        table(["devices", "samples", "p50 delay s", "p99 delay s", "max s", "worker cores",
               "all samples in util_1m"], rows),
    ])


def collector_section(broker: EmbeddedBroker, repeats: int) -> str:
    cycles = [step("collector cycle", lambda: collector.cycle_cost(2000, 8, broker)) for _ in range(repeats)]
    memory = step("collector memory", lambda: collector.daemon_memory(broker))
    return "\n\n".join([
        "### 3. Collector overhead (one 8-GPU node, simulated backend)",
        table(["CPU per scrape-encode-send cycle, ms (backend read excluded)", "simulated backend read, ms",
               "peak RSS of `fleetmeter collect`, MB", "RSS at the end, MB"],
              [(statistics.median(c for c, _ in cycles), statistics.median(r for _, r in cycles),
                memory.peak_rss_mb, memory.final_rss_mb)]),
    ])


def query_section(devices: list[int], days: int, sample_days: int, repeats: int) -> str:
    rows, built = [], []
    end = queries.midnight(datetime.now(UTC))
    for count in devices:
        with tempfile.TemporaryDirectory() as root:
            warehouse = step(f"warehouse: {count} devices, {days} days",
                             lambda c=count, r=root: queries.build(r, c, days, sample_days, end))
            built.append((count, warehouse.rows_by_table.get("util_1h", 0), warehouse.rows_by_table.get("util_1d", 0),
                          warehouse.rows_by_table.get("samples", 0), warehouse.build_s))
            for result in step("queries", lambda r=root: queries.measure(r, end - days * queries.DAY,
                                                                         end - sample_days * queries.DAY, repeats)):
                rows.append((count, result.name, result.rollups_ms, result.rollups_recent_ms, result.samples_ms,
                             result.ratio))
    return "\n\n".join([
        f"### 4. Query latency in DuckDB ({days} days of rollups; samples for the last {sample_days})",
        table(["devices", "util_1h rows", "util_1d rows", "samples rows", "build s"], built),
        f"Median of {repeats} runs, ms. The samples column answers the same question over the last {sample_days} "
        "day(s) (answers compared equal first):",
        table(["devices", "query", f"rollups, {days} days", f"rollups, {sample_days} day(s)",
               f"samples, {sample_days} day(s)", "samples / rollups"], rows),
    ])


def storage_section() -> str:
    footprints = [step(f"storage: {nodes * 8} devices, 1 hour", lambda n=nodes: storage.footprint(n, 1.0))
                  for nodes in (8, 32)]
    return "\n\n".join([
        "### 5. Storage (bytes per device-sample, after compaction; 10 s samples, one hour)",
        "Data files of each table's current Delta version (not the Delta log, nor files awaiting vacuum):",
        table(["devices", "device-samples", *storage.MEASURED],
              [(f.devices, f.samples, *[f.per_sample(t) for t in storage.MEASURED]) for f in footprints]),
    ])


def commits_section(devices: int, days: int, flushes: int, log_commits: int) -> str:
    day_one, history = step(f"commit latency: {devices} devices, day one and {days} days of history",
                            lambda: commits.measure(devices, days, flushes, log_commits))
    rows = [(latency.warehouse, latency.files, latency.samples_version, latency.median_s * 1000,
             max(latency.flush_s) * 1000, latency.checkpoint_s * 1000) for latency in (day_one, history)]
    return "\n\n".join([
        f"### 6. Commit latency with history (one flush of one scrape of {devices} devices)",
        f"`PartitionWriter.flush` of one scrape ({devices // DEVICES_PER_NODE} messages of {DEVICES_PER_NODE} rows), "
        f"{flushes} flushes timed after an untimed first one. The history: {days} days in every table, one commit "
        f"per table and day, then {log_commits} transaction-only commits per table (see `bench/commits.py`). "
        "Every 100th commit of a table also writes a checkpoint, timed apart:",
        table(["warehouse before", "data files", "samples commits", "median flush ms", "max flush ms",
               "samples checkpoint ms"], rows),
        f"Median with history / day one: {history.median_s / day_one.median_s:.2f} (target: at most 1.25).",
    ])


def import_section(nodes: list[int], hours: float) -> str:
    rates = [step(f"import from Prometheus: {count * imports.GPUS} GPUs, {hours:g} h",
                  lambda c=count: imports.measure(c, hours)) for count in nodes]
    return "\n\n".join([
        "### 7. Import from Prometheus (`fleetmeter import prometheus`, dcgm-exporter history, 30 s steps)",
        "A local Prometheus serving a TSDB that promtool wrote (see `bench/imports.py`); the import into an empty "
        "local warehouse with the default chunks. *Prometheus* is the time spent waiting for and parsing its "
        "answers; the rest is rows, checks, rollups and Delta commits:",
        table(["GPUs", "hours", "points read", "rows stored", "requests", "import s", "Prometheus s",
               "rows/s", "points/s", "TSDB build s"],
              [(rate.devices, rate.hours, rate.points, rate.rows, rate.requests, rate.wall_s, rate.prometheus_s,
                rate.rows_per_s, rate.points_per_s, rate.build_s) for rate in rates]),
    ])


def planning_section(series: int, days: int, models: int, quarters: int) -> str:
    fitted = step(f"forecasts: {series} series of {days} days", lambda: planning.forecast_run(series, days))
    solved = step(f"procurement: {models} models x {quarters} quarters", lambda: planning.plan_run(models, quarters))
    return "\n\n".join([
        "### 8. Planning (one core)",
        "Forecasts with the default configuration (AutoETS and MSTL backtested on 3 origins against "
        "seasonal-naive, then 90 days with intervals), on generated series with trend, weekly season and noise; "
        "the procurement MILP (HiGHS) over 4 clusters with lead times, minimum orders, a budget and site power:",
        table(["series", "days each", "seconds", "ms per series", "methods chosen", "mean backtest coverage of 80 %"],
              [(fitted.series, fitted.days, fitted.seconds, fitted.seconds / fitted.series * 1000,
                ", ".join(f"{name} {count}" for name, count in sorted(fitted.methods.items())), fitted.coverage_80)]),
        table(["models", "quarters", "clusters", "variables", "seconds", "feasible", "devices bought"],
              [(solved.models, solved.quarters, solved.clusters, solved.variables, solved.seconds,
                "yes" if solved.feasible else "no", solved.devices)]),
    ])


def anomalies_section(devices: int, days: int, plant: int) -> str:
    result = step(f"anomalies: {devices} devices, {days} days, {plant} planted of each kind",
                  lambda: anomalies.run(devices, days, plant))
    rows = [(kind, figures.planted, figures.found, figures.precision, figures.recall, result.false_alarms(kind),
             result.false_alarms(kind) / result.device_days * 1000, result.detector_s[kind])
            for kind, figures in result.scores.items()]
    return "\n\n".join([
        "### 9. Anomaly detection and efficiency (one core)",
        f"`fleetmeter anomalies` over {days} days of {devices:,} GPUs ({result.device_days:,} device-days) of the "
        f"planted fleet (`fleetmeter/demo/planted.py`), its tables written with the pipeline's rollup code in "
        f"{result.build_s:.0f} s (see `bench/anomalies.py`). Each detector timed on its own, then a whole round "
        f"(detectors, ledger, the table's commit) in {result.round_s:.1f} s. False alarms: findings that are no "
        "planted anomaly:",
        table(["kind", "planted", "found", "precision", "recall", "false alarms", "per 1,000 device-days",
               "detector s"], rows),
        "The efficiency queries on the same warehouse and core (docs/efficiency.md), every job of the 30 days:",
        table(["query", "seconds", "rows"], [(name, seconds, count)
                                             for name, (seconds, count) in result.efficiency.items()]),
    ])


def api_section(devices: int, days: int, clients: int, seconds: float) -> str:
    load = step(f"api: {devices} devices, {days} days, {clients} clients for {seconds:g} s",
                lambda: api.run(devices, days, clients, seconds))
    rows = [("on" if latency.kept_answers else "off", latency.endpoint, latency.requests, latency.p50_ms,
             latency.p99_ms, latency.errors) for latency in load.latencies]
    return "\n\n".join([
        "### 10. The REST API's tenant endpoints under load",
        f"`fleetmeter serve` in a process of its own over {days} days of {devices:,} GPUs (the planted fleet, its "
        f"tables written in {load.build_s:.0f} s), {clients} clients on 127.0.0.1 (the same 2 cores) with their "
        f"tenants' tokens, each sending its next request when the last is answered, for {seconds:g} s, twice: "
        f"with the server's kept answers off (every request runs its query: {load.requests_per_s(False):.0f} "
        f"requests/s in all) and on ({load.requests_per_s(True):.0f} requests/s; see `bench/api.py`). Time to the "
        "whole answer, ms (target: p99 at most 100):",
        table(["kept answers", "endpoint", "requests", "p50 ms", "p99 ms", "errors"], rows),
    ])


def main(
    out: Annotated[Path, typer.Option(help="Markdown file whose results block is rewritten.")] = Path(
        "docs/benchmarks.md"),
    only: Annotated[str, typer.Option(
        help="Sections to run: ingest,freshness,collector,queries,storage,commits,imports,planning,anomalies,api.")] = (
        "ingest,freshness,collector,queries,storage,commits,imports,planning,anomalies,api"),
    ingest_devices: Annotated[str, typer.Option(help="Fleet sizes for ingest (multiples of 128).")] = "1024,2048,4096",
    ingest_scrapes: Annotated[int, typer.Option(help="10 s intervals of samples per ingest run.")] = 90,
    fresh_devices: Annotated[str, typer.Option(help="Fleet sizes for freshness.")] = "10240,30720,102400",
    fresh_seconds: Annotated[float, typer.Option(help="How long each live fleet runs.")] = 60.0,
    query_devices: Annotated[str, typer.Option(help="Fleet sizes for the query warehouse.")] = "1024,3072,10240",
    query_days: Annotated[int, typer.Option(help="Days of rollups in the query warehouse.")] = 30,
    sample_days: Annotated[int, typer.Option(help="Days of samples in it, for the comparison.")] = 1,
    commit_devices: Annotated[int, typer.Option(
        help="Devices in each timed flush (one scrape; a multiple of 128).", min=128)] = 10240,
    commit_days: Annotated[int, typer.Option(help="Days of history for the commit latency.", min=1)] = 30,
    commit_flushes: Annotated[int, typer.Option(help="Flushes timed on each warehouse.", min=1)] = 15,
    commit_log_commits: Annotated[int, typer.Option(
        help="Transaction-only commits per table after the history.", min=0)] = 120,
    import_nodes: Annotated[str, typer.Option(help="Nodes of 8 GPUs in the Prometheus import's history.")] = "4,16",
    import_hours: Annotated[float, typer.Option(help="Hours of history per import.", min=0.1)] = 12.0,
    forecast_series: Annotated[int, typer.Option(help="Daily series to forecast.", min=1)] = 1000,
    forecast_days: Annotated[int, typer.Option(help="Days of each series.", min=60)] = 365,
    plan_models: Annotated[int, typer.Option(help="Models in the procurement MILP.", min=1)] = 20,
    plan_quarters: Annotated[int, typer.Option(help="Quarters in the procurement MILP.", min=1)] = 8,
    anomaly_devices: Annotated[int, typer.Option(help="GPUs of the planted fleet (a multiple of 8).", min=64)] = 10240,
    anomaly_days: Annotated[int, typer.Option(help="Days of the planted fleet.", min=9)] = 30,
    anomaly_plant: Annotated[int, typer.Option(help="Anomalies planted of each kind.", min=1)] = 100,
    api_devices: Annotated[int, typer.Option(help="GPUs of the API's fleet (a multiple of 8).", min=64)] = 10240,
    api_days: Annotated[int, typer.Option(help="Days of the API's fleet.", min=9)] = 30,
    api_clients: Annotated[int, typer.Option(help="Concurrent API clients.", min=1)] = 20,
    api_seconds: Annotated[float, typer.Option(help="Seconds of load on the API.", min=1)] = 60.0,
    repeats: Annotated[int, typer.Option(help="Runs per figure; the median is reported.")] = 3,
) -> None:
    """Run the benchmarks and write their figures."""
    logs.configure(LoggingSettings(level="warning", format="console"))  # no log line per commit in the timings
    chosen = set(only.split(","))
    command = (f"`python -m bench --only {only} --ingest-devices {ingest_devices} --ingest-scrapes {ingest_scrapes} "
               f"--fresh-devices {fresh_devices} --fresh-seconds {fresh_seconds:g} --query-devices {query_devices} "
               f"--query-days {query_days} --sample-days {sample_days} --commit-devices {commit_devices} "
               f"--commit-days {commit_days} --commit-flushes {commit_flushes} "
               f"--commit-log-commits {commit_log_commits} --import-nodes {import_nodes} "
               f"--import-hours {import_hours:g} --forecast-series {forecast_series} --forecast-days {forecast_days} "
               f"--plan-models {plan_models} --plan-quarters {plan_quarters} --anomaly-devices {anomaly_devices} "
               f"--anomaly-days {anomaly_days} --anomaly-plant {anomaly_plant} --api-devices {api_devices} "
               f"--api-days {api_days} --api-clients {api_clients} --api-seconds {api_seconds:g} --repeats {repeats}`")
    sections: list[str] = []
    with EmbeddedBroker() as broker:
        if "ingest" in chosen:
            sections.append(ingest_section(broker, sizes(ingest_devices), ingest_scrapes, repeats))
        if "freshness" in chosen:
            sections.append(freshness_section(broker, sizes(fresh_devices), fresh_seconds))
        if "collector" in chosen:
            sections.append(collector_section(broker, repeats))
    if "queries" in chosen:
        sections.append(query_section(sizes(query_devices), query_days, sample_days, repeats))
    if "storage" in chosen:
        sections.append(storage_section())
    if "commits" in chosen:
        sections.append(commits_section(commit_devices, commit_days, commit_flushes, commit_log_commits))
    if "imports" in chosen:
        sections.append(import_section(sizes(import_nodes), import_hours))
    if "planning" in chosen:
        sections.append(planning_section(forecast_series, forecast_days, plan_models, plan_quarters))
    if "anomalies" in chosen:
        sections.append(anomalies_section(anomaly_devices, anomaly_days, anomaly_plant))
    if "api" in chosen:
        sections.append(api_section(api_devices, api_days, api_clients, api_seconds))
    splice(out, [f"{section}\n\nMeasured {machine()} by {command}." for section in sections])
    console.log(f"figures written to {out}")


if __name__ == "__main__":
    typer.run(main)
