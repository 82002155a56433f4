"""The collector's side: a daemon SIGKILLed with messages in its spool, and a spool that fills up."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import polars as pl
from kafka import KafkaConsumer, TopicPartition

from fleetmeter.collectors.transport.spool import decode
from fleetmeter.pipeline.worker import PipelineWorker
from fleetmeter.schemas import wire
from tests.faults.figures import record
from tests.faults.fleet import Collectors, assert_warehouse_holds_exactly
from tests.faults.proxy import broker_behind_relay
from tests.faults.test_broker_faults import wait_until
from tests.faults.test_disk_full import fill, small_disk
from tests.pipeline.fleet import Row, hours_ago, pipeline_settings, samples_frame, topic_rows

FLEETMETER = str(Path(sys.executable).parent / "fleetmeter")


def start_collector(servers: str, topic: str, spool: Path) -> subprocess.Popen[bytes]:
    """``fleetmeter collect``: 2 simulated nodes x 4 GPUs in real time, a scrape a second."""
    environment = os.environ | {"FLEETMETER_CLUSTER": "test", "FLEETMETER_KAFKA__REQUEST_TIMEOUT_MS": "2000",
                                "FLEETMETER_LOGGING__LEVEL": "warning"}
    return subprocess.Popen(
        [FLEETMETER, "collect", "--backend", "simulated", "--bootstrap-servers", servers, "--topic", topic,
         "--spool-dir", str(spool), "--interval", "1", "--metrics-port", "0", "--nodes", "2",
         "--devices-per-node", "4", "--seed", "5"],
        env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def messages_on(servers: str, topic: str) -> int:
    """Messages the topic's one partition holds (its end offset)."""
    consumer = KafkaConsumer(bootstrap_servers=servers)
    try:
        return int(consumer.end_offsets([TopicPartition(topic, 0)])[TopicPartition(topic, 0)])
    finally:
        consumer.close()


def spooled_rows(spool: Path) -> set[tuple[str, int]]:
    """(device_uuid, ts in ms) of every row in the spool's messages."""
    keys = set()
    for path in spool.glob("*.msg"):
        for row in wire.decode(decode(path.read_bytes()).value).select(["device_uuid", "ts"]).to_pylist():
            keys.add((row["device_uuid"], int(row["ts"].timestamp() * 1000)))
    return keys


def gaps_per_device(rows: list[Row]) -> dict[str, int]:
    """How often each device's rows do not follow on from the one before (a row covers [ts, ts + interval_s))."""
    by_device: dict[str, dict[int, Row]] = defaultdict(dict)
    for row in rows:
        by_device[row["device_uuid"]][row["ts"]] = row
    gaps = {}
    for device, by_ts in by_device.items():
        ordered = [by_ts[ts] for ts in sorted(by_ts)]
        gaps[device] = sum(1 for row, following in itertools.pairwise(ordered)
                           if row["ts"] + round(row["interval_s"] * 1000) != following["ts"])
    return gaps


def test_collector_killed_with_a_full_spool_resends_it_after_restart(topic: str, tmp_path: Path) -> None:
    spool, warehouse = tmp_path / "spool", tmp_path / "warehouse"
    with broker_behind_relay() as (broker, relay, servers):
        broker.create_topic(topic, 1)
        collector = start_collector(servers, topic, spool)
        wait_until(lambda: messages_on(broker.bootstrap_servers, topic) >= 4, 30, "two scrapes to reach the topic")
        relay.cut()
        wait_until(lambda: len(spooled_rows(spool)) >= 8 * 3, 30, "three scrapes to fill the spool")
        collector.send_signal(signal.SIGKILL)
        collector.wait()
        record(collector_kills=1)
        in_spool = spooled_rows(spool)
        relay.restore()
        # The restarted daemon sends the spool, then its own scrapes: the first only primes its counters, so
        # wait for two more (a message per node each).
        expected = messages_on(broker.bootstrap_servers, topic) + len(list(spool.glob("*.msg"))) + 2 * 2
        collector = start_collector(servers, topic, spool)
        wait_until(lambda: messages_on(broker.bootstrap_servers, topic) >= expected, 60,
                   "the restarted collector to send its spool and two scrapes")
        collector.send_signal(signal.SIGTERM)
        _, errors = collector.communicate(timeout=30)
        assert collector.returncode == 0, errors.decode()
        sent = topic_rows(broker.bootstrap_servers, topic)
        PipelineWorker(pipeline_settings(broker.bootstrap_servers, topic, warehouse)).run()

    assert len(in_spool) >= 8 * 2, "the spool held little when the daemon was killed"
    assert in_spool <= {(row["device_uuid"], row["ts"]) for row in sent}, "spooled samples were lost"
    assert_warehouse_holds_exactly(warehouse, sent)
    # What the kill costs: the interval between the last spooled scrape and the restarted daemon's first
    # reading has no row (the new daemon's first reading only primes). Nothing else is missing.
    assert set(gaps_per_device(sent).values()) == {1}


