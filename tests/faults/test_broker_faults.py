"""The broker goes away while collectors and a worker run: collectors spool, then replay; the warehouse ends
up with every sample they produced, once.

Two ways to lose the broker: a relay in front of it is cut (an outage or a partition; the broker keeps its
data), or the broker is stopped and started again with its data gone (Tansu keeps topics in memory), so
the topic is created anew and its offsets start again from zero.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
from kafka import TopicPartition

from fleetmeter.demo.broker import EmbeddedBroker
from fleetmeter.pipeline.worker import PipelineWorker
from tests.faults.fleet import Collectors, WorkerThread, assert_warehouse_holds_exactly
from tests.faults.proxy import broker_behind_relay
from tests.pipeline.fleet import hours_ago, pipeline_settings, samples_frame, unique_valid

PARTITIONS = 2


def wait_until(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def worker_for(servers: str, topic: str, warehouse: Path) -> WorkerThread:
    """A worker that runs through the fault, once the group has given it the partitions."""
    worker = WorkerThread(PipelineWorker(pipeline_settings(servers, topic, warehouse, until_idle=False,
                                                           flush={"max_rows": 200, "max_delay_s": 1.0})))
    wait_until(lambda: len(worker.worker.writers) == PARTITIONS, 30, "the worker to join")
    return worker


def drain(servers: str, topic: str, warehouse: Path) -> None:
    """A last worker of the same group (the warehouse refuses any other) reads what the one that ran through
    the fault left."""
    PipelineWorker(pipeline_settings(servers, topic, warehouse)).run()


def scrape_for(collectors: Collectors, seconds: float) -> int:
    """Scrape every 0.1 s of wall time (10 s of fleet time each) for ``seconds``; the scrapes made."""
    scrapes = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        collectors.scrape(1)
        scrapes += 1
        time.sleep(0.1)
    return scrapes


def outage(tmp_path: Path, topic: str, outage_s: float) -> None:
    warehouse = tmp_path / "warehouse"
    with broker_behind_relay() as (broker, relay, servers):
        broker.create_topic(topic, PARTITIONS)
        # at most one scrape (10 s of fleet time) per 0.1 s of outage: the fleet's clock stays behind the real
        # one, or the last samples would be quarantined as ts_in_future
        collectors = Collectors(tmp_path, servers, topic, start_ms=hours_ago(1 + outage_s * 100 / 3600))
        worker = worker_for(servers, topic, warehouse)
        collectors.scrape(20)
        relay.cut()
        scrapes = scrape_for(collectors, outage_s)
        spooled = collectors.daemon.spool.messages
        relay.restore()
        collectors.scrape(20)
        wait_until(lambda: collectors.daemon.spool.messages == 0, 90, "the spool to drain")
        collectors.shutdown()
        worker.stop()
        drain(servers, topic, warehouse)

    assert scrapes * 10 >= 60 and spooled >= scrapes, (scrapes, spooled)  # minutes of fleet time spooled
    assert collectors.daemon.health.kafka_send_errors._value.get() > 0
    assert collectors.daemon.spool.dropped_rows == 0
    assert_warehouse_holds_exactly(warehouse, collectors.produced())


def test_broker_outage_collectors_spool_then_replay(topic: str, tmp_path: Path) -> None:
    outage(tmp_path, topic, outage_s=8)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_broker_outage_of_three_minutes(topic: str, tmp_path: Path) -> None:
    outage(tmp_path, topic, outage_s=180)


def test_broker_restarted_with_its_data_gone(topic: str, tmp_path: Path) -> None:
    warehouse = tmp_path / "warehouse"
    with broker_behind_relay() as (broker, relay, servers):
        broker.create_topic(topic, PARTITIONS)
        collectors = Collectors(tmp_path, servers, topic, start_ms=hours_ago(3))
        worker = worker_for(servers, topic, warehouse)
        collectors.scrape(20)
        # What the broker acknowledged and the worker stored survives the broker; what it acknowledged and
        # nobody read yet dies with it (Kafka's answer is replication). So the worker catches up first.
        stored_all = len(unique_valid(collectors.produced()))
        wait_until(lambda: samples_frame(warehouse).height == stored_all, 60, "the worker to catch up")
        assignments: list[set[int]] = []  # the partitions of each assignment the group gives after the restart
        assigned = worker.worker.assigned

        def recording_assigned(partitions: set[TopicPartition]) -> None:
            assigned(partitions)
            assignments.append({tp.partition for tp in partitions})

        worker.worker.assigned = recording_assigned  # type: ignore[method-assign]
        relay.cut()
        broker.stop()
        collectors.scrape(30)
        spooled = collectors.daemon.spool.messages
        # The topic is created on the new broker before any client can reach it (the relay stays cut until
        # then), as an operator re-provisions it: Tansu acknowledges messages for a topic that does not exist
        # yet, and a CreateTopics racing them restarts the partitions' offsets under the messages already
        # stored, so later messages reuse offsets and readers stop short of acknowledged ones. The new
        # broker advertises its own address, so the topic is created without the relay; clients reach it
        # through the relay once restored, then directly.
        restarted = EmbeddedBroker(port=broker.port).start()
        try:
            restarted.create_topic(topic, PARTITIONS)
            relay.restore()
            collectors.scrape(10)
            wait_until(lambda: collectors.daemon.spool.messages == 0, 90, "the spool to drain")
            collectors.shutdown()
            resets = worker.worker.metrics.log_resets.labels("topic_recreated")
            wait_until(lambda: resets._value.get() > 0, 30, "the worker to notice the new topic")
            # and to hold its partitions from the new broker's group: a worker stopped while it rejoins sends
            # LeaveGroup during its JoinGroup, after which Tansu answered every SyncGroup of the group (the drain's)
            # with REBALANCE_IN_PROGRESS until the test timed out
            wait_until(lambda: len(worker.worker.writers) == PARTITIONS
                       and any(len(partitions) == PARTITIONS for partitions in assignments),
                       30, "the new broker's group to give the worker the partitions")
            worker.stop()
            drain(servers, topic, warehouse)
        finally:
            restarted.stop()

    assert spooled >= 30
    assert_warehouse_holds_exactly(warehouse, collectors.produced())
