"""``fleetmeter import file``: CSV and Parquet rows of history stored with the live path's guarantees, read
back with delta-rs and compared with figures computed here (tests/oracle.py); interrupted and run again,
nothing is stored twice or lost; rows already there (live data) are not stored again."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from fleetmeter.cli import app
from fleetmeter.pipeline.importing import files, runner
from fleetmeter.pipeline.settings import PipelineSettings
from fleetmeter.schemas.sample_v1 import rows_to_batch
from tests import oracle
from tests.importing.sources import Rows
from tests.pipeline.fleet import assert_rollups_match, samples_frame

DAY_MS = 86_400_000
cli = CliRunner()


def history(devices: int = 3, samples: int = 200) -> list[dict[str, object]]:
    """Samples 10 s apart, 60 days old (beyond the live path's 30-day lateness bound), a broken one among them."""
    start = (int(time.time() * 1000) - 60 * DAY_MS) // 60_000 * 60_000
    rows: list[dict[str, object]] = [
        {"ts": start + step * 10_000, "interval_s": 10.0, "cluster": "c", "node": f"n{device // 2}",
         "device_uuid": f"GPU-{device}", "device_index": device, "device_kind": "gpu", "vendor": "nvidia",
         "model": "H100", "tenant": f"t{device % 2}", "job_id": f"j{device}", "seq": step,
         "util_compute": (step % 10) / 10, "energy_j": 3000.0 + device}
        for device in range(devices) for step in range(samples)]
    rows[7] = rows[7] | {"util_compute": 1.7}  # quarantined
    return rows


def parquet(path: Path, rows: list[dict[str, object]]) -> Path:
    pq.write_table(pa.Table.from_batches([rows_to_batch(rows)]), path)
    return path


def test_a_parquet_file_is_stored_once_even_run_twice(tmp_path: Path) -> None:
    rows = history()
    source = parquet(tmp_path / "history.parquet", rows)
    warehouse = tmp_path / "warehouse"
    for _ in range(2):
        result = cli.invoke(app, ["import", "file", str(source), "--warehouse", str(warehouse), "--batch-rows", "50"])
        assert result.exit_code == 0, result.output
    assert "resumed after batch 12" in result.output  # 600 rows, 50 a batch: the second run found all of it
    expected = oracle.deduplicated(row for row in rows if row["util_compute"] != 1.7)
    assert samples_frame(warehouse).height == len(expected) == 599
    assert_rollups_match(warehouse, expected)


def test_a_csv_file_and_its_errors(tmp_path: Path) -> None:
    rows = history(devices=1, samples=30)
    table = pa.Table.from_batches([rows_to_batch(rows)]).drop_columns(
        ["throttle_reasons", "xid_errors", "processes", "extras"])  # CSV is flat
    pacsv.write_csv(table, tmp_path / "history.csv")
    result = cli.invoke(app, ["import", "file", str(tmp_path / "history.csv"), "--warehouse", str(tmp_path / "w")])
    assert result.exit_code == 0, result.output
    assert "30 rows read, 29 stored" in result.output and "util_compute_out_of_range 1" in result.output
    pacsv.write_csv(table.drop_columns(["device_uuid"]), tmp_path / "broken.csv")
    broken = cli.invoke(app, ["import", "file", str(tmp_path / "broken.csv"), "--warehouse", str(tmp_path / "w")])
    assert broken.exit_code == 2 and "required column 'device_uuid' is missing" in broken.output


def test_a_trace_of_another_shape_through_a_column_mapping(tmp_path: Path) -> None:
    """A public trace's CSV: epoch seconds, percent, MiB, its own column names, no cluster or vendor columns."""
    start_s = int(time.time()) // 60 * 60 - 30 * 86_400
    trace = pa.table({"time": [start_s + 15 * i for i in range(40)], "gpu": [f"g{i % 4}" for i in range(40)],
                      "host": [f"h{i % 2}" for i in range(40)], "util_pct": [float(i % 101) for i in range(40)],
                      "mem_mib": [1000 + i for i in range(40)], "user": ["alice", "bob"] * 20})
    pacsv.write_csv(trace, tmp_path / "trace.csv")
    (tmp_path / "import.yaml").write_text(
        "file:\n  ts_unit: s\n  columns: {ts: time, device_uuid: gpu, node: host, util_compute: util_pct,"
        " mem_used_bytes: mem_mib, tenant: user}\n  scale: {util_compute: 0.01, mem_used_bytes: 1048576}\n"
        "  values: {interval_s: 15, cluster: trace, device_index: 0, device_kind: gpu, vendor: nvidia,"
        " model: V100, seq: 0}\n")
    result = cli.invoke(app, ["import", "file", str(tmp_path / "trace.csv"), "--warehouse", str(tmp_path / "w"),
                              "--config", str(tmp_path / "import.yaml")])
    assert result.exit_code == 0, result.output
    stored = samples_frame(tmp_path / "w").sort("ts")
    assert stored["ts"].dt.epoch("s").to_list() == trace["time"].to_pylist()
    assert stored["util_compute"].to_list() == pytest.approx([value / 100 for value in trace["util_pct"].to_pylist()])
    assert stored["mem_used_bytes"].to_list() == [value * 1024**2 for value in trace["mem_mib"].to_pylist()]
    assert stored["tenant"].to_list() == trace["user"].to_pylist() and set(stored["cluster"]) == {"trace"}
    (tmp_path / "typo.yaml").write_text("file:\n  columns: {timestamp: time}\n")
    typo = cli.invoke(app, ["import", "file", str(tmp_path / "trace.csv"), "--warehouse", str(tmp_path / "w"),
                            "--config", str(tmp_path / "typo.yaml")])
    assert typo.exit_code == 2 and "not schema-v1 columns: ['timestamp']" in typo.output


def test_an_interrupted_import_resumes_and_rows_already_stored_are_not_stored_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rows = history()
    warehouse = tmp_path / "warehouse"
    settings = PipelineSettings(warehouse={"uri": str(warehouse)})  # type: ignore[arg-type]
    live = rows[:150]  # the first 150 rows already came through a collector
    runner.run_import(Rows("live", [rows_to_batch(live)]), settings)
    source = files.FileSource(parquet(tmp_path / "history.parquet", rows), 40)

    class Interrupted:
        identity = source.identity

        def batches(self, first: int) -> Iterator[runner.Batch]:
            for number, batch in enumerate(source.batches(first), start=first):
                if number == 11:
                    raise KeyboardInterrupt  # mid-way, after one flush of 8 batches
                yield batch

    monkeypatch.setattr(runner, "FLUSH_EVERY", 8)
    with pytest.raises(KeyboardInterrupt):
        runner.run_import(Interrupted(), settings)
    summary = runner.run_import(source, settings)
    assert summary.resumed_after == 8
    expected = oracle.deduplicated(row for row in rows if row["util_compute"] != 1.7)
    assert samples_frame(warehouse).height == len(expected)
    assert_rollups_match(warehouse, expected)



def test_a_batch_over_the_message_bound_is_stored_in_parts(tmp_path: Path) -> None:
    rows = history(devices=2, samples=100)
    settings = PipelineSettings(warehouse={"uri": str(tmp_path / "w")},  # type: ignore[arg-type]
                                validation={"max_message_bytes": 16384})  # type: ignore[arg-type]
    summary = runner.run_import(Rows("big", [rows_to_batch(rows)]), settings)
    assert summary.quarantined == {"util_compute_out_of_range": 1} and summary.stored == len(rows) - 1
    assert samples_frame(tmp_path / "w").height == len(rows) - 1
