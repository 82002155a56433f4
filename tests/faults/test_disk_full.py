"""The warehouse's disk fills up under a running worker: it says so, commits nothing half (every table reads
whole at every version), and carries on where it stopped once there is room again.

The warehouse lives on a small tmpfs mounted for the test (root, or CAP_SYS_ADMIN, is needed; the test
is skipped where mounting is not allowed).
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from deltalake import DeltaTable
from deltalake.exceptions import TableNotFoundError

from fleetmeter.demo.broker import EmbeddedBroker
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


def committed_flushes(warehouse: Path) -> int:
    """The samples table's version (each flush ends with a commit to it); -1 before it exists."""
    try:
        return DeltaTable(f"{warehouse}/samples").version()
    except TableNotFoundError:
        return -1


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
        ballast = fill(disk, leave_bytes=150 << 10)  # the tables are created, a few flushes fit
        worker = WorkerThread(PipelineWorker(pipeline_settings(
            kafka_broker.bootstrap_servers, topic, warehouse, flush={"max_rows": 100, "max_delay_s": 1.0})))
        errors = worker.worker.metrics.storage_errors

        def failures() -> float:  # creating the tables, or a flush, whichever the disk refuses
            return sum(errors.labels(operation)._value.get() for operation in ("open", "flush"))

        wait_until(lambda: failures() >= 2, 60, "the worker to hit the full disk twice")
        stuck_at = committed_flushes(warehouse)
        for name in ("samples", "util_1m", "util_1h", "util_1d", "job_devices", "quarantine"):
            with contextlib.suppress(TableNotFoundError):  # a table the full disk did not let the worker create
                DeltaTable(f"{warehouse}/{name}").to_pyarrow_table()  # every committed file is whole and readable
        assert worker.thread.is_alive()
        record(warehouse_write_failures=int(failures()))
        ballast.unlink()
        worker.thread.join(timeout=120)
        assert not worker.thread.is_alive() and not worker.errors, worker.errors

        assert committed_flushes(warehouse) > stuck_at
        assert_warehouse_holds_exactly(warehouse, sent)
