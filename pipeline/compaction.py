"""Compaction: merge what flushes appended to a Delta partition, one partition per call, between polls.

A rollup or job partition's partials are merged into one row per key (the catalogue's merge rules, by the
rollup code) and replace the partition's files in one commit; a samples or quarantine partition (records,
nothing to merge) is rewritten into one sorted file once, when it is closed, so a sample is written twice.

Every compaction is a Delta overwrite of just that partition, whose commit fails if any other commit touched
the partition since it was read. delta-rs 1.6's ``optimize.compact`` is not used: two of them on one
partition (two workers, or one with a stale snapshot) both commit, and every row of it is then stored twice.

Either leaves every merged figure as it was, so it records no Kafka offsets and needs no fence: a replace
that races another worker's append to the partition fails (``CommitFailedError``) and is tried again after
the next append.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import polars as pl
import structlog
from deltalake.exceptions import CommitFailedError

from fleetmeter.pipeline import rollups
from fleetmeter.pipeline.dedup import KEY
from fleetmeter.pipeline.metrics import PipelineMetrics
from fleetmeter.pipeline.settings import WarehouseSettings
from fleetmeter.pipeline.warehouse.delta import DeltaWarehouse, PartitionValues
from fleetmeter.schemas.warehouse import JOB_DEVICES, SAMPLES, TABLES

log = structlog.get_logger(__name__)

#: A partition this long past its end takes no more fresh rows: it is compacted once, whatever its appends.
CLOSED_AFTER = timedelta(hours=2)


def compact_next(warehouse: DeltaWarehouse, settings: WarehouseSettings, metrics: PipelineMetrics,
                 now: datetime) -> bool:
    """Compact one partition this worker appended to, if one is due; True if one was tried.

    A rollup or job partition is due once it took ``compact_min_files`` appends since it was last compacted;
    any partition once it is closed with an append since.
    """
    for (table, partition), appends in list(warehouse.appends.items()):
        closed = _closed(partition, now)
        if closed or (TABLES[table].keys and appends >= settings.compact_min_files):
            _compact(warehouse, settings, metrics, table, partition)
            return True
    return False


def _compact(warehouse: DeltaWarehouse, settings: WarehouseSettings, metrics: PipelineMetrics, table: str,
             partition: PartitionValues) -> None:
    started = time.monotonic()
    warehouse.tables[table].update_incremental()  # other workers' appends are part of what is merged
    removed = warehouse.files_in(table, partition)
    try:
        if removed > 1:
            warehouse.replace(table, partition, _merged(warehouse, table, partition))
        else:
            removed = 0
    except CommitFailedError as exc:
        log.info("compaction lost a race; tried again after the next append", table=table, partition=partition,
                 error=str(exc))
        warehouse.appends[(table, partition)] = settings.compact_min_files - 1
        return
    del warehouse.appends[(table, partition)]
    metrics.files_compacted.labels(table).inc(removed)
    metrics.commits.labels("compaction").inc()
    metrics.commit_seconds.labels("compaction").observe(time.monotonic() - started)
    log.debug("compacted", table=table, partition=partition, files=removed)


def _merged(warehouse: DeltaWarehouse, table: str, partition: PartitionValues) -> pl.DataFrame:
    rows = warehouse.read(table, partition)
    if table == SAMPLES.name:
        return rows.sort(KEY)  # a device's history together: readers skip files by device_uuid statistics
    if not TABLES[table].keys:
        return rows
    if table == JOB_DEVICES.name:
        return rollups.merge_job_devices(rows)
    return rollups.merge(rows, TABLES[table].keys, measures=TABLES[table].measures)


def _closed(partition: PartitionValues, now: datetime) -> bool:
    """Whether a Delta partition (a date, a date and hour, or a month) ended more than CLOSED_AFTER ago."""
    values = dict(partition)
    if "month" in values:
        end = datetime.strptime(values["month"], "%Y-%m").replace(tzinfo=UTC) + timedelta(days=31)
    elif "hour" in values:
        end = datetime.fromisoformat(values["date"]).replace(tzinfo=UTC) + timedelta(hours=int(values["hour"]) + 1)
    else:
        end = datetime.fromisoformat(values["date"]).replace(tzinfo=UTC) + timedelta(days=1)
    return end + CLOSED_AFTER < now
