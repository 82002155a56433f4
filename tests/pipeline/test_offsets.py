"""Each table's Delta transaction records the next Kafka offset it holds; a writer resumes from them, and
offsets that start again (a log cut back by a broker that lost data) are stored, not taken for rows already
held. Read with delta-rs directly."""

from __future__ import annotations

from pathlib import Path

from deltalake import DeltaTable

from fleetmeter.schemas.warehouse import TABLES
from tests.pipeline.fleet import samples_frame
from tests.pipeline.test_compaction import flush, writer_for


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
