"""SIGKILL workers, then let one finish: every sample is stored once, and nothing half-written is left.

Workers are killed at chosen points (mid-way through a data file, between the data files and the commit
record, after the record, the same inside a compaction, during a rebalance with a second worker) and at
random moments, many times. Small flushes and eager compaction make each run commit often.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest

from fleetmeter.demo.broker import EmbeddedBroker
from fleetmeter.pipeline.warehouse.layout import FileName
from fleetmeter.pipeline.warehouse.manifest import committed_states
from fleetmeter.pipeline.warehouse.storage import Storage
from tests.faults.figures import record
from tests.pipeline.fleet import (
    Row,
    assert_rollups_match,
    hours_ago,
    produce_raw,
    read_table,
    run_collectors,
    samples_frame,
    topic_rows,
    unique_valid,
)

FLEETMETER = str(Path(sys.executable).parent / "fleetmeter")
#: Each deterministic run dies at one of these (see tests/faults/killed_worker.py), in this order.
KILL_POINTS = ["data_write:2", "record_write:3", "record_written:2", "compaction_write:1", "compaction_record:1",
               "data_write:5"]


def start_worker(bootstrap_servers: str, topic: str, warehouse: Path, group_id: str, kill_at: str | None = None,
                 until_idle: bool = True) -> subprocess.Popen[bytes]:
    """A worker process; with ``kill_at`` one that SIGKILLs itself there."""
    command = [sys.executable, "-m", "tests.faults.killed_worker"] if kill_at else [FLEETMETER, "pipeline", "run"]
    environment = os.environ | {"FAULT_KILL_AT": kill_at or ""} | {
        "FLEETMETER_CONSUMER__MAX_POLL_INTERVAL_MS": "3000", "FLEETMETER_CONSUMER__SESSION_TIMEOUT_MS": "4000",
        "FLEETMETER_CONSUMER__HEARTBEAT_INTERVAL_MS": "500", "FLEETMETER_CONSUMER__MAX_POLL_RECORDS": "7",
        "FLEETMETER_FLUSH__MAX_ROWS": "60", "FLEETMETER_WAREHOUSE__COMPACT_MIN_FILES": "3",
        "FLEETMETER_IDLE_S": "1", "FLEETMETER_LOGGING__LEVEL": os.environ.get("FLEETMETER_LOGGING__LEVEL", "warning"),
    }
    return subprocess.Popen(
        [*command, "--bootstrap-servers", bootstrap_servers, "--topic", topic, "--warehouse", str(warehouse),
         "--group-id", group_id, "--metrics-port", "0", *(["--until-idle"] if until_idle else [])],
        env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=Path(__file__).parents[2])


def generations(warehouse: Path) -> int:
    return sum(state.generation for state in committed_states(Storage(str(warehouse))).values())


def fill_topic(kafka_broker: EmbeddedBroker, topic: str, tmp_path: Path, scrapes: int = 150) -> list[Row]:
    """Samples of 3 nodes x 4 GPUs, ``scrapes`` 10 s apart, on two partitions, and one unreadable message;
    the rows sent."""
    kafka_broker.create_topic(topic, partitions=2)
    run_collectors(tmp_path, kafka_broker.bootstrap_servers, topic, start_ms=hours_ago(6), scrapes=scrapes)
    sent = topic_rows(kafka_broker.bootstrap_servers, topic)
    produce_raw(kafka_broker.bootstrap_servers, topic, [(b"junk", b"\x00not arrow")])  # quarantined each time
    return sent


def finish_and_check(kafka_broker: EmbeddedBroker, topic: str, warehouse: Path, sent: list[Row]) -> None:
    """A last worker finishes; the warehouse then holds every sample once and nothing of an unfinished commit."""
    worker = start_worker(kafka_broker.bootstrap_servers, topic, warehouse, "final")
    _, errors = worker.communicate(timeout=120)
    assert worker.returncode == 0, errors.decode()
    expected = unique_valid(sent)
    samples = samples_frame(warehouse)
    assert samples.height == len(expected)
    assert samples.select(pl.struct("device_uuid", "ts").n_unique()).item() == len(expected)
    assert_rollups_match(warehouse, expected)
    assert [row["reason"] for row in read_table(warehouse, "quarantine")] == ["unreadable"]
    record(samples_compared=len(expected), samples_lost=0)
    storage = Storage(str(warehouse))
    states = committed_states(storage)
    for table in ("samples", "util_1m", "util_1h", "quarantine"):
        for path in storage.list_files(table, temporaries=True):
            name = FileName.parse(path)  # None for a half-written temporary, which must be gone
            assert name is not None and name.generation <= states[(name.topic, name.partition)].generation, path


def test_sigkill_at_each_point_of_a_commit_leaves_every_sample_once(kafka_broker: EmbeddedBroker, topic: str,
                                                                    tmp_path: Path) -> None:
    sent = fill_topic(kafka_broker, topic, tmp_path)
    warehouse = tmp_path / "warehouse"
    # A fresh consumer group for each run: it has no committed offsets, so resuming can only come from
    # the warehouse, and no killed member holds partitions until the group expels it.
    for run, point in enumerate(KILL_POINTS):
        worker = start_worker(kafka_broker.bootstrap_servers, topic, warehouse, f"killed-{run}", kill_at=point)
        _, errors = worker.communicate(timeout=120)
        assert worker.returncode == -signal.SIGKILL, (point, errors.decode())
        record(worker_kills=1)
    finish_and_check(kafka_broker, topic, warehouse, sent)


def test_worker_killed_during_a_rebalance(kafka_broker: EmbeddedBroker, topic: str, tmp_path: Path) -> None:
    """The first worker dies committing what it holds when a second one joins; the second takes over."""
    sent = fill_topic(kafka_broker, topic, tmp_path)
    warehouse = tmp_path / "warehouse"
    group = f"{topic}.pair"
    first = start_worker(kafka_broker.bootstrap_servers, topic, warehouse, group, kill_at="rebalance_record:1",
                         until_idle=False)
    deadline = time.monotonic() + 60
    while generations(warehouse) == 0:  # it has the partitions and commits
        assert time.monotonic() < deadline and first.poll() is None, "the first worker never committed"
        time.sleep(0.2)
    second = start_worker(kafka_broker.bootstrap_servers, topic, warehouse, group)
    _, errors = first.communicate(timeout=60)
    assert first.returncode == -signal.SIGKILL, errors.decode()
    record(worker_kills=1)
    _, errors = second.communicate(timeout=120)
    assert second.returncode == 0, errors.decode()
    finish_and_check(kafka_broker, topic, warehouse, sent)


def kill_at_random_points(kills: int, scrapes: int, kafka_broker: EmbeddedBroker, topic: str,
                          tmp_path: Path) -> None:
    """``kills`` workers, each killed at a random moment after its first commit (the group join comes first
    and takes seconds, longer under load); ``scrapes`` must leave work for every one of them."""
    sent = fill_topic(kafka_broker, topic, tmp_path, scrapes)
    warehouse = tmp_path / "warehouse"
    rng = random.Random(int(os.environ.get("CRASH_TEST_SEED", "1")))
    progress = [generations(warehouse)]
    for kill in range(kills):
        worker = start_worker(kafka_broker.bootstrap_servers, topic, warehouse, f"killed-{kill}")
        deadline = time.monotonic() + 60
        while generations(warehouse) == progress[-1] and worker.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(rng.uniform(0.0, 0.5))
        worker.send_signal(signal.SIGKILL)
        assert worker.wait() == -signal.SIGKILL, f"worker {kill} drained the topic before its kill: {progress}"
        record(worker_kills=1)
        progress.append(generations(warehouse))
    assert progress == sorted(set(progress)), f"a worker was killed before it committed anything: {progress}"
    finish_and_check(kafka_broker, topic, warehouse, sent)


def test_sigkill_at_random_points_leaves_every_sample_once(kafka_broker: EmbeddedBroker, topic: str,
                                                           tmp_path: Path) -> None:
    kill_at_random_points(2, 150, kafka_broker, topic, tmp_path)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_sigkill_soak(kafka_broker: EmbeddedBroker, topic: str, tmp_path: Path) -> None:
    kill_at_random_points(40, 1500, kafka_broker, topic, tmp_path)