def drain_and_store(collectors: Collectors, servers: str, topic: str, warehouse: Path) -> None:
    """Let the collectors send their spool, stop them, and store the topic."""
    wait_until(lambda: collectors.daemon.spool.messages == 0, 60, "the spool to drain")
    collectors.shutdown()
    PipelineWorker(pipeline_settings(servers, topic, warehouse)).run()


def assert_stored_or_counted(collectors: Collectors, warehouse: Path) -> tuple[set[tuple[str, int]], float]:
    """Every sample produced is stored or counted as dropped; the keys stored and the count dropped."""
    dropped = collectors.daemon.health.samples_dropped.labels("spool_full")._value.get()
    stored = samples_frame(warehouse)
    assert stored.height + dropped == len(collectors.produced())
    return set(stored.select("device_uuid", pl.col("ts").dt.epoch("ms")).iter_rows()), dropped


def test_a_full_spool_drops_the_oldest_and_counts_exactly_what_it_dropped(topic: str, tmp_path: Path) -> None:
    warehouse = tmp_path / "warehouse"
    with broker_behind_relay() as (broker, relay, servers):
        broker.create_topic(topic, 1)
        relay.cut()
        collectors = Collectors(tmp_path, servers, topic, start_ms=hours_ago(3),
                                spool={"dir": tmp_path / "spool", "max_bytes": 100_000})
        collectors.scrape(120)
        relay.restore()
        drain_and_store(collectors, broker.bootstrap_servers, topic, warehouse)

    stored_keys, dropped = assert_stored_or_counted(collectors, warehouse)
    assert dropped > 0
    record(samples_dropped_and_counted=int(dropped))
    newest = Collectors.rows_of(collectors.ledger[-10:])
    assert {(row["device_uuid"], row["ts"]) for row in newest} <= stored_keys  # it is old messages that go
    assert_warehouse_holds_exactly(warehouse, [row for row in collectors.produced()
                                               if (row["device_uuid"], row["ts"]) in stored_keys])


def test_a_full_spool_filesystem_drops_the_oldest_counts_them_and_recovers(topic: str, tmp_path: Path) -> None:
    """The spool's filesystem fills up while the broker is away: the collector keeps scraping (it used to exit
    at its next sequence-number save, blaming /metrics), drops the oldest messages for room, counts every
    sample it could not keep, and spools and sends again once there is room."""
    warehouse = tmp_path / "warehouse"
    with small_disk(tmp_path / "disk") as disk, broker_behind_relay() as (broker, relay, servers):
        broker.create_topic(topic, 1)
        relay.cut()
        collectors = Collectors(tmp_path, servers, topic, start_ms=hours_ago(3), spool={"dir": disk / "spool"})
        ballast = fill(disk, leave_bytes=40 << 10)
        collectors.scrape(120)
        dropped = collectors.daemon.health.samples_dropped.labels("spool_full")._value.get()
        assert dropped > 0 and collectors.daemon.spool.messages > 0
        ballast.unlink()
        collectors.scrape(20)  # room again: these are spooled whole
        relay.restore()
        drain_and_store(collectors, broker.bootstrap_servers, topic, warehouse)

    stored_keys, dropped = assert_stored_or_counted(collectors, warehouse)
    newest = Collectors.rows_of(collectors.ledger[-10:])
    assert {(row["device_uuid"], row["ts"]) for row in newest} <= stored_keys
    record(samples_dropped_and_counted=int(dropped))
