"""Pipeline ingest: how many device-samples a worker turns into Delta commits of samples and rollups per second.

Two rates, as the issue asks: the worker's own processing rate (messages already fetched, so only
decode -> validate -> dedup -> Delta appends -> compaction is timed) and the rate through the broker
(a real ``PipelineWorker`` consuming a topic filled beforehand). Beside them, the baseline: the same rows
as one JSON object per sample, aggregated per minute and key in plain Python dicts.
"""

from __future__ import annotations

import cProfile
import io
import json
import pstats
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord

from bench.fleet import Message, replicate, template_rows
from fleetmeter.demo.broker import EmbeddedBroker
from fleetmeter.pipeline.compaction import compact_next
from fleetmeter.pipeline.metrics import PipelineMetrics
from fleetmeter.pipeline.partition import PartitionWriter
from fleetmeter.pipeline.settings import PipelineSettings
from fleetmeter.pipeline.warehouse.delta import DeltaWarehouse
from fleetmeter.pipeline.worker import PipelineWorker

POLL = 2000  # records per poll at most: the worker's default max_poll_records
POLL_BYTES = 1 << 20  # and about this many bytes: kafka-python's default max_partition_fetch_bytes
ROOT = f"{Path(__file__).parent.parent}/"  # of the checkout, left out of the profile's paths


@dataclass(frozen=True)
class Rate:
    rows: int
    messages: int
    wall_s: float
    cpu_s: float

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.wall_s

    @property
    def messages_per_s(self) -> float:
        return self.messages / self.wall_s

    @property
    def cores(self) -> float:
        return self.cpu_s / self.wall_s


def recent_start(hours: float) -> datetime:
    """An hour boundary ``hours`` ago: rows that the worker's lateness and future checks accept."""
    return datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=hours)


def records(batch: Sequence[Message], topic: str = "bench", partition: int = 0) -> list[ConsumerRecord]:
    now_ms = int(time.time() * 1000)
    return [ConsumerRecord(topic=topic, partition=partition, leader_epoch=-1, offset=offset, timestamp=now_ms,
                           timestamp_type=0, key=m.key, value=m.payload, headers=[], checksum=None,
                           serialized_key_size=len(m.key), serialized_value_size=len(m.payload),
                           serialized_header_size=0)
            for offset, m in enumerate(batch)]


#: Flushes per run: a worker compacts a Delta partition after ``compact_min_files`` (8 by default) appends to
#: it, so that every sample is written twice (flush, then the rewrite of its closed day) as in steady state.
FLUSHES = 8


def writer_for(warehouse: str, rows: int) -> PartitionWriter:
    """A worker's writer of partition 0 of topic ``bench``. Every Delta partition appended to twice or more is
    due for compaction: polls do not split a run into exactly ``FLUSHES`` flushes, and a partition that took
    one fewer must still be compacted once after the run."""
    settings = settings_for(warehouse, rows, compact_min_files=2)
    return PartitionWriter(DeltaWarehouse(warehouse, {}, settings.consumer.group_id), "bench", 0, None, settings,
                           PipelineMetrics())


def process(fetched: list[ConsumerRecord], writer: PartitionWriter) -> PartitionWriter:
    """What the worker does with the fetched records: add each poll and flush when due, about ``FLUSHES``
    times a run. Returns the writer, whose partitions are then due for compaction."""
    now_ms = int(time.time() * 1000)
    for poll in polls(fetched):
        writer.add(poll, now_ms)
        if writer.due():
            writer.flush(no_fence)
    writer.flush(no_fence)
    return writer


def compact(writer: PartitionWriter) -> None:
    """Compact every Delta partition the run appended to, once each, as a worker does between polls, the
    samples' day included (a worker rewrites it once the day is closed: here, as if it were)."""
    closed = datetime.now(UTC) + timedelta(days=2)
    while compact_next(writer.warehouse, writer.settings.warehouse, writer.metrics, closed):
        pass


