"""Query latency in DuckDB on a warehouse of ``days`` days of a ``devices``-GPU fleet.

Building such a warehouse through the worker would take hours here (30 days of 10,000 devices at 10 s is
2.6 billion samples), so its tables are written with the pipeline's own rollup code and Delta appends: one
template day of 128 simulated GPUs is rolled up (``rollups.minute_pieces``, ``node_partials`` and ``merge``, as
a flush does), and the rollup rows are copied per device group (node and job names made unique) and per day, one
Delta commit per table and day (``DeltaWarehouse.append``: the catalogue's schema and partitions), so that
each partition holds one file, as after compaction. The rollups hold what the worker would store for such
a fleet, one row per key and window; the template is sampled every 60 s instead of 10 s, which changes only
the ``samples`` counts, not the device-seconds or the number of rollup rows. ``samples`` and ``util_1m`` are
written for the last ``sample_days`` days only (``samples`` from the same 60 s rows, so it holds a sixth of
what a 10 s fleet would: its query times are a lower bound); none of the three questions reads ``util_1m``.
``job_devices`` stays empty: no question reads it.

The three questions are asked of the rollups (the canned queries, or the rollup part of the capacity
one) and of ``samples`` with the same filters; the answers are compared before the times are reported.
"""

from __future__ import annotations

import itertools
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import duckdb
import numpy as np
import polars as pl

from bench.fleet import DEVICES_PER_NODE, TEMPLATE_NODES, template_rows
from bench.storage import stored
from fleetmeter.pipeline import rollups
from fleetmeter.pipeline.warehouse.delta import DeltaWarehouse
from fleetmeter.schemas.warehouse import SAMPLES, UTIL_1D, UTIL_1H, UTIL_1M, WINDOW_KEYS, app_id
from fleetmeter.sql.catalog import Catalog, canned_queries
from fleetmeter.sql.settings import AnalysisSettings, Price

TEMPLATE_INTERVAL_S = 60.0
DAY = timedelta(days=1)

#: The three questions asked of samples: the same answers as the rollup queries, computed row by row.
FROM_SAMPLES = {
    "utilization_by_tenant_day": """
        SELECT date_trunc('day', ts) AS day, tenant,
               sum(interval_s * coalesce(share, 1)) / 3600 AS device_hours,
               sum(util_compute * interval_s * coalesce(share, 1)) / 3600 AS busy_device_hours
        FROM samples WHERE ts >= getvariable('since') GROUP BY ALL ORDER BY day, device_hours DESC, tenant""",
    "waste_by_job": """
        SELECT cluster, tenant, job_id,
               sum(interval_s * coalesce(share, 1)) / 3600 AS allocated_device_hours,
               sum(interval_s * coalesce(share, 1)) FILTER (WHERE util_compute < getvariable('idle_threshold'))
                   / 3600 AS idle_device_hours
        FROM samples WHERE tenant <> 'unallocated' AND ts >= getvariable('since') GROUP BY ALL
        HAVING idle_device_hours > 0 ORDER BY idle_device_hours DESC, tenant, job_id""",
    "fleet_capacity_hourly": """
        SELECT date_trunc('hour', ts) AS hour, cluster, model,
               sum(interval_s * coalesce(share, 1)) / 3600 AS device_equivalents,
               sum(util_compute * interval_s * coalesce(share, 1)) / 3600 AS busy_equivalents
        FROM samples WHERE ts >= getvariable('since') GROUP BY ALL ORDER BY hour, cluster, model""",
}
#: The rollup side of the capacity question (the canned query adds devices seen, counted from samples).
CAPACITY_FROM_ROLLUPS = """
    SELECT window_start AS hour, cluster, model, sum(device_hours) AS device_equivalents,
           sum(busy_seconds) / 3600 AS busy_equivalents
    FROM util_1h WHERE window_start >= getvariable('since') GROUP BY ALL ORDER BY hour, cluster, model"""
#: The columns of each rollup answer that the samples answer has too, to compare them.
COMPARED = {"utilization_by_tenant_day": ["day", "tenant", "device_hours", "busy_device_hours"],
            "waste_by_job": ["cluster", "tenant", "job_id", "allocated_device_hours", "idle_device_hours"],
            "fleet_capacity_hourly": ["hour", "cluster", "model", "device_equivalents", "busy_equivalents"]}


@dataclass(frozen=True)
class QueryTimes:
    name: str
    rollups_ms: float  # over every day
    rollups_recent_ms: float  # over the days samples/ holds
    samples_ms: float  # the same, from samples
    rows: int

    @property
    def ratio(self) -> float:
        return self.samples_ms / self.rollups_recent_ms


@dataclass(frozen=True)
class Warehouse:
    devices: int
    days: int
    sample_days: int
    bytes_by_table: dict[str, int]
    rows_by_table: dict[str, int]
    build_s: float


