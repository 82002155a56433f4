"""The collector against a real Kafka-protocol broker: delivery, outage with spooling, restart."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pyarrow as pa

from fleetmeter.collectors.backends import open_backends
from fleetmeter.collectors.daemon import CollectorDaemon
from fleetmeter.collectors.settings import CollectorSettings
from fleetmeter.demo.broker import EmbeddedBroker, free_port
from fleetmeter.schemas import wire
from tests.conftest import StepClock, collector_settings, consume


def daemon_for(settings: CollectorSettings, clock: StepClock | None = None) -> CollectorDaemon:
    daemon = CollectorDaemon(settings, open_backends(settings))
    daemon.clock = clock or StepClock()
    return daemon


def run_scrapes(daemon: CollectorDaemon, scrapes: int) -> None:
    for _ in range(scrapes):
        daemon.scrape_once()


def sample_keys(tables: list[pa.Table]) -> Counter[tuple[str, object]]:
    rows = (row for table in tables for row in table.select(["device_uuid", "ts"]).to_pylist())
    return Counter((row["device_uuid"], row["ts"]) for row in rows)


def test_each_node_scrape_is_one_keyed_message_with_headers(kafka_broker: EmbeddedBroker, topic: str,
                                                              tmp_path: Path) -> None:
    settings = collector_settings(tmp_path, kafka_broker.bootstrap_servers, topic)
    daemon = daemon_for(settings)
    daemon.sender.start()
    run_scrapes(daemon, 4)  # the first scrape primes; three intervals follow
    daemon.shutdown()
    messages = consume(kafka_broker.bootstrap_servers, topic)
    assert len(messages) == 2 * 3  # two nodes, three intervals
    assert Counter(key for key, _, _ in messages) == {b"test-sim-000": 3, b"test-sim-001": 3}
    for key, headers, table in messages:
        assert dict(headers)[wire.HEADER_CONTENT_TYPE] == b"application/vnd.apache.arrow.stream"
        assert dict(headers)[wire.HEADER_SCHEMA_VERSION] == b"1.1"
        assert table.num_rows == 4 and set(table.column("node").to_pylist()) == {key.decode()}
        assert len(set(table.column("seq").to_pylist())) == 1
    assert daemon.spool.messages == 0


def test_scrapes_per_message_batches_several_scrapes(kafka_broker: EmbeddedBroker, topic: str,
                                                     tmp_path: Path) -> None:
    settings = collector_settings(tmp_path, kafka_broker.bootstrap_servers, topic, scrapes_per_message=3)
    daemon = daemon_for(settings)
    daemon.sender.start()
    run_scrapes(daemon, 7)
    daemon.shutdown()  # flushes the partial batch
    tables = [table for _, _, table in consume(kafka_broker.bootstrap_servers, topic)]
    assert sorted(t.num_rows for t in tables) == [4, 4, 4 * 2, 4 * 2, 4 * 3, 4 * 3]  # [prime+2, 3, 1] per node
    assert sum(sample_keys(tables).values()) == 2 * 4 * 6


def test_samples_survive_a_broker_outage_and_a_daemon_restart_and_arrive_once(topic: str, tmp_path: Path) -> None:
    port = free_port()
    settings = collector_settings(tmp_path, f"127.0.0.1:{port}", topic)
    # Broker down: the first daemon scrapes, spools, and is stopped with everything still spooled.
    clock = StepClock()
    first = daemon_for(settings, clock)
    first.sender.start()
    run_scrapes(first, 5)
    first.sender.stop(timeout_s=0.5)
    first.sender.join(timeout=20)  # as if the process had exited: nothing of it may send later
    assert not first.sender.is_alive()
    first.spool.close()
    spooled = first.spool.messages
    assert spooled == 2 * 4
    # The broker comes up; a new daemon on the same spool sends the backlog first, then new scrapes.
    with EmbeddedBroker(port=port) as broker:
        second = daemon_for(settings, clock)
        second.sender.start()
        run_scrapes(second, 3)
        second.shutdown()
        second.sender.join(timeout=20)  # stop() waits a bounded time; the thread must be done before the broker
        tables = [table for _, _, table in consume(broker.bootstrap_servers, topic)]
    keys = sample_keys(tables)
    assert max(keys.values()) == 1  # nothing twice
    assert sum(keys.values()) == 2 * 4 * 4 + 2 * 4 * 2  # 4 intervals before, 2 after the restart
    seqs = sorted({row["seq"] for t in tables for row in t.select(["seq"]).to_pylist()})
    assert seqs == [2, 3, 4, 5, 7, 8]  # numbering continued across the restart (6 primed the new daemon)
