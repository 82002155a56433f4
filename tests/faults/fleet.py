"""What fault scenarios share: simulated collectors that keep a ledger of every sample they produced, a
worker running on a thread, and the final comparison of the warehouse with the ledger."""

from __future__ import annotations

import threading
import traceback
from collections import Counter
from pathlib import Path
from typing import Any

import polars as pl

from fleetmeter.collectors.daemon import CollectorDaemon
from fleetmeter.collectors.transport.spool import SpooledMessage
from fleetmeter.pipeline.worker import PipelineWorker
from fleetmeter.schemas import wire
from tests.conftest import StepClock, collector_settings
from tests.faults.figures import record
from tests.pipeline.fleet import Row, assert_rollups_match, samples_frame, unique_valid
from tests.test_kafka_delivery import daemon_for


class Collectors:
    """Simulated collectors (``nodes`` x 4 GPUs) stepping 10 s per scrape; ``ledger`` holds each message
    they put in their spool, which is everything they produced (what was dropped is counted apart)."""

    def __init__(self, tmp_path: Path, bootstrap_servers: str, topic: str, start_ms: int, nodes: int = 3,
                 **overrides: Any) -> None:
        settings = collector_settings(tmp_path / "collector", bootstrap_servers, topic,
                                      simulated={"nodes": nodes, "devices_per_node": 4, "seed": 11}, **overrides)
        self.daemon: CollectorDaemon = daemon_for(settings, StepClock(start_ms=start_ms))
        self.ledger: list[SpooledMessage] = []
        append = self.daemon.spool.append

        def recording_append(message: SpooledMessage) -> None:
            self.ledger.append(message)
            append(message)

        self.daemon.spool.append = recording_append  # type: ignore[method-assign]
        self.daemon.sender.start()

    def scrape(self, scrapes: int) -> None:
        for _ in range(scrapes):
            self.daemon.scrape_once()

    def shutdown(self) -> None:
        self.daemon.shutdown()
        self.daemon.sender.join(timeout=30)

    def produced(self) -> list[Row]:
        """Every row the collectors produced, ``ts`` in epoch ms (as the pipeline test helpers take them)."""
        return self.rows_of(self.ledger)

    @staticmethod
    def rows_of(messages: list[SpooledMessage]) -> list[Row]:
        rows = []
        for message in messages:
            for row in wire.decode(message.value).to_pylist():
                row["ts"] = int(row["ts"].timestamp() * 1000)
                rows.append(row)
        return rows


class WorkerThread:
    """A pipeline worker running until :meth:`stop` (which commits what it holds)."""

    def __init__(self, worker: PipelineWorker) -> None:
        self.worker = worker
        self.errors: list[BaseException] = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.worker.run()
        except BaseException as exc:  # surfaced by stop(): a worker that dies fails the test
            traceback.print_exc()
            self.errors.append(exc)

    def stop(self) -> None:
        self.worker.stopping.set()
        self.thread.join(timeout=60)
        assert not self.thread.is_alive(), "the worker did not stop"
        assert not self.errors, self.errors


def assert_warehouse_holds_exactly(warehouse: Path, produced: list[Row]) -> int:
    """The warehouse's samples are the produced ones, each once, and its rollups add up to them.

    Returns the number of samples compared.
    """
    expected = unique_valid(produced)
    samples = samples_frame(warehouse)
    stored = Counter(samples.select("device_uuid", pl.col("ts").dt.epoch("ms")).iter_rows())
    assert max(stored.values(), default=1) == 1, "a sample is stored twice"
    wanted = {(row["device_uuid"], row["ts"]) for row in expected}
    missing, extra = sorted(wanted - set(stored)), sorted(set(stored) - wanted)
    assert not missing and not extra, (f"{len(missing)} samples missing (the first: {missing[:3]}), {len(extra)} "
                                       f"not produced (the first: {extra[:3]}), of {len(wanted)}")
    assert_rollups_match(warehouse, expected)
    record(samples_compared=len(expected), samples_lost=0)
    return len(expected)
