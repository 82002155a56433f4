"""The detectors at their default settings on a simulated fleet with anomalies planted on purpose (and a list of
them), and on a clean one: precision and recall per kind at least 0.9, at most one false alarm per 1,000
device-days. The fleets go through the import path into a real Delta warehouse; ``fleetmeter anomalies`` runs as
a user would; what it stored is read back with polars (delta-rs), not fleetmeter's reader. The figures at scale
are the benchmark's (docs/anomalies.md)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
import yaml
from typer.testing import CliRunner

from fleetmeter.cli import app
from fleetmeter.demo.planted import KINDS, PlantedFleet, score
from fleetmeter.pipeline.importing.runner import run_import
from fleetmeter.pipeline.settings import PipelineSettings

END = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
PLANTED = PlantedFleet("lab", nodes=32, days=14, end=END, plant=10, seed=11)
CLEAN = PlantedFleet("clean", nodes=32, days=14, end=END, plant=0, seed=12)


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> tuple[pl.DataFrame, Path]:
    root = tmp_path_factory.mktemp("evaluation")
    for fleet in (PLANTED, CLEAN):
        run_import(fleet, PipelineSettings(warehouse={"uri": str(root / "w")}))  # type: ignore[arg-type]
    (root / "analysis.yaml").write_text(yaml.safe_dump({"warehouse": str(root / "w"), "prices": [
        {"model": "*", "per_device_hour": 2.0}]}))
    result = CliRunner().invoke(app, ["anomalies", "--config", str(root / "analysis.yaml"), "--since", "15d"])
    assert result.exit_code == 0, result.output
    return pl.read_delta(str(root / "w" / "anomalies")), root / "w"


def test_planted_anomalies_are_found_and_little_else(stored: tuple[pl.DataFrame, Path]) -> None:
    anomalies, _ = stored
    scores = score(PLANTED.truth, anomalies.filter(pl.col("cluster") == "lab"))
    for kind in KINDS:
        figures = scores[kind]
        assert figures.planted >= 8, figures  # spikes need spare nodes: a few fewer may fit
        assert figures.precision is not None and figures.precision >= 0.9, figures
        assert figures.recall is not None and figures.recall >= 0.9, figures


def test_a_clean_fleet_raises_at_most_one_false_alarm_per_thousand_device_days(
        stored: tuple[pl.DataFrame, Path]) -> None:
    anomalies, _ = stored
    false_alarms = anomalies.filter(pl.col("cluster") == "clean")
    assert false_alarms.height <= CLEAN.device_days / 1000, false_alarms.select("kind", "tenant", "job_id", "evidence")


def test_what_was_planted_is_in_the_warehouse(stored: tuple[pl.DataFrame, Path]) -> None:
    """The ground truth is not taken on trust: each planted anomaly shows in the stored device-hours."""
    _, warehouse = stored
    hours = pl.read_delta(str(warehouse / "device_1h")).filter(pl.col("cluster") == "lab").with_columns(
        util=pl.col("busy_seconds") / pl.col("util_known_seconds"),
        sm=pl.col("sm_active_seconds") / pl.col("sm_active_known_seconds"),
        temp=pl.col("temp_seconds") / pl.col("temp_known_seconds"))
    for planted in PLANTED.truth:
        during = (pl.col("window_start") >= planted.start) & (pl.col("window_start") < planted.end)
        if planted.kind == "idle_allocation":
            assert hours.filter(during & (pl.col("job_id") == planted.job_id))["util"].max() < 0.05  # type: ignore[operator]
        elif planted.kind == "straggler":
            job = hours.filter(pl.col("job_id") == planted.job_id).group_by("device_uuid").agg(pl.col("sm").mean())
            slow = job.filter(pl.col("device_uuid") == planted.device_uuid)["sm"][0]
            assert slow <= 0.65 * job["sm"].median()  # type: ignore[operator]
        elif planted.kind == "regression":
            job = hours.filter(pl.col("job_id") == planted.job_id).group_by("window_start").agg(pl.col("util").mean())
            before = job.filter(pl.col("window_start") < planted.start)["util"].median()
            assert job.filter(during)["util"].mean() <= before - 0.2  # type: ignore[operator]
        elif planted.kind == "spike":
            tenant = hours.filter((pl.col("tenant") == planted.tenant) & (pl.col("model") == planted.model))
            daily = tenant.group_by(pl.col("window_start").dt.date().alias("day")).agg(pl.col("device_seconds").sum())
            day = daily.filter(pl.col("day") == planted.start.date())["device_seconds"][0]
            usual = daily.filter(pl.col("day") < planted.start.date())["device_seconds"].median()
            assert day >= 1.3 * usual  # type: ignore[operator]  # (60 % more GPUs than it holds, less its gaps)
        else:
            device = hours.filter(during & (pl.col("device_uuid") == planted.device_uuid))
            shown = {"hot": (device["temp"] - 30 - 45 * device["util"]).mean() >= 8,  # type: ignore[operator]
                     "throttled": device["throttled_seconds"].sum() >= 0.2 * device["device_seconds"].sum(),
                     "xid": device["xid_events"].sum() >= 4, "ecc": device["ecc_uncorrected"].sum() >= 1}
            assert shown[planted.detail], planted


def test_the_fleet_is_the_same_at_every_run() -> None:
    again = PlantedFleet("lab", nodes=32, days=14, end=END, plant=10, seed=11)
    assert again.truth == PLANTED.truth and again.identity == PLANTED.identity
    first, second = next(again.batches(3)).rows, next(PLANTED.batches(3)).rows
    assert first.equals(second)
    assert PlantedFleet("lab", nodes=32, days=14, end=END - timedelta(days=1), plant=10, seed=11).identity != (
        PLANTED.identity)
