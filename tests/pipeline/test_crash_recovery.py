"""SIGKILL a worker at random moments, many times, then let one finish: every sample is stored once.

Small flushes and eager compaction make each run commit often, so the kills land between and inside
commits: while data files are written, between the files and the commit record, during compaction.
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

from fleetmeter.embedded_broker import EmbeddedBroker
from pipeline.warehouse.layout import FileName
from pipeline.warehouse.manifest import committed_states
from pipeline.warehouse.storage import Storage
from tests.pipeline.fleet import (
    assert_windows_match,
    hours_ago,
    produce_raw,
    read_table,
    run_collectors,
    samples_frame,
    topic_rows,
    unique_valid,
)

FLEETMETER = str(Path(sys.executable).parent / "fleetmeter")


def start_worker(bootstrap_servers: str, topic: str, warehouse: Path, group_id: str) -> subprocess.Popen[bytes]:
    environment = os.environ | {
        "FLEETMETER_CONSUMER__MAX_POLL_INTERVAL_MS": "3000", "FLEETMETER_CONSUMER__SESSION_TIMEOUT_MS": "4000",
        "FLEETMETER_CONSUMER__HEARTBEAT_INTERVAL_MS": "500", "FLEETMETER_CONSUMER__MAX_POLL_RECORDS": "7",
        "FLEETMETER_FLUSH__MAX_ROWS": "60", "FLEETMETER_WAREHOUSE__COMPACT_MIN_FILES": "3",
        "FLEETMETER_IDLE_S": "1", "FLEETMETER_LOGGING__LEVEL": os.environ.get("FLEETMETER_LOGGING__LEVEL", "warning"),
    }
    return subprocess.Popen(
        [FLEETMETER, "pipeline", "run", "--bootstrap-servers", bootstrap_servers, "--topic", topic,
         "--warehouse", str(warehouse), "--group-id", group_id, "--until-idle", "--metrics-port", "0"],
        env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def generations(warehouse: Path) -> int:
    return sum(state.generation for state in committed_states(Storage(str(warehouse))).values())


def kill_at_random_points(kills: int, kafka_broker: EmbeddedBroker, topic: str, tmp_path: Path) -> None:
    kafka_broker.create_topic(topic, partitions=2)
    run_collectors(tmp_path, kafka_broker.bootstrap_servers, topic, start_ms=hours_ago(3), scrapes=150)
    sent = topic_rows(kafka_broker.bootstrap_servers, topic)
    produce_raw(kafka_broker.bootstrap_servers, topic, [(b"junk", b"\x00not arrow")])  # quarantined each time
    warehouse = tmp_path / "warehouse"
    rng = random.Random(int(os.environ.get("CRASH_TEST_SEED", "1")))
    progress = []
    # A fresh consumer group for each run: it has no committed offsets, so resuming can only come from
    # the warehouse, and no killed member holds partitions until the group expels it.
    for kill in range(kills):
        worker = start_worker(kafka_broker.bootstrap_servers, topic, warehouse, f"killed-{kill}")
        time.sleep(rng.uniform(3.0, 6.0))  # the group join takes about 3 s; processing follows
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        progress.append(generations(warehouse))
    worker = start_worker(kafka_broker.bootstrap_servers, topic, warehouse, "final")
    _, errors = worker.communicate(timeout=120)
    assert worker.returncode == 0, errors.decode()

    assert len(set(progress)) > 1, f"the kills never landed between commits: {progress}"
    expected = unique_valid(sent)
    samples = samples_frame(warehouse)
    assert samples.height == len(expected)
    assert samples.select(pl.struct("device_uuid", "ts").n_unique()).item() == len(expected)
    assert_windows_match(read_table(warehouse, "util_1m"), expected, "1m", with_node=True)
    assert_windows_match(read_table(warehouse, "util_1h"), expected, "1h", with_node=False)
    assert [row["reason"] for row in read_table(warehouse, "quarantine")] == ["unreadable"]
    storage = Storage(str(warehouse))
    states = committed_states(storage)
    for path in storage.list_files("samples"):  # nothing of an unfinished commit is left behind
        name = FileName.parse(path)
        assert name is not None and name.generation <= states[(name.topic, name.partition)].generation


def test_sigkill_at_random_points_leaves_every_sample_once(kafka_broker: EmbeddedBroker, topic: str,
                                                           tmp_path: Path) -> None:
    kill_at_random_points(6, kafka_broker, topic, tmp_path)


@pytest.mark.slow
def test_sigkill_soak(kafka_broker: EmbeddedBroker, topic: str, tmp_path: Path) -> None:
    kill_at_random_points(40, kafka_broker, topic, tmp_path)
