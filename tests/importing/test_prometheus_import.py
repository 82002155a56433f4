"""``fleetmeter import prometheus`` against a real Prometheus whose TSDB promtool filled with an exporter's
history (tests/importing/exporter_history.py): the stored samples are the rows that history describes, computed
in the test from the scenario; the rollups are the oracle's (tests/oracle.py); read back with delta-rs."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from typer.testing import CliRunner

from fleetmeter.cli import app
from fleetmeter.collectors.prometheus.api import PrometheusAPI
from fleetmeter.collectors.prometheus.source import PrometheusSource
from fleetmeter.importing.prometheus import PrometheusBatches
from fleetmeter.importing.settings import ImportSettings
from fleetmeter.pipeline.importing import runner
from fleetmeter.schemas.sample_v1 import rows_to_batch
from tests.importing import exporter_history as history
from tests.importing.sources import Rows
from tests.pipeline.fleet import assert_rollups_match, delta_frame, samples_frame, topic_rows
from tests.prometheus_server import needs_prometheus

pytestmark = needs_prometheus
cli = CliRunner()
SINCE = datetime.fromtimestamp(history.START_S, UTC).isoformat()
UNTIL = datetime.fromtimestamp(history.END_S, UTC).isoformat()
#: Small windows and node groups, and an answer bound that makes the larger answers be asked in parts.
CONFIG = "prometheus:\n  cluster: dc1\n  window_s: 3600\n  nodes_per_query: 2\n  max_answer_bytes: 4096\n"
COMPARED = ("interval_s", "node", "device_index", "device_kind", "parent_uuid", "vendor", "model", "util_compute",
            "sm_active", "mem_used_bytes", "mem_total_bytes", "power_w", "temp_c", "energy_j", "xid_errors",
            "ecc_uncorrected", "share", "share_rule")


def config(tmp_path: Path, text: str = CONFIG) -> str:
    path = tmp_path / "import.yaml"
    path.write_text(text)
    return str(path)


def run(url: str, tmp_path: Path, *extra: str) -> Any:
    result = cli.invoke(app, ["import", "prometheus", "--url", url, "--since", SINCE, "--until", UNTIL,
                              "--config", config(tmp_path), *extra])
    assert result.exit_code == 0, result.output
    return result


def by_key(rows: list[dict[str, Any]]) -> dict[tuple[Any, ...], dict[str, Any]]:
    return {(row["device_uuid"], row["ts"], row["tenant"], row["job_id"]): row for row in rows}


def stored_rows(warehouse: Path) -> list[dict[str, Any]]:
    frame = samples_frame(warehouse).with_columns(pl.col("ts").dt.epoch("ms"))
    return frame.to_dicts()


def assert_same_rows(stored: list[dict[str, Any]], expected: list[dict[str, Any]]) -> None:
    actual, wanted = by_key(stored), by_key(expected)
    assert len(actual) == len(stored)  # nothing stored twice
    assert set(actual) == set(wanted), (sorted(set(actual) - set(wanted))[:5], sorted(set(wanted) - set(actual))[:5])
    for key, row in wanted.items():
        for column in COMPARED:
            got, want = actual[key][column], row[column]
            if isinstance(want, float):
                assert got is not None and math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-6), (key, column, got, want)
            else:
                assert (got or None) == (want or None) if column == "xid_errors" else got == want, (key, column, got,
                                                                                                       want)


def test_a_dcgm_exporter_history_becomes_the_samples_it_describes(exporter_prometheus: str, tmp_path: Path) -> None:
    warehouse = tmp_path / "warehouse"
    result = run(exporter_prometheus, tmp_path, "--warehouse", str(warehouse))
    expected = [row for row in history.expected_rows() if history.valid(row)]
    stored = stored_rows(warehouse)
    assert_same_rows(stored, expected)
    assert_rollups_match(warehouse, expected)
    # what could not be stored, and why: the 250 % reading, and the series without a Hostname
    quarantine = delta_frame(warehouse, "quarantine")
    assert sorted(quarantine["reason"].to_list()) == ["label_missing"] * 4 + ["util_compute_out_of_range"]
    assert "util_compute_out_of_range 1" in result.output and f"label_missing {history.STEPS}" in result.output
    # the gap is a gap, the stale series ends where its samples end, the reset counter is not negative
    c0 = sorted(row["ts"] for row in stored if row["device_uuid"] == "GPU-c0")
    assert (history.START_S + 199 * history.STEP_S) * 1000 not in c0
    assert max(row["ts"] for row in stored if row["device_uuid"] == "GPU-c1") == (
        history.START_S + 149 * history.STEP_S) * 1000
    assert min(row["energy_j"] for row in stored if row["energy_j"] is not None) > 0

    again = run(exporter_prometheus, tmp_path, "--warehouse", str(warehouse))
    assert "resumed after batch" in again.output and stored_rows(warehouse).__len__() == len(stored)


def test_an_amd_exporter_history_with_its_units(exporter_prometheus: str, tmp_path: Path) -> None:
    warehouse = tmp_path / "warehouse"
    run(exporter_prometheus, tmp_path, "--warehouse", str(warehouse), "--exporter", "amd")
    expected = list(history.expected_rows("amd"))
    assert_same_rows(stored_rows(warehouse), expected)
    assert_rollups_match(warehouse, expected)


def test_an_import_killed_midway_resumes_and_stores_everything_once(
        exporter_prometheus: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    warehouse = tmp_path / "warehouse"
    settings = ImportSettings(config_file=config(tmp_path), warehouse={"uri": str(warehouse)})  # type: ignore[arg-type]
    api = PrometheusAPI(exporter_prometheus, timeout_s=30, retries=0, max_answer_bytes=1 << 24)
    source = PrometheusSource(settings.prometheus, api, datetime.fromtimestamp(history.START_S, UTC),
                              datetime.fromtimestamp(history.END_S, UTC))
    plan = source.plan()

    def killed(chunk: Any, rows: Any) -> None:
        if chunk.number == 6:
            raise KeyboardInterrupt  # after the flush of chunks 0-3, with 4 and 5 read but not committed

    monkeypatch.setattr(runner, "FLUSH_EVERY", 4)
    with pytest.raises(KeyboardInterrupt):
        runner.run_import(PrometheusBatches(source, plan, killed), settings, yield_to_stored=True)
    summary = runner.run_import(PrometheusBatches(source, plan), settings, yield_to_stored=True)
    assert summary.resumed_after == 4 and summary.batches == len(plan.chunks) - 4
    expected = [row for row in history.expected_rows() if history.valid(row)]
    assert_same_rows(stored_rows(warehouse), expected)
    assert_rollups_match(warehouse, expected)


def test_history_a_collector_already_reported_is_not_counted_twice(exporter_prometheus: str, tmp_path: Path) -> None:
    """Collectors reported GPU-a1 and MIG instance 1 of GPU-b0 (by its own MIG UUID, as NVML names it) every
    10 s, 5 s off Prometheus's grid, from step 100 to step 200: the imported rows that overlap their intervals
    are left out, the others stored."""
    warehouse = tmp_path / "warehouse"
    live_start_ms = (history.START_S + 100 * history.STEP_S + 5) * 1000
    live_end_ms = live_start_ms + 300 * 10_000
    common = {"interval_s": 10.0, "cluster": "dc1", "vendor": "nvidia", "util_compute": 0.5}
    live = [common | {"ts": live_start_ms + i * 10_000, "node": "n1", "device_uuid": "GPU-a1", "device_index": 1,
                      "device_kind": "gpu", "model": history.H100, "tenant": "ml", "job_id": "train-1", "seq": i}
            for i in range(300)]
    live += [common | {"ts": live_start_ms + i * 10_000, "node": "n2", "device_uuid": "MIG-5c1d", "device_index": 0,
                       "device_kind": "mig", "parent_uuid": "GPU-b0", "extras": [("mig.gpu_instance_id", 1.0)],
                       "model": history.A100, "tenant": "infer", "job_id": "svc-1", "seq": i} for i in range(300)]
    runner.run_import(Rows("live", [rows_to_batch(live)]),
                      ImportSettings(warehouse={"uri": str(warehouse)}))  # type: ignore[arg-type]
    result = run(exporter_prometheus, tmp_path, "--warehouse", str(warehouse))
    overlapping = [row for row in history.expected_rows() if history.valid(row)
                   and row["device_uuid"] in ("GPU-a1", "GPU-b0/1")
                   and row["ts"] < live_end_ms and row["ts"] + row["interval_s"] * 1000 > live_start_ms]
    assert len(overlapping) == 2 * 101  # steps 101..201 of each
    assert f"{len(overlapping)} left out where the warehouse holds the device's time already" in result.output
    expected = [row for row in history.expected_rows() if history.valid(row) and row not in overlapping]
    imported = [row for row in stored_rows(warehouse) if row["ts"] % 10_000 == 0]  # live rows are 5 s off the grid
    assert_same_rows(imported, expected)
    seconds = samples_frame(warehouse).filter(pl.col("device_uuid") == "GPU-a1")["interval_s"].sum()
    assert seconds == sum(row["interval_s"] for row in expected if row["device_uuid"] == "GPU-a1") + 3000


def test_through_kafka_like_a_collector(exporter_prometheus: str, tmp_path: Path, kafka_broker: Any,
                                        topic: str) -> None:
    result = run(exporter_prometheus, tmp_path, "--bootstrap-servers", kafka_broker.bootstrap_servers,
                 "--topic", topic)
    assert "sent to" in result.output and f"label_missing {history.STEPS}" in result.output
    sent = topic_rows(kafka_broker.bootstrap_servers, topic)
    assert_same_rows(sent, list(history.expected_rows()))  # the 250 % row too: the worker quarantines it


def test_a_dry_run_reads_no_samples_and_writes_nothing(exporter_prometheus: str, tmp_path: Path) -> None:
    result = run(exporter_prometheus, tmp_path, "--warehouse", str(tmp_path / "w"), "--dry-run")
    assert "3 nodes, 12 chunks (4 windows x 3 node groups), 10 queries a chunk" in result.output
    assert "metrics not in Prometheus: DCGM_FI_DEV_CLOCKS_EVENT_REASONS, DCGM_FI_DEV_CLOCK_THROTTLE_REASONS," in (
        result.output)
    assert 'avg_over_time(DCGM_FI_DEV_GPU_UTIL{Hostname=~"n1|n2"}[29999ms])' in result.output
    assert not (tmp_path / "w").exists()


def test_clear_errors(exporter_prometheus: str, tmp_path: Path) -> None:
    retries = config(tmp_path, "prometheus:\n  retries: 1\n  timeout_s: 2\n")
    base = ["import", "prometheus", "--since", SINCE, "--until", UNTIL, "--config", retries, "--warehouse",
            str(tmp_path / "w")]
    away = cli.invoke(app, [*base, "--url", "http://127.0.0.1:9"])
    assert away.exit_code == 1 and "tried 2 times" in away.output and len(away.output.strip().splitlines()) == 1
    wrong = cli.invoke(app, [*base, "--url", f"{exporter_prometheus}/nothing"])
    assert wrong.exit_code == 1 and "not a Prometheus answer" in wrong.output
    empty = cli.invoke(app, ["import", "prometheus", "--url", exporter_prometheus, "--since", "2001-01-01T00:00:00Z",
                             "--until", "2001-01-02T00:00:00Z", "--warehouse", str(tmp_path / "w")])
    assert empty.exit_code == 1 and "no series of the dcgm mapping's metrics" in empty.output
    bad = cli.invoke(app, [*base, "--url", exporter_prometheus, "--since", "yesterday"])
    assert bad.exit_code == 2 and "give a duration back from now" in bad.output
    for wrong_input, says in ((["--since", "99999999999d"], "further back than any calendar"),
                              (["--url", "http://[::1"], "not a URL")):
        refused = cli.invoke(app, [*base, "--url", exporter_prometheus, *wrong_input])
        assert refused.exit_code == 2 and says in refused.output, refused.output
    later = cli.invoke(app, ["import", "prometheus", "--url", exporter_prometheus, "--since", "1h", "--until",
                             "2099-01-01T00:00:00Z", "--dry-run"])
    assert later.exit_code == 0 and "--until is after the current hour: importing up to" in later.output
