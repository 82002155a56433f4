"""Helpers for pipeline tests: a multi-partition topic fed by simulated collectors, worker settings,
reading the committed warehouse, and comparing its rollups with tests/oracle.py."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from deltalake import DeltaTable
from kafka import KafkaConsumer, KafkaProducer

from fleetmeter.pipeline.settings import PipelineSettings, ValidationSettings
from fleetmeter.pipeline.worker import PipelineWorker
from fleetmeter.schemas import wire
from tests import oracle
from tests.conftest import StepClock, collector_settings
from tests.test_kafka_delivery import daemon_for, run_scrapes

HOUR_MS = 3_600_000
Row = dict[str, Any]


def hours_ago(hours: float) -> int:
    """Epoch ms of the start of the minute ``hours`` before now (keeps rows inside the lateness bound)."""
    return (int(time.time() * 1000) - int(hours * HOUR_MS)) // 60_000 * 60_000


def run_collectors(tmp_path: Path, bootstrap_servers: str, topic: str, start_ms: int, scrapes: int,
                   nodes: int = 3, seed: int = 7, name: str = "spool") -> None:
    """Simulated collectors for ``nodes`` nodes x 4 GPUs, ``scrapes`` scrapes 10 s apart from ``start_ms``."""
    settings = collector_settings(tmp_path / name, bootstrap_servers, topic,
                                  simulated={"nodes": nodes, "devices_per_node": 4, "seed": seed})
    daemon = daemon_for(settings, StepClock(start_ms=start_ms))
    daemon.sender.start()
    run_scrapes(daemon, scrapes)
    daemon.shutdown()


def run_group(workers: list[PipelineWorker], feed: Callable[[], None], expected_rows: int) -> None:
    """Run ``workers`` (one consumer group, until stopped) in threads; once the group has split the partitions
    (one worker alone drains a small topic in less time than the group takes to let a second member in),
    ``feed`` the topic; stop them once they have stored ``expected_rows`` between them (or after 2 minutes).

    Until stopped, not until idle: on a loaded machine both could stop before the first message (seen in CI).
    """
    threads = [threading.Thread(target=worker.run) for worker in workers]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 60
    while not all(worker.writers for worker in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    feed()
    deadline = time.monotonic() + 120
    while sum(stored_rows(worker) for worker in workers) < expected_rows and time.monotonic() < deadline:
        time.sleep(0.1)
    for worker in workers:
        worker.stopping.set()
    for thread in threads:
        thread.join(timeout=60)


def stored_rows(worker: PipelineWorker) -> float:
    return worker.metrics.registry.get_sample_value("fleetmeter_pipeline_rows_total", {"outcome": "stored"}) or 0.0


def produce_raw(bootstrap_servers: str, topic: str, messages: list[tuple[bytes | None, bytes]]) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap_servers)
    for key, value in messages:
        producer.send(topic, key=key, value=value)
    producer.flush()
    producer.close()


def topic_rows(bootstrap_servers: str, topic: str) -> list[Row]:
    """Every readable row on the topic, as plain dicts (``ts`` in epoch ms), duplicates included."""
    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap_servers, auto_offset_reset="earliest",
                             consumer_timeout_ms=3000, group_id=None, enable_auto_commit=False)
    tables = []
    for message in consumer:
        with contextlib.suppress(wire.WireFormatError):  # the garbage a test sent on purpose
            tables.append(wire.decode(message.value))
    consumer.close()
    rows = []
    for table in tables:
        for row in table.to_pylist():
            row["ts"] = int(row["ts"].timestamp() * 1000)
            rows.append(row)
    return rows


def unique_valid(rows: list[Row]) -> list[Row]:
    """The rows a correct pipeline stores: valid ones (tests/oracle.py's rules, against the clock now), the first
    of each (device_uuid, ts, tenant, job_id)."""
    now_ms, rules = int(time.time() * 1000), ValidationSettings()
    return oracle.deduplicated(row for row in rows
                               if not oracle.broken_rules(row, now_ms, rules.max_future_s, rules.max_lateness_s))


def pipeline_settings(bootstrap_servers: str, topic: str, warehouse_uri: Path | str, **overrides: Any,
                      ) -> PipelineSettings:
    values: dict[str, Any] = {
        "kafka": {"bootstrap_servers": [bootstrap_servers], "topic": topic, "request_timeout_ms": 5000},
        "consumer": {"group_id": f"{topic}.workers", "max_poll_interval_ms": 3000, "session_timeout_ms": 3000,
                     "heartbeat_interval_ms": 500, "max_poll_records": 50},
        "warehouse": {"uri": str(warehouse_uri)},
        "metrics": {"address": "127.0.0.1", "port": 0},
        "until_idle": True,
        "idle_s": 1.0,
    }
    return PipelineSettings(**(values | overrides))


PARTITION_COLUMNS = ("date", "hour", "month")


def delta_frame(warehouse: Path | str, table: str, storage_options: dict[str, str] | None = None) -> pl.DataFrame:
    """A table's current snapshot as delta-rs reads it (an independent reader: no fleetmeter code), without its
    partition columns; the warehouse keeps each table in a directory of that name (docs/warehouse.md)."""
    frame = pl.from_arrow(DeltaTable(f"{warehouse}/{table}", storage_options=storage_options).to_pyarrow_table())
    assert isinstance(frame, pl.DataFrame)
    return frame.drop([name for name in PARTITION_COLUMNS if name in frame.columns])


def read_table(warehouse: Path | str, table: str) -> list[Row]:
    return delta_frame(warehouse, table).to_dicts()


# -- the stored rollups against tests/oracle.py ----------------------------------------------------


def stored_windows(rows: list[Row], with_node: bool) -> dict[tuple[Any, ...], dict[str, Any]]:
    """Stored rollup rows merged across files (partials of different partitions or commits)."""
    merged: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in rows:
        key = (row["window_start"], row["cluster"], row["tenant"], row["job_id"], row["vendor"], row["model"])
        key = (*key, row["node"]) if with_node else key
        if key not in merged:
            merged[key] = dict(row)
            continue
        total = merged[key]
        for name in oracle.SUMMED:
            total[name] += row[name]
        for name in oracle.MAXIMA:
            total[name] = oracle.max_known(total[name], row[name])
        for name in oracle.HISTOGRAMS:
            total[name] = [a + b for a, b in zip(total[name], row[name], strict=True)]
    return merged


def assert_same_figures(actual: dict[Any, dict[str, Any]], expected: dict[Any, dict[str, Any]]) -> None:
    """Every key and every figure of ``expected`` in ``actual``: integers exactly, floats to 1e-9."""
    assert set(actual) == set(expected)
    for key, want in expected.items():
        for name, value in want.items():
            got = actual[key][name]
            if isinstance(value, float | list) and value:
                assert got == pytest.approx(value, rel=1e-9, abs=1e-6), (key, name)
            else:
                assert got == value, (key, name, got, value)


def assert_windows_match(stored: list[Row], rows: list[Row], width: str, with_node: bool) -> None:
    """The stored ``util_*`` rows hold exactly the oracle's windows, every measure of them."""
    if stored:
        keys = {"window_start", "cluster", "tenant", "job_id", "vendor", "model", "node"}
        assert set(stored[0]) - keys == set(oracle.WINDOW_MEASURES)
    assert_same_figures(stored_windows(stored, with_node), oracle.windows(rows, width, with_node))


JOB_KEYS = ("cluster", "tenant", "job_id")
JOB_DEVICE_KEYS = (*JOB_KEYS, "device_uuid", "vendor", "model", "node")


def merged_device_hours(rows: list[Row]) -> dict[tuple[Any, ...], Row]:
    """Stored device_1h partials merged by key."""
    merged: dict[tuple[Any, ...], Row] = {}
    for row in rows:
        key = tuple(row[name] for name in ("window_start", "cluster", "tenant", "job_id", "vendor", "model", "node",
                                           "device_uuid"))
        if key not in merged:
            merged[key] = dict(row)
            continue
        for name in (*oracle.SUMMED, *oracle.HEALTH):
            merged[key][name] += row[name]
        for name in oracle.MAXIMA:
            merged[key][name] = oracle.max_known(merged[key][name], row[name])
    return merged


def merged_job_devices(rows: list[Row]) -> dict[tuple[Any, ...], Row]:
    """Stored job-device partials (one per commit and day until compaction) merged by key."""
    merged: dict[tuple[Any, ...], Row] = {}
    for row in rows:
        key = tuple(row[name] for name in JOB_DEVICE_KEYS)
        if key in merged:
            oracle.add_job_span(merged[key], row)
        else:
            merged[key] = dict(row)
    return merged


def assert_rollups_match(warehouse: Path | str, rows: list[Row]) -> None:
    """Every rollup table (util_1m, util_1h, util_1d, device_1h, job_devices) holds the oracle's figures for
    ``rows``."""
    assert_windows_match(read_table(warehouse, "util_1m"), rows, "1m", with_node=True)
    assert_windows_match(read_table(warehouse, "util_1h"), rows, "1h", with_node=False)
    assert_windows_match(read_table(warehouse, "util_1d"), rows, "1d", with_node=False)
    assert_same_figures(merged_device_hours(read_table(warehouse, "device_1h")), oracle.device_hours(rows))
    assert_same_figures(merged_job_devices(read_table(warehouse, "job_devices")), oracle.job_devices(rows))


def samples_frame(warehouse: Path | str) -> pl.DataFrame:
    return delta_frame(warehouse, "samples")
