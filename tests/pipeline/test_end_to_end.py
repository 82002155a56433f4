"""Simulated collectors -> real broker -> pipeline worker -> Delta tables, read with delta-rs and checked against
figures computed here."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable

from fleetmeter.demo.broker import EmbeddedBroker
from fleetmeter.pipeline.worker import PipelineWorker
from fleetmeter.schemas import wire
from fleetmeter.schemas.sample_v1 import rows_to_batch
from tests.conftest import consume
from tests.pipeline.fleet import (
    assert_rollups_match,
    hours_ago,
    pipeline_settings,
    produce_raw,
    read_table,
    run_collectors,
    samples_frame,
    topic_rows,
    unique_valid,
)


def bad_row_message(good_row: dict[str, object]) -> bytes:
    """A readable message with one valid row and one whose utilization is impossible."""
    other = dict(good_row) | {"device_uuid": "GPU-broken", "util_compute": 1.5}
    return wire.encode(rows_to_batch([good_row, other]))


@pytest.fixture
def fed_topic(kafka_broker: EmbeddedBroker, topic: str, tmp_path: Path) -> str:
    """Three nodes for 40 minutes, a replay of some messages, garbage, and a message with a bad row."""
    kafka_broker.create_topic(topic, partitions=3)
    run_collectors(tmp_path, kafka_broker.bootstrap_servers, topic, start_ms=hours_ago(3), scrapes=240)
    sent = consume(kafka_broker.bootstrap_servers, topic)
    replayed = [(key, wire.encode(table.to_batches()[0])) for key, _, table in sent[::7]]
    fresh_row = sent[0][2].to_pylist()[0] | {"device_uuid": "GPU-extra", "seq": 10_000}
    fresh_row["ts"] = int(fresh_row["ts"].timestamp() * 1000)
    produce_raw(kafka_broker.bootstrap_servers, topic,
                [*replayed, (b"junk", b"this is not arrow"), (b"mixed", bad_row_message(fresh_row))])
    return topic


def test_warehouse_holds_every_sample_once_with_correct_rollups(kafka_broker: EmbeddedBroker, fed_topic: str,
                                                                tmp_path: Path) -> None:
    warehouse = tmp_path / "warehouse"
    worker = PipelineWorker(pipeline_settings(kafka_broker.bootstrap_servers, fed_topic, warehouse))
    worker.run()

    all_rows = topic_rows(kafka_broker.bootstrap_servers, fed_topic)
    expected = unique_valid(all_rows)
    samples = samples_frame(warehouse)
    assert samples.height == len(expected)
    assert samples.select(pl.struct("device_uuid", "ts").n_unique()).item() == len(expected)
    assert set(zip(samples["device_uuid"], samples["ts"].dt.epoch("ms"), strict=True)) == {
        (row["device_uuid"], row["ts"]) for row in expected}
    assert_rollups_match(warehouse, expected)

    quarantined = read_table(warehouse, "quarantine")
    assert Counter(row["reason"] for row in quarantined) == {"unreadable": 1, "util_compute_out_of_range": 1}
    assert next(row for row in quarantined if row["reason"] == "unreadable")["payload"] == b"this is not arrow"
    duplicates = len([row for row in all_rows if row["device_uuid"] != "GPU-broken"]) - len(expected)
    assert duplicates > 0
    metric = worker.metrics.rows.labels
    assert (metric("stored")._value.get(), metric("duplicate")._value.get()) == (len(expected), duplicates)


def test_job_tables_match_the_samples(kafka_broker: EmbeddedBroker, fed_topic: str, tmp_path: Path) -> None:
    warehouse = tmp_path / "warehouse"
    PipelineWorker(pipeline_settings(kafka_broker.bootstrap_servers, fed_topic, warehouse)).run()
    expected = unique_valid(topic_rows(kafka_broker.bootstrap_servers, fed_topic))
    assert len({row["job_id"] for row in expected} - {None}) >= 3
    assert_rollups_match(warehouse, expected)


def test_every_file_uses_encodings_that_spark_and_trino_read(kafka_broker: EmbeddedBroker, fed_topic: str,
                                                             tmp_path: Path) -> None:
    """Spark 4's vectorized Parquet reader rejects BYTE_STREAM_SPLIT; no column of any committed file uses it
    (or any encoding beyond plain, dictionary and the RLE of levels and dictionary indices)."""
    warehouse = tmp_path / "warehouse"
    PipelineWorker(pipeline_settings(kafka_broker.bootstrap_servers, fed_topic, warehouse)).run()
    used: set[str] = set()
    for table in ("samples", "util_1m", "util_1h", "util_1d", "job_devices", "quarantine"):
        for path in DeltaTable(f"{warehouse}/{table}").file_uris():
            metadata = pq.ParquetFile(path).metadata
            used |= {encoding for group in range(metadata.num_row_groups) for column in range(metadata.num_columns)
                     for encoding in metadata.row_group(group).column(column).encodings}
    assert used and used <= {"PLAIN", "PLAIN_DICTIONARY", "RLE", "RLE_DICTIONARY"}, used


def test_late_rows_land_in_their_windows_and_correct_them(kafka_broker: EmbeddedBroker, topic: str,
                                                          tmp_path: Path) -> None:
    kafka_broker.create_topic(topic, partitions=2)
    warehouse = tmp_path / "warehouse"
    run_collectors(tmp_path, kafka_broker.bootstrap_servers, topic, start_ms=hours_ago(2), scrapes=60, name="now")
    PipelineWorker(pipeline_settings(kafka_broker.bootstrap_servers, topic, warehouse)).run()
    before = read_table(warehouse, "util_1h")

    # A node cut off for hours replays its spool: rows 9 h old, some in hours already rolled up.
    run_collectors(tmp_path, kafka_broker.bootstrap_servers, topic, start_ms=hours_ago(9), scrapes=400,
                   nodes=1, seed=99, name="late")
    PipelineWorker(pipeline_settings(kafka_broker.bootstrap_servers, topic, warehouse)).run()

    expected = unique_valid(topic_rows(kafka_broker.bootstrap_servers, topic))
    assert samples_frame(warehouse).height == len(expected)
    assert_rollups_match(warehouse, expected)
    assert len(read_table(warehouse, "util_1h")) > len(before)
