"""The warehouse on an object store: the same worker code path, against moto's S3-protocol HTTP server."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import polars as pl
import pyarrow.fs as pafs
import pytest
from moto.server import ThreadedMotoServer

from fleetmeter.demo.broker import EmbeddedBroker, free_port
from fleetmeter.pipeline.warehouse.manifest import live_files
from fleetmeter.pipeline.warehouse.storage import Storage
from fleetmeter.pipeline.worker import PipelineWorker
from fleetmeter.sql.catalog import Catalog
from fleetmeter.sql.settings import AnalysisSettings
from fleetmeter.sql.since import EVERYTHING
from tests.pipeline.fleet import hours_ago, pipeline_settings, run_collectors, topic_rows, unique_valid


@pytest.fixture
def s3_warehouse(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    for name, value in {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
                        "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(name, value)
    endpoint = f"http://127.0.0.1:{port}"
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="fleet")
    # moto keeps its buckets per process, not per server: each test gets its own prefix
    prefix = f"warehouse-{uuid.uuid4().hex[:8]}"
    yield f"s3://fleet/{prefix}?endpoint_override=127.0.0.1:{port}&scheme=http&region=us-east-1"
    server.stop()


def test_worker_keeps_the_warehouse_on_s3(kafka_broker: EmbeddedBroker, topic: str, tmp_path: Path,
                                          s3_warehouse: str) -> None:
    kafka_broker.create_topic(topic, partitions=2)
    run_collectors(tmp_path, kafka_broker.bootstrap_servers, topic, start_ms=hours_ago(2), scrapes=40)
    PipelineWorker(pipeline_settings(kafka_broker.bootstrap_servers, topic, s3_warehouse)).run()

    storage = Storage(s3_warehouse)
    expected = unique_valid(topic_rows(kafka_broker.bootstrap_servers, topic))
    samples = storage.read_parquet(live_files(storage, "samples"))
    assert samples.height == len(expected) == 3 * 4 * 39
    util = storage.read_parquet(live_files(storage, "util_1h"))
    assert util["device_seconds"].sum() == pytest.approx(sum(row["interval_s"] for row in expected))
    assert storage.list_files("_state")  # commit records are objects too
    objects = storage.fs.get_file_info(pafs.FileSelector(storage.root, recursive=True))
    assert not [info.path for info in objects if info.path.endswith(".tmp")]  # no temporary objects left
    assert pl.DataFrame(samples).select(pl.struct("device_uuid", "ts").n_unique()).item() == samples.height


def test_the_analyst_views_read_an_object_store_warehouse(kafka_broker: EmbeddedBroker, topic: str, tmp_path: Path,
                                                          s3_warehouse: str) -> None:
    kafka_broker.create_topic(topic, partitions=2)
    run_collectors(tmp_path, kafka_broker.bootstrap_servers, topic, start_ms=hours_ago(2), scrapes=20)
    PipelineWorker(pipeline_settings(kafka_broker.bootstrap_servers, topic, s3_warehouse)).run()

    expected = unique_valid(topic_rows(kafka_broker.bootstrap_servers, topic))
    catalog = Catalog.open(AnalysisSettings(warehouse=s3_warehouse), EVERYTHING)
    connection = catalog.connect()
    [(samples, hours)] = connection.sql(
        "SELECT (SELECT count(*) FROM samples), (SELECT sum(device_hours) FROM util_1h)").fetchall()
    assert samples == len(expected)
    assert hours == pytest.approx(sum(row["interval_s"] for row in expected) / 3600)
    with pytest.raises(ValueError, match="local paths"):
        catalog.script()
