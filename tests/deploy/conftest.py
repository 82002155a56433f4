from __future__ import annotations

from pathlib import Path

import pytest

from fleetmeter.demo.broker import EmbeddedBroker
from tests.deploy.exposed import Series, fresh_daemons_series


@pytest.fixture(scope="session")
def fresh_series(kafka_broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory) -> Series:
    """What a fresh collector, worker and anomaly watcher expose (tests/deploy/exposed.py)."""
    topic = "test.deploy.fresh"
    kafka_broker.create_topic(topic, partitions=1)
    return fresh_daemons_series(kafka_broker.bootstrap_servers, topic, Path(tmp_path_factory.mktemp("fresh")))