def build(root: str, devices: int, days: int, sample_days: int, end: datetime) -> Warehouse:
    """Write the warehouse: rollups for ``days`` days, samples for the last ``sample_days``, ending at ``end``."""
    started = time.perf_counter()
    copies = max(1, devices // (TEMPLATE_NODES * DEVICES_PER_NODE))
    first_day = end - days * DAY
    template = template_rows(int(86_400 / TEMPLATE_INTERVAL_S), TEMPLATE_INTERVAL_S, first_day)
    minutes = rollups.node_partials(rollups.minute_pieces(template))
    daily = {UTIL_1H.name: rollups.merge(minutes, WINDOW_KEYS, "1h"), UTIL_1M.name: minutes, SAMPLES.name: template}
    warehouse = DeltaWarehouse(root, {}, "bench")
    writer, versions = app_id("bench", "bench", None, 0), itertools.count(1)  # a transaction, as a worker's
    for day in range(days):
        for table, frame in daily.items():
            if table != UTIL_1H.name and day < days - sample_days:
                continue  # no question reads util_1m; samples only for the comparison
            time_column = "ts" if table == SAMPLES.name else "window_start"
            copied = _copies(frame.with_columns(pl.col(time_column) + day * DAY), copies, day)
            warehouse.append(table, copied, writer, next(versions))
    one_day = rollups.merge(minutes, WINDOW_KEYS, "1d")
    all_days = pl.concat([_copies(one_day.with_columns(pl.col("window_start") + day * DAY), copies, day)
                          for day in range(days)])
    warehouse.append(UTIL_1D.name, all_days, writer, next(versions))  # a file per month, as after compaction
    tables = [UTIL_1M.name, UTIL_1H.name, UTIL_1D.name, SAMPLES.name]
    sizes = {table: stored(root, table) for table in tables}
    return Warehouse(devices, days, sample_days, {table: size.bytes for table, size in sizes.items()},
                     {table: size.rows for table, size in sizes.items()}, time.perf_counter() - started)


def _copies(frame: pl.DataFrame, copies: int, day: int) -> pl.DataFrame:
    """``copies`` device groups like ``frame``'s, named apart (and a day's jobs apart from another day's)."""
    names = [name for name in ("node", "device_uuid", "job_id") if name in frame.columns]
    return pl.concat([frame.with_columns(pl.col(name) + f"-d{day:02d}c{copy:04d}" for name in names)
                      for copy in range(copies)])


def measure(root: str, since_all: datetime, since_recent: datetime, repeats: int = 5) -> list[QueryTimes]:
    settings = AnalysisSettings(warehouse=root, prices=[Price(model="*H100*", per_device_hour=2.5)])
    queries = canned_queries()
    results = []
    for name, samples_sql in FROM_SAMPLES.items():
        rollup_sql = CAPACITY_FROM_ROLLUPS if name == "fleet_capacity_hourly" else queries[name].read_text()
        connection_all = Catalog.open(settings, since_all).connect()
        connection_recent = Catalog.open(settings, since_recent).connect()
        rollup_all_ms = _median_ms(lambda c=connection_all, q=rollup_sql: c.sql(q).to_arrow_table(), repeats)
        rollup_recent_ms = _median_ms(lambda c=connection_recent, q=rollup_sql: c.sql(q).to_arrow_table(), repeats)
        samples_ms = _median_ms(lambda c=connection_recent, q=samples_sql: c.sql(q).to_arrow_table(), repeats)
        _same_answer(name, connection_recent.sql(rollup_sql), connection_recent.sql(samples_sql))
        rows = connection_all.sql(rollup_sql).to_arrow_table().num_rows
        results.append(QueryTimes(name, rollup_all_ms, rollup_recent_ms, samples_ms, rows))
    return results


def _median_ms(run: Callable[[], object], repeats: int) -> float:
    run()  # the first run reads the Parquet footers into the OS cache; time the steady ones
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def _same_answer(name: str, from_rollups: duckdb.DuckDBPyRelation, from_samples: duckdb.DuckDBPyRelation) -> None:
    columns = COMPARED[name]
    keys = [c for c in columns if not c.endswith(("hours", "equivalents"))]
    answers = []
    for relation in (from_rollups, from_samples):
        frame = pl.from_arrow(relation.to_arrow_table())
        assert isinstance(frame, pl.DataFrame)
        answers.append(frame.select(columns).sort(keys, nulls_last=True))
    left, right = answers
    same = left.height == right.height and left.select(keys).equals(right.select(keys)) and all(
        np.allclose(left[c].fill_null(0).to_numpy(), right[c].fill_null(0).to_numpy(), rtol=1e-9)
        for c in columns if c not in keys)
    if not same:
        raise AssertionError(f"{name}: the rollups and samples answer differently ({left.height} and "
                             f"{right.height} rows)")


def midnight(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
