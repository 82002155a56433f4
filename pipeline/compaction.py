"""Compaction: merge what flushes appended to a Delta partition, one partition per call, between polls.

A rollup or job partition's partials are merged into one row per key (the catalogue's merge rules, by the
rollup code) and replace the partition's files in one commit; a samples or quarantine partition's small
files are bin-packed by delta-rs, into files of an eighth of ``compact_target_bytes`` while the partition
is open and of the whole target once it is closed. Files at a target are not rewritten, so a sample is
written at most three times (flush, open partition, closed partition), however long its day.

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
from fleetmeter.pipeline.metrics import PipelineMetrics
from fleetmeter.pipeline.settings import WarehouseSettings
from fleetmeter.pipeline.warehouse.delta import DeltaWarehouse, PartitionValues
from fleetmeter.schemas.warehouse import JOB_DEVICES, TABLES

log = structlog.get_logger(__name__)

#: A partition this long past its end takes no more fresh rows: it is compacted once, whatever its appends.
CLOSED_AFTER = timedelta(hours=2)
#: An open partition's files are bin-packed to this share of the target size.
OPEN_SHARE = 8


def compact_next(warehouse: DeltaWarehouse, settings: WarehouseSettings, metrics: PipelineMetrics,
                 now: datetime) -> bool:
    """Compact one partition this worker appended to, if one is due; True if one was tried.

    A partition is due once it took ``compact_min_files`` appends since it was last compacted, or once it is
    closed with any append since.
    """
    for (table, partition), appends in list(warehouse.appends.items()):
        if appends >= settings.compact_min_files or _closed(partition, now):
            _compact(warehouse, settings, metrics, table, partition, _closed(partition, now))
            return True
    return False


def _compact(warehouse: DeltaWarehouse, settings: WarehouseSettings, metrics: PipelineMetrics, table: str,
             partition: PartitionValues, closed: bool) -> None:
    started = time.monotonic()
    warehouse.tables[table].update_incremental()  # other workers' appends are part of what is merged
    files = warehouse.files_in(table, partition)
    try:
        if not TABLES[table].keys:
            target = settings.compact_target_bytes if closed else settings.compact_target_bytes // OPEN_SHARE
            removed = warehouse.bin_pack(table, partition, target)
        elif files > 1:
            warehouse.replace(table, partition, _merged(warehouse, table, partition))
            removed = files
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
    partials = warehouse.read(table, partition)
    if table == JOB_DEVICES.name:
        return rollups.merge_job_devices(partials)
    return rollups.merge(partials, TABLES[table].keys)


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
