"""A reader polling the Delta tables while a worker streams, flushes and compacts sees every sample at most once
at every snapshot, never less than a moment before, and all of them once the worker is done.

The old Parquet layout failed this: a reader globbing its files while a worker ran saw util_1h reach 11.9x
the true device-seconds (the files that compaction and rollup rewrites replaced stayed readable)."""

from __future__ import annotations

import itertools
import threading
import time
from pathlib import Path

import polars as pl
from deltalake import DeltaTable
from deltalake.exceptions import TableNotFoundError

from fleetmeter.demo.broker import EmbeddedBroker
from fleetmeter.pipeline.worker import PipelineWorker
from tests.pipeline.fleet import hours_ago, pipeline_settings, run_collectors, topic_rows, unique_valid


def sample_counts(warehouse: Path) -> tuple[int, int]:
    """Rows of ``samples`` and the samples ``util_1h`` has rolled up, each at its current version."""
    try:
        samples = DeltaTable(f"{warehouse}/samples").count()
        hourly = pl.from_arrow(DeltaTable(f"{warehouse}/util_1h").to_pyarrow_table(columns=["samples"]))
    except TableNotFoundError:
        return 0, 0
    assert isinstance(hourly, pl.DataFrame)
    return samples, int(hourly["samples"].sum())


def test_a_reader_never_counts_a_sample_twice_while_the_worker_flushes_and_compacts(
        kafka_broker: EmbeddedBroker, topic: str, tmp_path: Path) -> None:
    kafka_broker.create_topic(topic, partitions=2)
    run_collectors(tmp_path, kafka_broker.bootstrap_servers, topic, start_ms=hours_ago(3), scrapes=150)
    expected = len(unique_valid(topic_rows(kafka_broker.bootstrap_servers, topic)))
    warehouse = tmp_path / "warehouse"
    worker = PipelineWorker(pipeline_settings(kafka_broker.bootstrap_servers, topic, warehouse,
                                              flush={"max_rows": 60, "max_delay_s": 0.2},
                                              warehouse={"uri": str(warehouse), "compact_min_files": 2}))
    readings: list[tuple[int, int]] = []
    done = threading.Event()

    def read_while_the_worker_runs() -> None:
        while not done.is_set():
            readings.append(sample_counts(warehouse))
            time.sleep(0.05)

    reader = threading.Thread(target=read_while_the_worker_runs)
    reader.start()
    try:
        worker.run()
    finally:
        done.set()
        reader.join()

    assert worker.metrics.commits.labels("compaction")._value.get() > 0  # compactions ran under the reader
    assert len(readings) > 10
    for earlier, later in itertools.pairwise(readings):
        assert later[0] >= earlier[0] and later[1] >= earlier[1], (earlier, later)
    assert max(max(reading) for reading in readings) <= expected
    assert sample_counts(warehouse) == (expected, expected)
