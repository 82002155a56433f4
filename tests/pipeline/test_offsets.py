"""Each table's Delta transaction records the next Kafka offset it holds; a writer resumes from them, and
offsets that start again (a log cut back by a broker that lost data) are stored, not taken for rows already
held. Read with delta-rs directly."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake

from fleetmeter.pipeline.partition import PartitionLost
from fleetmeter.pipeline.settings import PipelineSettings
from fleetmeter.pipeline.warehouse.delta import DeltaWarehouse, WarehouseRefused
from fleetmeter.schemas.warehouse import OWNER_PROPERTY, TABLES, UTIL_1D
from tests.pipeline.fleet import samples_frame
from tests.pipeline.test_compaction import add, flush, writer_for


def versions(warehouse: Path, app_id: str) -> dict[str, int | None]:
    return {name: DeltaTable(f"{warehouse}/{name}").transaction_version(app_id) for name in TABLES}


def test_every_table_records_the_next_offset_and_a_new_writer_resumes_there(tmp_path: Path) -> None:
    writer = writer_for(tmp_path)
    for offset in range(3):
        flush(writer, offset, f"GPU-{offset}")
    recorded = versions(tmp_path, writer.app_id)
    assert recorded["samples"] == recorded["util_1m"] == recorded["util_1d"] == 3
    assert recorded["quarantine"] is None  # nothing quarantined: no commit, no version
    assert writer_for(tmp_path).next_offset == 3


def test_offsets_that_start_again_after_a_truncated_log_are_stored(tmp_path: Path) -> None:
    writer = writer_for(tmp_path)
    for offset in range(5):
        flush(writer, offset, f"GPU-{offset}")
    writer.offsets_restarted()
    flush(writer, 0, "GPU-after-the-cut")  # offset 0 of the cut-back log
    assert "GPU-after-the-cut" in set(samples_frame(tmp_path)["device_uuid"])
    assert set(versions(tmp_path, writer.app_id).values()) == {1}  # every table restarted with the log
    assert writer_for(tmp_path).next_offset == 1


def test_a_worker_the_group_replaced_cannot_commit_the_partition_again(tmp_path: Path) -> None:
    """Worker A read partition 0 when the group gave it to worker B, which committed it. A's flush of another
    partition brings A's view of the tables up to date (so Delta's conflict check has nothing left to catch);
    A's late flush of partition 0 must still be refused, not store the samples twice."""
    a0, a1 = writer_for(tmp_path, 0), writer_for(tmp_path, 1)
    add(a0, 0, "GPU-0")
    b0 = writer_for(tmp_path, 0)
    flush(b0, 0, "GPU-0")
    flush(a1, 0, "GPU-1")  # shares its warehouse (and table snapshots) with a0 in a real worker
    a0.warehouse = a1.warehouse
    with pytest.raises(PartitionLost, match="another worker committed it"):
        a0.flush(lambda next_offset: None)
    assert len(samples_frame(tmp_path)) == 4  # GPU-0 and GPU-1, two samples each, once


def test_a_flush_retried_after_a_failure_stores_what_was_read_meanwhile(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    writer = writer_for(tmp_path)
    append = DeltaWarehouse.append

    def full_disk(*args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(DeltaWarehouse, "append", full_disk)
    with pytest.raises(OSError):
        flush(writer, 0, "GPU-0")
    add(writer, 1, "GPU-1")  # the worker read on (another partition's flush succeeded and resumed reading)
    monkeypatch.setattr(DeltaWarehouse, "append", append)
    writer.flush(lambda next_offset: None)
    assert sorted(set(samples_frame(tmp_path)["device_uuid"])) == ["GPU-0", "GPU-1"]
    assert set(versions(tmp_path, writer.app_id).values()) - {None} == {2}


def test_a_table_of_another_version_is_refused_with_its_columns_named(tmp_path: Path) -> None:
    """A warehouse written by a version with other columns stops the worker with a clear error (not a storage
    error retried forever)."""
    write_deltalake(f"{tmp_path}/util_1h", pa.table({"window_start": pa.array([0], pa.int64()),
                                                     "idle_seconds": [1.0]}))
    with pytest.raises(WarehouseRefused, match=r"util_1h has the columns of another.*unknown: \['idle_seconds'\]"):
        writer_for(tmp_path)


def test_a_table_of_an_older_version_gains_the_measures_added_since(tmp_path: Path) -> None:
    """An upgrade adds the columns of new measures to the stored tables; the rows stored before hold null in them
    (readers count them as unknown: the measures' coverage shows it), and new rows hold their values."""
    new = ("mem_bw_active_seconds", "mem_bw_known_seconds", "sm_hist_seconds")
    older = pa.schema([field for field in UTIL_1D.schema if field.name not in new])
    group = PipelineSettings().consumer.group_id
    DeltaTable.create(f"{tmp_path}/util_1d", older, partition_by=["month"], configuration={OWNER_PROPERTY: group},
                      raise_if_key_not_exists=False)
    old_row = {name: [None] for name in older.names} | {
        "window_start": [pa.scalar(0, pa.timestamp("us", tz="UTC"))], "cluster": ["old"], "tenant": ["t"],
        "vendor": ["nvidia"], "model": ["H100"], "device_seconds": [60.0], "month": ["1970-01"]}
    write_deltalake(f"{tmp_path}/util_1d", pa.table(old_row, schema=older), mode="append")
    flush(writer_for(tmp_path), 0, "GPU-0")
    stored = DeltaTable(f"{tmp_path}/util_1d").to_pyarrow_table().to_pylist()
    assert set(stored[0]) == set(UTIL_1D.schema.names)
    by_cluster = {row["cluster"]: row for row in stored}
    assert by_cluster["old"]["mem_bw_known_seconds"] is None and by_cluster["old"]["sm_hist_seconds"] is None
    fresh = [row for row in stored if row["cluster"] != "old"]
    assert fresh and all(row["mem_bw_known_seconds"] is not None and len(row["sm_hist_seconds"]) == 20
                         for row in fresh)
