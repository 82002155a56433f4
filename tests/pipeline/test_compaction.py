"""Compaction merges an hour's small files by size tier, so a row is rewritten a few times, not once per flush."""

from __future__ import annotations

from pathlib import Path

import polars as pl
from kafka.consumer.fetcher import ConsumerRecord

from fleetmeter.pipeline.metrics import PipelineMetrics
from fleetmeter.pipeline.partition import PartitionWriter
from fleetmeter.pipeline.settings import PipelineSettings
from fleetmeter.pipeline.warehouse import layout
from fleetmeter.pipeline.warehouse.storage import Storage
from tests.pipeline.test_validate import NOW_MS, message, row

HOUR = layout.bucket(layout.SAMPLES, NOW_MS - 60_000)


def writer_with_flushes(warehouse: Path, flushes: int, **warehouse_settings: int) -> PartitionWriter:
    settings = PipelineSettings(warehouse={"uri": str(warehouse), **warehouse_settings})  # type: ignore[arg-type]
    writer = PartitionWriter(Storage(str(warehouse)), "t", 0, settings, PipelineMetrics(), [])
    for offset in range(flushes):
        payload = message(row(device_uuid=f"GPU-{offset}"), row(device_uuid=f"GPU-{offset}", ts=NOW_MS - 70_000))
        writer.add([ConsumerRecord("t", 0, -1, offset, NOW_MS, 0, b"n", payload, [], None, 1, len(payload), 0)],
                   NOW_MS)
        writer.flush(lambda next_offset: None)
    return writer


def stored_devices(writer: PartitionWriter) -> list[str]:
    return sorted(writer.storage.read_parquet(writer.files[HOUR])["device_uuid"].to_list())


def test_a_tier_full_of_small_files_is_merged_into_one_with_every_row(tmp_path: Path) -> None:
    writer = writer_with_flushes(tmp_path, 3, compact_min_files=3)
    assert len(writer.files[HOUR]) == 3
    assert writer.compact_next(lambda next_offset: None, NOW_MS)
    assert len(writer.files[HOUR]) == 1
    assert stored_devices(writer) == sorted(f"GPU-{n}" for n in range(3) for _ in range(2))
    merged = writer.storage.read_parquet(writer.files[HOUR])
    assert merged.equals(merged.sort("device_uuid", "ts", "tenant", "job_id"))  # compaction sorts by key
    assert not writer.compact_next(lambda next_offset: None, NOW_MS)


def test_files_at_the_target_size_are_left_alone(tmp_path: Path) -> None:
    writer = writer_with_flushes(tmp_path, 3, compact_min_files=3, compact_target_bytes=1)
    assert not writer.compact_next(lambda next_offset: None, NOW_MS)
    assert len(writer.files[HOUR]) == 3


def test_a_merged_file_waits_for_files_of_its_own_tier(tmp_path: Path) -> None:
    writer = writer_with_flushes(tmp_path, 2, compact_min_files=2)
    assert writer.compact_next(lambda next_offset: None, NOW_MS)
    merged = writer.files[HOUR][0]
    writer.sizes[merged] = 4 << 20  # as if the merged file had grown past the first tier (1 MiB x 2)
    for offset in (10, 11):
        payload = message(row(device_uuid=f"GPU-{offset}"))
        writer.add([ConsumerRecord("t", 0, -1, offset, NOW_MS, 0, b"n", payload, [], None, 1, len(payload), 0)],
                   NOW_MS)
        writer.flush(lambda next_offset: None)
    assert writer.compact_next(lambda next_offset: None, NOW_MS)
    assert merged in writer.files[HOUR] and len(writer.files[HOUR]) == 2  # the two new ones merged, not it
    assert len(pl.concat([writer.storage.read_parquet([path]) for path in writer.files[HOUR]])) == 6
