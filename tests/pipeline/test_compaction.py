"""Compaction merges one Delta partition's partials into one row per key (rollups) or its small files into
large ones (samples), in one atomic replace; readers see the same figures before, during and after it, and a
replace that races another worker's append fails instead of dropping that append. Checked with delta-rs
read directly."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from deltalake import DeltaTable
from kafka.consumer.fetcher import ConsumerRecord

from fleetmeter.pipeline import compaction
from fleetmeter.pipeline.metrics import PipelineMetrics
from fleetmeter.pipeline.partition import PartitionWriter
from fleetmeter.pipeline.settings import PipelineSettings
from fleetmeter.pipeline.warehouse.delta import DeltaWarehouse
from tests.pipeline.test_validate import NOW_MS, message, row

NOW = datetime.fromtimestamp(NOW_MS / 1000, tz=UTC)
LATER = NOW + timedelta(days=1)  # every partition of NOW's hour is closed by then


def writer_for(warehouse: Path, partition: int = 0, **warehouse_settings: object) -> PartitionWriter:
    settings = PipelineSettings(warehouse={"uri": str(warehouse), **warehouse_settings})  # type: ignore[arg-type]
    delta = DeltaWarehouse(str(warehouse), {}, settings.consumer.group_id)
    return PartitionWriter(delta, "t", partition, "topic-id", settings, PipelineMetrics())


def add(writer: PartitionWriter, offset: int, device: str) -> None:
    """Read two samples of ``device`` at ``offset``, in the two minutes before NOW (a second apart per offset:
    no duplicates)."""
    payload = message(row(device_uuid=device, ts=NOW_MS - 60_000 + offset * 1000),
                      row(device_uuid=device, ts=NOW_MS - 70_000 - offset * 1000))
    writer.add([ConsumerRecord("t", writer.partition, -1, offset, NOW_MS, 0, b"n", payload, [], None, 1,
                               len(payload), 0)], NOW_MS)


def flush(writer: PartitionWriter, offset: int, device: str) -> None:
    add(writer, offset, device)
    writer.flush(lambda next_offset: None)


def files(warehouse: Path, table: str) -> int:
    return len(DeltaTable(f"{warehouse}/{table}").file_uris())


def totals(warehouse: Path, table: str, version: int | None = None) -> tuple[int, float, int]:
    """Rows, device-seconds and samples of a table, as delta-rs reads it."""
    frame = pl.from_arrow(DeltaTable(f"{warehouse}/{table}", version=version).to_pyarrow_table())
    assert isinstance(frame, pl.DataFrame)
    seconds = frame["device_seconds"].sum() if "device_seconds" in frame.columns else frame["interval_s"].sum()
    samples = frame["samples"].sum() if "samples" in frame.columns else frame.height
    return frame.height, seconds, samples


def compact_next(writer: PartitionWriter, now: datetime) -> bool:
    return compaction.compact_next(writer.warehouse, writer.settings.warehouse, writer.metrics, now)


def compact_all(writer: PartitionWriter, now: datetime) -> int:
    compacted = 0
    while compact_next(writer, now):
        compacted += 1
    return compacted


def test_partials_are_merged_into_one_row_per_key_and_samples_into_one_file(tmp_path: Path) -> None:
    writer = writer_for(tmp_path, compact_min_files=3)
    for offset in range(3):
        flush(writer, offset, "GPU-1")
    for offset in range(3, 5):
        flush(writer, offset, f"GPU-{offset}")
    rows, seconds, samples = totals(tmp_path, "util_1m")
    assert (rows, samples) == (5 * 2, 10)  # five flushes' partials, two minutes each
    assert totals(tmp_path, "device_1h")[0] == 5  # one partial per flush (the two minutes are in one hour)
    assert compact_all(writer, NOW) == 4  # five appends to each rollup partition: all due; samples' day is open
    assert files(tmp_path, "util_1m") == 1
    assert totals(tmp_path, "util_1m") == (2, seconds, samples)  # one row per minute (one node, tenant, model)
    assert totals(tmp_path, "util_1d")[1:] == (seconds, samples)
    assert totals(tmp_path, "device_1h") == (3, seconds, samples)  # one row per device (GPU-1, GPU-3, GPU-4)
    assert files(tmp_path, "samples") == 5
    assert compact_all(writer, LATER) == 1  # the day closed: its samples now
    assert files(tmp_path, "samples") == 1
    assert totals(tmp_path, "samples")[0] == 10
    assert not compact_next(writer, LATER)  # nothing left to do


def test_a_reader_of_the_version_before_a_compaction_still_reads_it_until_vacuum(tmp_path: Path) -> None:
    writer = writer_for(tmp_path, compact_min_files=2)
    for offset in range(2):
        flush(writer, offset, f"GPU-{offset}")
    before = DeltaTable(f"{tmp_path}/util_1m").version()
    expected = totals(tmp_path, "util_1m")
    compact_all(writer, LATER)
    assert totals(tmp_path, "util_1m", version=before) == expected  # time travel to the partials
    assert writer.warehouse.vacuum(retention_hours=0) > 0
    with pytest.raises(OSError, match=r"No such file|not found|does not exist"):
        totals(tmp_path, "util_1m", version=before)  # its files are gone
    assert totals(tmp_path, "util_1m")[1:] == expected[1:]


def test_a_compaction_that_races_another_workers_append_fails_and_loses_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Worker 0 reads util_1m's partition to merge it; worker 1 appends to the same partition before worker 0
    replaces it. The replace must fail (else worker 1's rows would vanish) and be tried again later."""
    first, second = writer_for(tmp_path, 0, compact_min_files=2), writer_for(tmp_path, 1, compact_min_files=2)
    for offset in range(2):
        flush(first, offset, f"GPU-{offset}")
    merged = compaction._merged

    def merged_while_another_worker_appends(*args: Any) -> pl.DataFrame:
        result = merged(*args)
        flush(second, 0, "GPU-9")
        return result

    monkeypatch.setattr(compaction, "_merged", merged_while_another_worker_appends)
    compact_next(first, NOW)
    monkeypatch.setattr(compaction, "_merged", merged)
    assert totals(tmp_path, "util_1m")[2] == 3 * 2  # three devices' two samples: nothing lost
    compact_all(first, LATER)
    assert totals(tmp_path, "util_1m") == (2, 3 * 20.0, 6)  # merged on the next try, with worker 1's rows


