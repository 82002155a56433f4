"""Nodes whose clocks are wrong by hours. The worker judges a row's time against its own clock when it
reads the row: more than ``validation.max_future_s`` ahead is quarantined as ``ts_in_future``, more than
``validation.max_lateness_s`` behind as ``ts_too_old``; anything between is stored at the time the node
gave it (docs/reliability.md). Nothing is dropped: every row is in ``samples/`` or in ``quarantine/``.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from fleetmeter.demo.broker import EmbeddedBroker
from fleetmeter.pipeline.worker import PipelineWorker
from tests.faults.figures import record
from tests.faults.fleet import Collectors, assert_warehouse_holds_exactly
from tests.pipeline.fleet import hours_ago, pipeline_settings, read_table


def test_nodes_hours_ahead_or_behind(kafka_broker: EmbeddedBroker, topic: str, tmp_path: Path) -> None:
    kafka_broker.create_topic(topic, partitions=1)
    skews = {"on-time": 0.5, "behind": 5.0, "far-behind": 24 * 40, "ahead": -3.0}  # hours before now
    produced = {}
    for cluster, hours in skews.items():
        collectors = Collectors(tmp_path / cluster, kafka_broker.bootstrap_servers, topic,
                                start_ms=hours_ago(hours), nodes=1, cluster=cluster)
        collectors.scrape(12)
        collectors.shutdown()
        produced[cluster] = collectors.produced()
    warehouse = tmp_path / "warehouse"
    PipelineWorker(pipeline_settings(kafka_broker.bootstrap_servers, topic, warehouse,
                                     validation={"max_future_s": 300, "max_lateness_s": 30 * 86_400})).run()

    assert_warehouse_holds_exactly(warehouse, produced["on-time"] + produced["behind"])
    record(samples_quarantined_for_clock_skew=len(produced["ahead"]) + len(produced["far-behind"]))
    quarantined = Counter((json.loads(row["row_json"])["cluster"], row["reason"])
                          for row in read_table(warehouse, "quarantine"))
    assert quarantined == {("ahead", "ts_in_future"): len(produced["ahead"]),
                           ("far-behind", "ts_too_old"): len(produced["far-behind"])}
