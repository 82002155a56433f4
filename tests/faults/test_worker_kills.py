"""SIGKILL workers of one consumer group, then let one finish: every sample is stored once, as delta-rs reads
the tables.

Workers are killed at chosen points (between two tables' commits of a flush, just before and after a
compaction's replace, during a rebalance with a second worker) and at random moments, many times (inside
delta-rs's own writes too). Small flushes and eager compaction make each run commit often.
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
from deltalake import DeltaTable
from deltalake.exceptions import TableNotFoundError

from fleetmeter.demo.broker import EmbeddedBroker
from tests.faults.figures import record
from tests.pipeline.fleet import (
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
KILL_POINTS = ["table_committed:2", "table_committed:8", "compaction_replace:1", "compaction_replaced:1",
               "table_committed:4"]
GROUP = "workers"


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


def commits(warehouse: Path) -> int:
    """The samples table's version: how many flushes the workers have finished (0: none, or no table yet)."""
    try:
        return DeltaTable(f"{warehouse}/samples").version()
    except TableNotFoundError:
        return 0


def fill_topic(kafka_broker: EmbeddedBroker, topic: str, tmp_path: Path, scrapes: int = 150) -> None:
    """Samples of 3 nodes x 4 GPUs, ``scrapes`` 10 s apart, on two partitions, and one unreadable message."""
    kafka_broker.create_topic(topic, partitions=2)
    run_collectors(tmp_path, kafka_broker.bootstrap_servers, topic, start_ms=hours_ago(6), scrapes=scrapes)
    produce_raw(kafka_broker.bootstrap_servers, topic, [(b"junk", b"\x00not arrow")])  # quarantined each time


def finish_and_check(kafka_broker: EmbeddedBroker, topic: str, warehouse: Path) -> None:
    """A last worker of the group finishes; the warehouse then holds every sample sent to the topic once."""
    sent = topic_rows(kafka_broker.bootstrap_servers, topic)
    worker = start_worker(kafka_broker.bootstrap_servers, topic, warehouse, GROUP)
    _, errors = worker.communicate(timeout=120)
    assert worker.returncode == 0, errors.decode()
    expected = unique_valid(sent)
    samples = samples_frame(warehouse)
    assert samples.height == len(expected)
    assert samples.select(pl.struct("device_uuid", "ts").n_unique()).item() == len(expected)
    assert_rollups_match(warehouse, expected)
    assert [row["reason"] for row in read_table(warehouse, "quarantine")] == ["unreadable"]
    record(samples_compared=len(expected), samples_lost=0)


def test_sigkill_at_each_point_of_a_commit_leaves_every_sample_once(kafka_broker: EmbeddedBroker, topic: str,
                                                                    tmp_path: Path) -> None:
    fill_topic(kafka_broker, topic, tmp_path, scrapes=40)
    warehouse = tmp_path / "warehouse"
    # One consumer group throughout (the warehouse refuses any other): each worker resumes from the tables'
    # transactions, once the group has expelled the killed member. Each run gets scrapes of its own to commit:
    # a worker compacts once it has drained the topic, and the next must have appends of its own to compact.
    for run, point in enumerate(KILL_POINTS):
        start_ms = hours_ago(6) + (40 + run * 30) * 10_000
        run_collectors(tmp_path, kafka_broker.bootstrap_servers, topic, start_ms, scrapes=30, name=f"spool-{run}")
        worker = start_worker(kafka_broker.bootstrap_servers, topic, warehouse, GROUP, kill_at=point)
        _, errors = worker.communicate(timeout=120)
        assert worker.returncode == -signal.SIGKILL, (point, errors.decode())
        record(worker_kills=1)
    finish_and_check(kafka_broker, topic, warehouse)


def test_worker_killed_during_a_rebalance(kafka_broker: EmbeddedBroker, topic: str, tmp_path: Path) -> None:
    """The first worker dies committing what it holds when a second one joins; the second takes over."""
    fill_topic(kafka_broker, topic, tmp_path)
    warehouse = tmp_path / "warehouse"
    first = start_worker(kafka_broker.bootstrap_servers, topic, warehouse, GROUP, kill_at="rebalance_commit:1",
                         until_idle=False)
    deadline = time.monotonic() + 60
    while commits(warehouse) == 0:  # it has the partitions and commits
        assert time.monotonic() < deadline and first.poll() is None, "the first worker never committed"
        time.sleep(0.2)
    second = start_worker(kafka_broker.bootstrap_servers, topic, warehouse, GROUP)
    _, errors = first.communicate(timeout=60)
    assert first.returncode == -signal.SIGKILL, errors.decode()
    record(worker_kills=1)
    _, errors = second.communicate(timeout=120)
    assert second.returncode == 0, errors.decode()
    finish_and_check(kafka_broker, topic, warehouse)


def kill_at_random_points(kills: int, scrapes: int, kafka_broker: EmbeddedBroker, topic: str,
                          tmp_path: Path) -> None:
    """``kills`` workers, each killed at a random moment after its first commit (the group join comes first
    and takes seconds, longer under load); ``scrapes`` must leave work for every one of them."""
    fill_topic(kafka_broker, topic, tmp_path, scrapes)
    warehouse = tmp_path / "warehouse"
    rng = random.Random(int(os.environ.get("CRASH_TEST_SEED", "1")))
    progress = [commits(warehouse)]
    for kill in range(kills):
        worker = start_worker(kafka_broker.bootstrap_servers, topic, warehouse, GROUP)
        deadline = time.monotonic() + 60
        while commits(warehouse) == progress[-1] and worker.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(rng.uniform(0.0, 0.5))
        worker.send_signal(signal.SIGKILL)
        assert worker.wait() == -signal.SIGKILL, f"worker {kill} drained the topic before its kill: {progress}"
        record(worker_kills=1)
        progress.append(commits(warehouse))
    assert progress == sorted(set(progress)), f"a worker was killed before it committed anything: {progress}"
    finish_and_check(kafka_broker, topic, warehouse)


def test_sigkill_at_random_points_leaves_every_sample_once(kafka_broker: EmbeddedBroker, topic: str,
                                                           tmp_path: Path) -> None:
    kill_at_random_points(2, 150, kafka_broker, topic, tmp_path)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_sigkill_soak(kafka_broker: EmbeddedBroker, topic: str, tmp_path: Path) -> None:
    kill_at_random_points(40, 1500, kafka_broker, topic, tmp_path)
