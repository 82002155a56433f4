"""Workers in one consumer group: they split the partitions and build the same warehouse as one worker,
and a draining worker waits until the group has given it its share."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from fleetmeter.demo.broker import EmbeddedBroker
from fleetmeter.pipeline.cli import app
from fleetmeter.pipeline.metrics import PipelineMetrics
from fleetmeter.pipeline.warehouse.delta import OwnedByAnotherGroup
from fleetmeter.pipeline.worker import PipelineWorker
from tests.pipeline.fleet import (
    hours_ago,
    merged_job_devices,
    pipeline_settings,
    read_table,
    run_collectors,
    run_group,
    samples_frame,
    stored_windows,
)


def test_two_workers_build_the_same_warehouse_as_one(kafka_broker: EmbeddedBroker, topic: str,
                                                     tmp_path: Path) -> None:
    kafka_broker.create_topic(topic, partitions=4)
    shared, alone = tmp_path / "two-workers", tmp_path / "one-worker"
    metrics = [PipelineMetrics(), PipelineMetrics()]
    flush = {"max_rows": 200, "max_delay_s": 1.0}
    # a longer session than the other tests use: a member whose heartbeats stall on a loaded 2-core machine
    # is expelled, and the other drains everything alone (seen once in a full run beside other work)
    consumer = {"group_id": f"{topic}.workers", "max_poll_interval_ms": 3000, "session_timeout_ms": 6000,
                "heartbeat_interval_ms": 500, "max_poll_records": 50}
    expected_rows = 6 * 4 * 199  # 6 nodes x 4 GPUs; the first of 200 scrapes has no interval behind it
    workers = [PipelineWorker(pipeline_settings(kafka_broker.bootstrap_servers, topic, shared, flush=flush,
                                                consumer=consumer, until_idle=False), m) for m in metrics]
    run_group(workers, lambda: run_collectors(tmp_path, kafka_broker.bootstrap_servers, topic,
                                              start_ms=hours_ago(3), scrapes=200, nodes=6), expected_rows)
    single = pipeline_settings(kafka_broker.bootstrap_servers, topic, alone, flush=flush,
                               consumer={"group_id": f"{topic}.alone", "max_poll_interval_ms": 3000,
                                         "session_timeout_ms": 3000, "heartbeat_interval_ms": 500})
    PipelineWorker(single).run()

    partitions = [{labels["partition"] for labels in _labels(m, "fleetmeter_pipeline_committed_offset")}
                  for m in metrics]
    assert all(partitions) and not partitions[0] & partitions[1], partitions  # both worked, on different ones
    keys = ["device_uuid", "ts"]
    assert samples_frame(shared).sort(keys).equals(samples_frame(alone).sort(keys))
    assert samples_frame(shared).height == expected_rows
    for table, with_node in (("util_1m", True), ("util_1h", False), ("util_1d", False)):
        assert rounded(stored_windows(read_table(shared, table), with_node)) == rounded(
            stored_windows(read_table(alone, table), with_node))
    assert rounded(merged_job_devices(read_table(shared, "job_devices"))) == rounded(
        merged_job_devices(read_table(alone, "job_devices")))


def rounded(value: Any) -> Any:
    """``value`` with floats rounded: sums taken in another order differ in the last bits."""
    if isinstance(value, float):
        return round(value, 6)
    if isinstance(value, dict):
        return {key: rounded(item) for key, item in value.items()}
    if isinstance(value, list):
        return [rounded(item) for item in value]
    return value


def _labels(metrics: PipelineMetrics, name: str) -> list[dict[str, str]]:
    return [sample.labels for family in metrics.registry.collect() if family.name == name
            for sample in family.samples]


def test_a_draining_worker_waits_for_the_group_to_answer_its_join(kafka_broker: EmbeddedBroker, topic: str,
                                                                  tmp_path: Path) -> None:
    """Tansu holds a JoinGroup for about a session timeout, longer under load: a draining worker must not
    take that wait for holding an empty share and stop with nothing read (seen in CI)."""
    kafka_broker.create_topic(topic, partitions=2)
    run_collectors(tmp_path, kafka_broker.bootstrap_servers, topic, start_ms=hours_ago(1), scrapes=10, nodes=2)
    consumer = {"group_id": f"{topic}.slow-join", "max_poll_interval_ms": 3000, "session_timeout_ms": 500,
                "heartbeat_interval_ms": 100}
    PipelineWorker(pipeline_settings(kafka_broker.bootstrap_servers, topic, tmp_path / "warehouse",
                                     consumer=consumer, idle_s=0.1)).run()
    assert samples_frame(tmp_path / "warehouse").height == 2 * 4 * 9


def test_a_worker_of_another_group_is_refused_until_the_warehouse_is_handed_over(
        kafka_broker: EmbeddedBroker, topic: str, tmp_path: Path) -> None:
    """Two groups on one warehouse would both store everything: the second is refused with both names; after
    `fleetmeter pipeline hand-over` its workers keep the warehouse, and what the first stored is not stored
    twice."""
    kafka_broker.create_topic(topic, partitions=2)
    run_collectors(tmp_path, kafka_broker.bootstrap_servers, topic, start_ms=hours_ago(1), scrapes=10, nodes=2)
    warehouse = tmp_path / "warehouse"
    PipelineWorker(pipeline_settings(kafka_broker.bootstrap_servers, topic, warehouse)).run()
    other = pipeline_settings(kafka_broker.bootstrap_servers, topic, warehouse,
                              consumer={"group_id": "analytics-replay", "max_poll_interval_ms": 3000,
                                        "session_timeout_ms": 3000, "heartbeat_interval_ms": 500})
    with pytest.raises(OwnedByAnotherGroup, match=rf"'{re.escape(topic)}.workers'.*'analytics-replay'"):
        PipelineWorker(other).run()
    handed = CliRunner().invoke(app, ["hand-over", "--to-group", "analytics-replay", "--warehouse", str(warehouse)])
    assert handed.exit_code == 0, handed.output
    replay = PipelineMetrics()
    PipelineWorker(other, replay).run()
    duplicates = replay.registry.get_sample_value("fleetmeter_pipeline_rows_total", {"outcome": "duplicate"})
    assert duplicates == samples_frame(warehouse).height == 2 * 4 * 9  # read again: every sample a duplicate