def test_samples_are_compacted_once_their_day_is_closed_and_two_compactions_never_double_them(
        tmp_path: Path) -> None:
    """An open day's sample files are left alone; a closed day's are rewritten into one sorted file. Two
    workers compacting that day with the same snapshot: one commit wins, the other is refused (delta-rs's
    optimize.compact let both commit, and every row was stored twice)."""
    first = writer_for(tmp_path, compact_min_files=2)
    for offset in range(3):
        flush(first, offset, f"GPU-{offset}")
    second = writer_for(tmp_path, 1, compact_min_files=2)
    day = ("samples", (("date", (NOW - timedelta(minutes=1)).date().isoformat()),))  # the rows' day
    second.warehouse.appends.update({day: 1})
    first.warehouse.appends = Counter({day: 3})
    assert not compact_next(first, NOW)  # the day is open
    assert files(tmp_path, "samples") == 3
    second.warehouse.tables["samples"].update_incremental()  # both read the same three files
    assert compact_next(first, LATER) and compact_next(second, LATER)
    assert files(tmp_path, "samples") == 1
    assert totals(tmp_path, "samples")[0] == 6
    stored = pl.from_arrow(DeltaTable(f"{tmp_path}/samples").to_pyarrow_table(columns=["device_uuid", "ts"]))
    assert isinstance(stored, pl.DataFrame) and stored.equals(stored.sort("device_uuid", "ts"))
