"""One generated warehouse shared by the analyst-surface tests (building it takes a few seconds)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from fleetmeter.demo.broker import EmbeddedBroker
from fleetmeter.pipeline.worker import PipelineWorker
from fleetmeter.sql.catalog import Catalog
from fleetmeter.sql.settings import AnalysisSettings
from fleetmeter.sql.since import parse_since
from tests.analysis.fleet import PRICES, Row, mig_messages, start_of_fleet
from tests.conftest import StepClock, collector_settings
from tests.pipeline.fleet import pipeline_settings, produce_raw, topic_rows, unique_valid
from tests.test_kafka_delivery import daemon_for, run_scrapes

SCRAPES = 300  # one a minute: five hours


@dataclass(frozen=True)
class Fleet:
    warehouse: Path
    rows: list[Row]  # what the warehouse should hold: the topic's valid rows, each (device, ts) once
    start: datetime

    def settings(self, **overrides: Any) -> AnalysisSettings:
        return AnalysisSettings(**({"warehouse": str(self.warehouse), "prices": PRICES} | overrides))

    def query(self, sql: str, since: str | None = None, **overrides: Any) -> list[dict[str, Any]]:
        connection = Catalog.open(self.settings(**overrides), parse_since(since)).connect()
        return connection.sql(sql).to_arrow_table().to_pylist()  # type: ignore[no-any-return]


@pytest.fixture(scope="session")
def fleet(kafka_broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory) -> Fleet:
    directory = tmp_path_factory.mktemp("analysis")
    topic = f"test.analysis.{uuid.uuid4().hex[:8]}"
    kafka_broker.create_topic(topic, partitions=2)
    start = start_of_fleet()
    start_ms = int(start.timestamp() * 1000)
    settings = collector_settings(directory, kafka_broker.bootstrap_servers, topic, interval_s=60.0,
                                  simulated={"nodes": 4, "devices_per_node": 4, "seed": 11, "start": start})
    daemon = daemon_for(settings, StepClock(start_ms=start_ms, step_ms=60_000))
    daemon.sender.start()
    run_scrapes(daemon, SCRAPES)
    daemon.shutdown()
    produce_raw(kafka_broker.bootstrap_servers, topic, mig_messages(start, intervals=30))
    warehouse = directory / "warehouse"
    PipelineWorker(pipeline_settings(kafka_broker.bootstrap_servers, topic, warehouse)).run()
    rows = unique_valid(topic_rows(kafka_broker.bootstrap_servers, topic))
    return Fleet(warehouse, rows, start)
