"""The warehouse's disk fills up under a running worker: it says so, writes no broken file, commits nothing
half, and carries on where it stopped once there is room again.

The warehouse lives on a small tmpfs mounted for the test (root, or CAP_SYS_ADMIN, is needed; the test
is skipped where mounting is not allowed).
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from fleetmeter.demo.broker import EmbeddedBroker
from fleetmeter.pipeline.warehouse.manifest import committed_states
from fleetmeter.pipeline.warehouse.storage import Storage
from fleetmeter.pipeline.worker import PipelineWorker
from tests.faults.figures import record
from tests.faults.fleet import WorkerThread, assert_warehouse_holds_exactly
from tests.faults.test_broker_faults import wait_until
from tests.pipeline.fleet import hours_ago, pipeline_settings, run_collectors, topic_rows

DISK_BYTES = 8 << 20


@contextlib.contextmanager
def small_disk(path: Path) -> Iterator[Path]:
    path.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={DISK_BYTES}", "tmpfs", str(path)],
                             capture_output=True, check=False)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(disk: Path, leave_bytes: int) -> Path:
    """A ballast file that leaves ``leave_bytes`` free on ``disk``."""
    ballast = disk / "ballast"
    ballast.write_bytes(b"\0" * (shutil.disk_usage(disk).free - leave_bytes))
    return ballast


def test_a_full_disk_pauses_the_worker_which_resumes_when_space_returns(kafka_broker: EmbeddedBroker, topic: str,
                                                                      tmp_path: Path) -> None:
    kafka_broker.create_topic(topic, partitions=2)
    run_collectors(tmp_path, kafka_broker.bootstrap_servers, topic, start_ms=hours_ago(3), scrapes=150)
    sent = topic_rows(kafka_broker.bootstrap_servers, topic)
    with small_disk(tmp_path / "disk") as disk:
        warehouse = disk / "warehouse"
        ballast = fill(disk, leave_bytes=40 << 10)
        worker = WorkerThread(PipelineWorker(pipeline_settings(
            kafka_broker.bootstrap_servers, topic, warehouse, flush={"max_rows": 100, "max_delay_s": 1.0})))
        errors = worker.worker.metrics.storage_errors.labels("flush")
        wait_until(lambda: errors._value.get() >= 2, 60, "the worker to hit the full disk twice")
        storage = Storage(str(warehouse))
        stuck_at = {key: state.generation for key, state in committed_states(storage).items()}
        for path in storage.list_files("", temporaries=True):  # whatever is there is whole and readable
            assert not path.endswith(".tmp"), f"half-written file left: {path}"
            if path.endswith(".parquet"):
                pq.read_metadata(storage.full_path(path))
        assert worker.thread.is_alive()
        record(warehouse_write_failures=int(errors._value.get()))
        ballast.unlink()
        worker.thread.join(timeout=120)
        assert not worker.thread.is_alive() and not worker.errors, worker.errors

        assert any(state.generation > stuck_at.get(key, 0) for key, state in committed_states(storage).items())
        assert_warehouse_holds_exactly(warehouse, sent)