def settings_for(warehouse: str, rows: int, compact_min_files: int = FLUSHES, **sections: Any) -> PipelineSettings:
    """Default settings but for a flush every ``rows / FLUSHES`` rows."""
    return PipelineSettings(warehouse={"uri": warehouse, "compact_min_files": compact_min_files},  # type: ignore[arg-type]
                            flush={"max_rows": rows // FLUSHES + 1}, **sections)  # type: ignore[arg-type]


def polls(fetched: list[ConsumerRecord]) -> list[list[ConsumerRecord]]:
    """The records as a consumer's polls return them: up to ``POLL`` records or about ``POLL_BYTES``."""
    out: list[list[ConsumerRecord]] = [[]]
    size = 0
    for record in fetched:
        if len(out[-1]) == POLL or size >= POLL_BYTES:
            out.append([])
            size = 0
        out[-1].append(record)
        size += len(record.value)
    return out


def no_fence(next_offset: int) -> None:
    """A partition that no other worker can take (there is no consumer group here)."""


def timed(run: Callable[[], Any], rows: int, message_count: int) -> Rate:
    wall, cpu = time.perf_counter(), time.process_time()
    run()
    return Rate(rows, message_count, time.perf_counter() - wall, time.process_time() - cpu)


@dataclass(frozen=True)
class Processing:
    flushing: Rate  # decode, check, dedup, appends to samples, rollups and job_devices, FLUSHES flushes
    compaction: Rate  # each partition's FLUSHES appends: rollup partials merged, the samples' day rewritten

    @property
    def steady_rows_per_s(self) -> float:
        """Every row flushed once and compacted once, as in a steady state with one compaction tier."""
        return self.flushing.rows / (self.flushing.wall_s + self.compaction.wall_s)


def processing_rate(batch: list[Message]) -> Processing:
    fetched = records(batch)
    rows = sum(m.rows for m in batch)
    with tempfile.TemporaryDirectory() as warehouse:
        writer = writer_for(warehouse, rows)  # opens (creates) the tables, as a worker does once when it starts
        flushing = timed(lambda: process(fetched, writer), rows, len(batch))
        return Processing(flushing, timed(lambda: compact(writer), rows, len(batch)))


def profile(batch: list[Message], top: int = 14) -> str:
    """The worker's processing of ``batch`` under cProfile: the functions with the most own time."""
    fetched = records(batch)
    profiler = cProfile.Profile()
    with tempfile.TemporaryDirectory() as warehouse:
        writer = writer_for(warehouse, sum(m.rows for m in batch))
        profiler.runcall(lambda: compact(process(fetched, writer)))
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(top)
    lines = out.getvalue().splitlines()
    start = next(i for i, line in enumerate(lines) if line.lstrip().startswith("ncalls"))
    return "\n".join(line.replace(ROOT, "") for line in lines[start:start + top + 1])


# -- through the broker -----------------------------------------------------------------------------

def produce(broker: EmbeddedBroker, topic: str, batch: Sequence[tuple[bytes, bytes]]) -> None:
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap_servers, linger_ms=20, batch_size=1 << 20,
                             max_request_size=16 << 20, compression_type="zstd", acks=1)
    for key, value in batch:
        producer.send(topic, key=key, value=value)
    producer.flush()
    producer.close()


def broker_rate(broker: EmbeddedBroker, batch: list[Message], topic: str) -> Rate:
    """A real worker drains a topic that holds ``batch``: from its assignment to the last commit (flushing
    as often as :func:`process` does; it compacts only when idle, so compaction is not in this figure)."""
    broker.create_topic(topic, 1)
    produce(broker, topic, [(m.key, m.payload) for m in batch])
    with tempfile.TemporaryDirectory() as warehouse:
        settings = settings_for(
            warehouse, sum(m.rows for m in batch),
            kafka={"bootstrap_servers": [broker.bootstrap_servers], "topic": topic},
            consumer={"group_id": topic, "max_poll_interval_ms": 3000, "session_timeout_ms": 6000,
                      "heartbeat_interval_ms": 1000},
        )
        worker = PipelineWorker(settings)
        thread = threading.Thread(target=worker.run, daemon=True)
        thread.start()
        while not worker.writers:
            time.sleep(0.001)
        wall, cpu = time.perf_counter(), time.process_time()
        writer = next(iter(worker.writers.values()))
        deadline = time.monotonic() + 600
        while max(writer.next_offset or 0, writer.pending.last_offset + 1) < len(batch):  # read, or committed
            if time.monotonic() > deadline:
                raise RuntimeError(f"the worker read {writer.pending.last_offset + 1} of {len(batch)} messages")
            time.sleep(0.002)
        worker.stopping.set()  # the worker commits what it holds as it stops, as a flush at the end would
        thread.join()
        rate = Rate(sum(m.rows for m in batch), len(batch), time.perf_counter() - wall, time.process_time() - cpu)
        if writer.next_offset != len(batch):
            raise RuntimeError(f"the worker committed up to offset {writer.next_offset} of {len(batch)}")
    return rate


# -- the baseline -----------------------------------------------------------------------------------

def json_messages(rows: pl.DataFrame) -> list[tuple[bytes, bytes]]:
    """One JSON object per sample, keyed by node, as a hand-rolled collector would send them."""
    plain = rows.with_columns(pl.col("ts").dt.epoch("ms")).drop("extras", "processes", "xid_errors")
    return [(row["node"].encode(), json.dumps(row).encode()) for row in plain.iter_rows(named=True)]


def aggregate_json(payloads: Sequence[bytes]) -> dict[tuple[Any, ...], list[float]]:
    """Per minute and (cluster, tenant, job, vendor, model, node): samples, device and busy seconds, energy and
    peak memory, summed in dicts: the job the pipeline's ``util_1m`` does (which stores no idle seconds either:
    readers take them off its histogram)."""
    totals: dict[tuple[Any, ...], list[float]] = defaultdict(lambda: [0, 0.0, 0.0, 0.0, 0])
    for payload in payloads:
        row = json.loads(payload)
        key = (row["ts"] // 60_000, row["cluster"], row["tenant"], row["job_id"], row["vendor"], row["model"],
               row["node"])
        seconds = row["interval_s"] * (row["share"] if row["share"] is not None else 1.0)
        util = row["util_compute"]
        total = totals[key]
        total[0] += 1
        total[1] += seconds
        if util is not None:
            total[2] += util * seconds
        total[3] += row["energy_j"] or 0.0
        total[4] = max(total[4], row["mem_used_bytes"] or 0)
    return totals


def baseline_processing_rate(payloads: list[tuple[bytes, bytes]]) -> Rate:
    values = [value for _, value in payloads]
    with tempfile.TemporaryDirectory() as out:
        def run() -> None:
            totals = aggregate_json(values)
            with open(f"{out}/util_1m.jsonl", "w") as sink:
                for key, total in totals.items():
                    sink.write(json.dumps([*key, *total]) + "\n")
        return timed(run, len(values), len(values))


def baseline_broker_rate(broker: EmbeddedBroker, payloads: list[tuple[bytes, bytes]], topic: str) -> Rate:
    broker.create_topic(topic, 1)
    produce(broker, topic, payloads)
    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap_servers, enable_auto_commit=False, group_id=None)
    consumer.assign([TopicPartition(topic, 0)])
    consumer.seek_to_beginning()
    values: list[bytes] = []

    def run() -> None:
        while len(values) < len(payloads):
            for batch in consumer.poll(timeout_ms=200, max_records=POLL).values():
                values.extend(record.value for record in batch)
        aggregate_json(values)
    rate = timed(run, len(payloads), len(payloads))
    consumer.close()
    return rate


def rows_of(devices: int, scrapes: int) -> pl.DataFrame:
    """The sample rows the bench fleet sends in ``scrapes`` intervals (a multiple of 128 devices)."""
    template = template_rows(scrapes, 10.0, recent_start(2))
    return replicate(template, max(1, devices // template.select(pl.col("device_uuid").n_unique()).item()))

