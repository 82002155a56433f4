"""The warehouse on an object store: the same worker code path and the same Delta tables, against moto's
S3-protocol HTTP server; two workers of one group commit to the same tables at once (delta-rs commits with
S3 conditional writes), and readers (delta-rs directly, and the analyst views) see every sample once."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import boto3
import pytest
from moto.server import ThreadedMotoServer

from fleetmeter.demo.broker import EmbeddedBroker, free_port
from fleetmeter.pipeline.worker import PipelineWorker
from fleetmeter.sql.catalog import Catalog
from fleetmeter.sql.settings import AnalysisSettings
from fleetmeter.sql.since import EVERYTHING
from tests.pipeline.fleet import (
    assert_rollups_match,
    delta_frame,
    hours_ago,
    pipeline_settings,
    run_collectors,
    run_group,
    stored_rows,
    topic_rows,
    unique_valid,
)


class S3:
    def __init__(self, uri: str, endpoint: str) -> None:
        self.uri = uri
        self.options = {"AWS_ENDPOINT_URL": endpoint, "AWS_ALLOW_HTTP": "true", "AWS_REGION": "us-east-1",
                        "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"}


@pytest.fixture
def s3() -> Iterator[S3]:
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="test", aws_secret_access_key="test",
                 region_name="us-east-1").create_bucket(Bucket="fleet")
    # moto keeps its buckets per process, not per server: each test gets its own prefix
    yield S3(f"s3://fleet/warehouse-{uuid.uuid4().hex[:8]}", endpoint)
    server.stop()


def stored(s3: S3, table: str) -> list[dict[str, object]]:
    return delta_frame(s3.uri, table, s3.options).to_dicts()


def test_two_workers_commit_to_the_same_tables_on_s3_at_once(kafka_broker: EmbeddedBroker, topic: str,
                                                             tmp_path: Path, s3: S3) -> None:
    kafka_broker.create_topic(topic, partitions=4)
    consumer = {"group_id": f"{topic}.workers", "max_poll_interval_ms": 3000, "session_timeout_ms": 6000,
                "heartbeat_interval_ms": 500, "max_poll_records": 50}
    workers = [PipelineWorker(pipeline_settings(
        kafka_broker.bootstrap_servers, topic, s3.uri, until_idle=False, consumer=consumer,
        flush={"max_rows": 100, "max_delay_s": 0.5},
        warehouse={"uri": s3.uri, "storage_options": s3.options, "compact_min_files": 3})) for _ in range(2)]
    feed = partial(run_collectors, tmp_path, kafka_broker.bootstrap_servers, topic, hours_ago(2), 40, 6)
    run_group(workers, feed, expected_rows=6 * 4 * 39)

    assert all(stored_rows(worker) > 0 for worker in workers), "both workers committed"
    expected = unique_valid(topic_rows(kafka_broker.bootstrap_servers, topic))
    samples = stored(s3, "samples")
    assert len(samples) == len({(row["device_uuid"], row["ts"]) for row in samples}) == len(expected)
    assert_rollups_match_on(s3, expected)


def assert_rollups_match_on(s3: S3, expected: list[dict[str, object]]) -> None:
    """tests/pipeline/fleet.py's oracle comparison, reading the S3 tables."""
    from tests.pipeline import fleet

    original = fleet.read_table
    fleet.read_table = lambda warehouse, table: stored(s3, table)  # type: ignore[assignment]
    try:
        assert_rollups_match(s3.uri, expected)
    finally:
        fleet.read_table = original


def test_the_analyst_views_read_an_object_store_warehouse(kafka_broker: EmbeddedBroker, topic: str, tmp_path: Path,
                                                          s3: S3) -> None:
    kafka_broker.create_topic(topic, partitions=2)
    run_collectors(tmp_path, kafka_broker.bootstrap_servers, topic, start_ms=hours_ago(2), scrapes=20)
    PipelineWorker(pipeline_settings(kafka_broker.bootstrap_servers, topic, s3.uri,
                                     warehouse={"uri": s3.uri, "storage_options": s3.options})).run()

    expected = unique_valid(topic_rows(kafka_broker.bootstrap_servers, topic))
    catalog = Catalog.open(AnalysisSettings(warehouse=s3.uri, storage_options=s3.options), EVERYTHING)
    connection = catalog.connect()
    [(samples, hours)] = connection.sql(
        "SELECT (SELECT count(*) FROM samples), (SELECT sum(device_hours) FROM util_1h)").fetchall()
    assert samples == len(expected)
    assert hours == pytest.approx(sum(row["interval_s"] for row in expected) / 3600)
    with pytest.raises(ValueError, match="local paths"):
        catalog.script()
