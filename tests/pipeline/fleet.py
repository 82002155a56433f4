"""Helpers for pipeline tests: a multi-partition topic fed by simulated collectors, worker settings,
reading the committed warehouse, and the rollup figures computed independently in plain Python."""

from __future__ import annotations

import contextlib
import math
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from kafka import KafkaConsumer, KafkaProducer

from fleetmeter.pipeline.settings import PipelineSettings
from fleetmeter.pipeline.warehouse.manifest import live_files
from fleetmeter.pipeline.warehouse.storage import Storage
from fleetmeter.schemas import wire
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
    """The rows a correct pipeline stores: valid ones, the first of each (device_uuid, ts, tenant, job_id)."""
    seen: dict[tuple[str, int, str, str | None], Row] = {}
    for row in rows:
        util = row["util_compute"]
        if util is not None and not 0 <= util <= 1:
            continue
        seen.setdefault((row["device_uuid"], row["ts"], row["tenant"], row["job_id"]), row)
    return list(seen.values())


def pipeline_settings(bootstrap_servers: str, topic: str, warehouse: Path | str, **overrides: Any) -> PipelineSettings:
    values: dict[str, Any] = {
        "kafka": {"bootstrap_servers": [bootstrap_servers], "topic": topic, "request_timeout_ms": 5000},
        "consumer": {"group_id": f"{topic}.workers", "max_poll_interval_ms": 3000, "session_timeout_ms": 3000,
                     "heartbeat_interval_ms": 500, "max_poll_records": 50},
        "warehouse": {"uri": str(warehouse)},
        "metrics": {"address": "127.0.0.1", "port": 0},
        "until_idle": True,
        "idle_s": 1.0,
    }
    return PipelineSettings(**(values | overrides))


def read_table(warehouse: Path | str, table: str) -> list[Row]:
    storage = Storage(str(warehouse))
    frame = storage.read_parquet(live_files(storage, table))
    return frame.to_dicts()


# -- the rollups, computed from sample rows in plain Python ----------------------------------------


def _floor(ts_ms: int, width: str) -> datetime:
    moment = datetime.fromtimestamp(ts_ms / 1000, tz=UTC)
    if width == "1m":
        return moment.replace(second=0, microsecond=0)
    if width == "1h":
        return moment.replace(minute=0, second=0, microsecond=0)
    return moment.replace(hour=0, minute=0, second=0, microsecond=0)


def expected_windows(rows: list[Row], width: str, with_node: bool, idle_threshold: float = 0.05,
                     ) -> dict[tuple[Any, ...], dict[str, Any]]:
    totals: dict[tuple[Any, ...], dict[str, Any]] = defaultdict(
        lambda: {"samples": 0, "device_seconds": 0.0, "busy_seconds": 0.0, "idle_seconds": 0.0,
                 "util_known_seconds": 0.0, "energy_j": 0.0, "xid_events": 0, "mem_used_max_bytes": None,
                 "util_hist_seconds": [0.0] * 20})
    for row in rows:
        key = (_floor(row["ts"], width), row["cluster"], row["tenant"], row["job_id"], row["vendor"], row["model"])
        total = totals[(*key, row["node"]) if with_node else key]
        mig_parent = dict(row["extras"] or []).get("mig.enabled", 0) > 0
        seconds = 0.0 if mig_parent else row["interval_s"]
        util = row["util_compute"]
        total["samples"] += 1
        total["device_seconds"] += seconds
        total["energy_j"] += row["energy_j"] or 0.0
        total["xid_events"] += len(row["xid_errors"] or [])
        if row["mem_used_bytes"] is not None:
            total["mem_used_max_bytes"] = max(total["mem_used_max_bytes"] or 0, row["mem_used_bytes"])
        if util is not None:
            total["util_known_seconds"] += seconds
            total["busy_seconds"] += util * seconds
            total["idle_seconds"] += seconds if util < idle_threshold else 0.0
            total["util_hist_seconds"][min(math.floor(util * 20), 19)] += seconds
    return dict(totals)


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
        for name in ("samples", "device_seconds", "busy_seconds", "idle_seconds", "util_known_seconds",
                     "energy_j", "xid_events"):
            total[name] += row[name]
        memory = [value for value in (total["mem_used_max_bytes"], row["mem_used_max_bytes"]) if value is not None]
        total["mem_used_max_bytes"] = max(memory, default=None)
        total["util_hist_seconds"] = [a + b for a, b in zip(total["util_hist_seconds"], row["util_hist_seconds"],
                                                            strict=True)]
    return merged


def assert_windows_match(stored: list[Row], rows: list[Row], width: str, with_node: bool) -> None:
    expected = expected_windows(rows, width, with_node)
    actual = stored_windows(stored, with_node)
    assert set(actual) == set(expected)
    for key, want in expected.items():
        got = actual[key]
        for name, value in want.items():
            assert got[name] == (value if value is None else pytest.approx(value, rel=1e-9, abs=1e-6)), (key, name)


def samples_frame(warehouse: Path | str) -> pl.DataFrame:
    storage = Storage(str(warehouse))
    return storage.read_parquet(live_files(storage, "samples"))
