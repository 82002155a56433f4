"""Anomaly detection at scale: ``fleetmeter anomalies`` over 30 days of a 10,240-GPU fleet, on one core, and how
its findings score against what was planted.

The fleet is ``fleetmeter.demo.planted``'s, hour by hour, with ``plant`` anomalies of each kind. Through the
import path every hourly row would be split into sixty minute rows for ``util_1m`` (442 million at this size),
which no detector reads; so the tables they read (``util_1h``, ``util_1d``, ``device_1h``, ``job_devices``) are
written with the pipeline's own rollup code on hour pieces (``rollups.window_pieces``), one Delta commit per
table and day, as ``bench/queries.py`` builds its warehouse. The test suite runs the same fleet, smaller,
through the import path (tests/anomalies/test_evaluation.py).

Timed on one core (the process pinned to CPU 0, polars and Arrow on one thread): each detector on one DuckDB
connection, then a whole ``evaluate`` round as the command runs it (detectors, the ledger, the table's commit).
The false alarms are the findings that match no planted anomaly: the fleet outside what was planted is clean.
On the same warehouse and core, the efficiency queries (docs/efficiency.md) are timed too.
"""

from __future__ import annotations

import itertools
import os
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import duckdb
import polars as pl
import pyarrow as pa

from fleetmeter.anomalies import detectors
from fleetmeter.anomalies.cli import Metrics, evaluate
from fleetmeter.demo.planted import PER_NODE, PlantedFleet, Score, score
from fleetmeter.pipeline import rollups
from fleetmeter.pipeline.warehouse.delta import DeltaWarehouse
from fleetmeter.schemas.warehouse import DEVICE_1H, JOB_DEVICES, UTIL_1D, UTIL_1H, WINDOW_KEYS, app_id
from fleetmeter.sql.catalog import Catalog, canned_queries
from fleetmeter.sql.settings import AnalysisSettings

HOUR_MS = 3_600_000


@dataclass(frozen=True)
class Evaluation:
    devices: int
    days: int
    build_s: float
    detector_s: dict[str, float]
    round_s: float
    scores: dict[str, Score]
    efficiency: dict[str, tuple[float, int]]  # per efficiency query on the same warehouse: seconds, rows

    @property
    def device_days(self) -> int:
        return self.devices * self.days

    def false_alarms(self, kind: str) -> int:
        return self.scores[kind].found - self.scores[kind].found_planted


def build(root: str, fleet: PlantedFleet) -> float:
    """The tables the detectors read, day by day, with the pipeline's rollup code; the seconds it took."""
    started = time.perf_counter()
    warehouse = DeltaWarehouse(root, {}, "bench")
    writer, versions = app_id("bench", "bench", None, 0), itertools.count(1)
    for batch in fleet.batches(0):
        rows = pl.DataFrame(pl.from_arrow(pa.Table.from_batches([batch.rows])))
        pieces = rollups.window_pieces(rows, HOUR_MS)
        per_node = rollups.node_partials(pieces)
        for table, frame in ((UTIL_1H.name, rollups.merge(per_node, WINDOW_KEYS, "1h")),
                             (UTIL_1D.name, rollups.merge(per_node, WINDOW_KEYS, "1d")),
                             (DEVICE_1H.name, rollups.device_hour_partials(pieces)),
                             (JOB_DEVICES.name, rollups.job_device_partials(rows))):
            warehouse.append(table, frame, writer, next(versions))
    return time.perf_counter() - started


def run(devices: int, days: int, plant: int) -> Evaluation:
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    fleet = PlantedFleet("bench", devices // PER_NODE, days, end, plant, seed=5)
    with tempfile.TemporaryDirectory(prefix="fleetmeter-bench-anomalies-") as root:
        build_s = build(root, fleet)
        settings = AnalysisSettings.model_validate({  # H100s dearer and twice as fast: right-sizing weighs models
            "warehouse": root,
            "prices": [{"model": "*", "per_device_hour": 2.0}, {"model": "*H100*", "per_device_hour": 2.5}],
            "economics": [{"model": "*H100*", "throughput": 2.0}, {"model": "*A100*", "throughput": 1.0}]})
        since = fleet.start - timedelta(days=1)
        everything = os.sched_getaffinity(0)
        os.sched_setaffinity(0, {min(everything)})
        pa.set_cpu_count(1)
        try:
            connection = Catalog.open(settings, since).connect()
            latest = detectors.last_hour(connection)
            assert latest is not None
            detector_s = {}
            for kind, detector in detectors.DETECTORS.items():
                started = time.perf_counter()
                detector(connection, settings.anomalies, latest)
                detector_s[kind] = time.perf_counter() - started
            started = time.perf_counter()
            table = evaluate(Catalog.open(settings, since), list(detectors.KINDS), None, Metrics()).table
            round_s = time.perf_counter() - started
            efficiency = {name: _timed(connection, sql) for name, sql in (
                ("efficiency (view, every grain)", "SELECT * FROM efficiency"),
                ("inefficient_jobs", canned_queries()["inefficient_jobs"].read_text()),
                ("rightsizing", canned_queries()["rightsizing"].read_text()))}
        finally:
            os.sched_setaffinity(0, everything)
            pa.set_cpu_count(len(everything))
    return Evaluation(fleet.devices, days, build_s, detector_s, round_s, score(fleet.truth, table), efficiency)


def _timed(connection: duckdb.DuckDBPyConnection, sql: str) -> tuple[float, int]:
    """Seconds to answer ``sql`` (its efficiency measures and right-sizing over the whole fleet), and its rows."""
    started = time.perf_counter()
    rows = connection.sql(sql).to_arrow_table().num_rows
    return time.perf_counter() - started, rows
