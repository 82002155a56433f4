"""Commit latency with history: does a flush take longer once the warehouse holds weeks of data?

A flush appends (samples, rollup and job partials; nothing stored is rewritten) and reads back only the
current hour's sample keys, for deduplication. What history can cost it is in the Delta tables themselves:
the files of each table's snapshot, which every commit and the keys' file pruning go through, the
application transactions and the log. So the same flushes are timed twice: on an empty warehouse (day one)
and on one whose every table holds ``days`` days before them.

The flush timed is the worker's ``PartitionWriter.flush`` of one scrape of ``devices`` GPUs (8 per node, one
message per node, added beforehand): checks, deduplication, rollups and one Delta commit per table. Each
writer's first flush, which loads the hour's stored keys and warms polars, is not timed.

The history is written directly (30 days of 10,000 devices at 10 s would take the worker hours here):

- one day of each table, made with the pipeline's own rollup code from one scrape an hour of the fleet (the
  128-GPU template copied per device group), appended as one commit per table and day with
  ``DeltaWarehouse.append`` (``util_1d``: every day in one commit). Every hourly partition of ``util_1m``,
  daily one of ``samples``, ``util_1h`` and ``job_devices`` and monthly one of ``util_1d`` then holds one
  file, as after compaction. The rows are thinned (one scrape an hour, not 360): no flush reads a past
  day's rows, and the files and partitions a commit goes through do not depend on the rows in them.
- then ``log_commits`` commits of no rows per table, each recording the application transaction of one of
  ``OTHER_PARTITIONS`` Kafka partitions (other workers'), as their flushes do. With the defaults (30 days,
  120 such commits) each table's log has then passed a checkpoint (delta-rs writes one every 100 commits)
  and holds a tail of JSON commits after it, as a live table's does, and its snapshot the transactions of
  a live warehouse.

Not simulated: the tombstones of the files that compaction replaced, which checkpoints keep until the
vacuum's retention (a week by default). Beside the flushes, the time of a checkpoint of ``samples`` is
reported: every 100th commit of a table writes one, so about one flush in twenty pays for one, and its
cost grows with the table's files.
"""

from __future__ import annotations

import itertools
import statistics
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

import polars as pl
from kafka.consumer.fetcher import ConsumerRecord

from bench.fleet import DEVICES_PER_NODE, TEMPLATE_NODES, messages, replicate, template_rows
from bench.ingest import no_fence, recent_start, records, rows_of, writer_for
from bench.storage import stored
from fleetmeter.pipeline import rollups
from fleetmeter.pipeline.settings import ConsumerSettings
from fleetmeter.pipeline.warehouse.delta import DeltaWarehouse
from fleetmeter.schemas.warehouse import (
    DEVICE_1H,
    JOB_DEVICES,
    SAMPLES,
    TABLES,
    UTIL_1D,
    UTIL_1H,
    UTIL_1M,
    WINDOW_KEYS,
    app_id,
)

DAY = timedelta(days=1)
OTHER_PARTITIONS = 16  # Kafka partitions of other workers, whose transactions the log records
#: Each table's time columns, shifted to copy a day.
TIME_COLUMNS = {SAMPLES.name: ("ts",), UTIL_1M.name: ("window_start",), UTIL_1H.name: ("window_start",),
                DEVICE_1H.name: ("window_start",),
                JOB_DEVICES.name: ("first_seen", "last_seen")}


@dataclass(frozen=True)
class Latency:
    warehouse: str  # what it held before the flushes
    files: int  # data files in its tables, after the flushes
    samples_version: int  # commits of the samples table
    flush_s: list[float]
    checkpoint_s: float  # one checkpoint of the samples table, after the flushes

    @property
    def median_s(self) -> float:
        return statistics.median(self.flush_s)


def measure(devices: int, days: int, flushes: int, log_commits: int) -> tuple[Latency, Latency]:
    """Day one, then ``days`` days of history: ``flushes`` timed flushes of one scrape each."""
    scrapes = rows_of(devices, flushes + 1)
    fetched = records(messages(scrapes, 1))
    per_scrape = len(fetched) // (flushes + 1)
    polls = [fetched[start:start + per_scrape] for start in range(0, len(fetched), per_scrape)]
    with tempfile.TemporaryDirectory() as root:
        day_one = _timed(root, "day one (empty)", polls, scrapes.height)
    with tempfile.TemporaryDirectory() as root:
        history(root, devices, days, log_commits, recent_start(2))
        with_history = _timed(root, f"{days} days of history", polls, scrapes.height)
    return day_one, with_history


def _timed(root: str, label: str, polls: list[list[ConsumerRecord]], rows: int) -> Latency:
    writer = writer_for(root, rows)
    now_ms = int(time.time() * 1000)
    times = []
    for poll in polls:
        writer.add(poll, now_ms)
        started = time.perf_counter()
        writer.flush(no_fence)
        times.append(time.perf_counter() - started)
    started = time.perf_counter()
    writer.warehouse.tables[SAMPLES.name].create_checkpoint()
    checkpoint_s = time.perf_counter() - started
    files = sum(stored(root, table).files for table in TABLES)
    return Latency(label, files, writer.warehouse.tables[SAMPLES.name].version(), times[1:], checkpoint_s)


def history(root: str, devices: int, days: int, log_commits: int, today: datetime) -> None:
    """``days`` days before ``today``'s date in every table, then ``log_commits`` commits of no rows per table."""
    first_day = today.replace(hour=0, minute=0, second=0, microsecond=0) - days * DAY
    scrape = template_rows(1, 10.0, first_day)
    hourly = pl.concat([scrape.with_columns(pl.col("ts") + timedelta(hours=hour)) for hour in range(24)])
    samples = replicate(hourly, max(1, devices // (TEMPLATE_NODES * DEVICES_PER_NODE)))
    pieces = rollups.minute_pieces(samples)
    minutes = rollups.node_partials(pieces)
    one_day = {JOB_DEVICES.name: rollups.job_device_partials(samples),
               DEVICE_1H.name: rollups.device_hour_partials(pieces),
               UTIL_1H.name: rollups.merge(minutes, WINDOW_KEYS, "1h"), UTIL_1M.name: minutes, SAMPLES.name: samples}
    warehouse = DeltaWarehouse(root, {}, ConsumerSettings().group_id)
    writer, versions = app_id(warehouse.group, "bench.history", None, 0), itertools.count(1)
    for day in range(days):
        for table, frame in one_day.items():
            shifted = frame.with_columns(pl.col(column) + day * DAY for column in TIME_COLUMNS[table])
            warehouse.append(table, shifted, writer, next(versions))
    daily = rollups.merge(minutes, WINDOW_KEYS, "1d")
    all_days = pl.concat([daily.with_columns(pl.col("window_start") + day * DAY) for day in range(days)])
    warehouse.append(UTIL_1D.name, all_days, writer, next(versions))  # a file per month, as after compaction
    empty = {name: pl.DataFrame(pl.from_arrow(table.schema.empty_table())) for name, table in TABLES.items()}
    for commit in range(log_commits):
        other = app_id(warehouse.group, "bench", None, 1 + commit % OTHER_PARTITIONS)
        for name, frame in empty.items():
            warehouse.append(name, frame, other, commit)
