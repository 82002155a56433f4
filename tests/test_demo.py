"""``fleetmeter demo``, the README's main command, end to end on a small fleet: broker, collector, pipeline
worker process, warehouse, report and the page, then the commands it prints."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fleetmeter.cli import app
from fleetmeter.demo.broker import free_port

NODES, DEVICES, HOURS = 3, 2, 1.0


@pytest.mark.timeout(300)
def test_demo_runs_the_whole_product(tmp_path: Path) -> None:
    directory = tmp_path / "demo"
    run = subprocess.run(
        [sys.executable, "-m", "fleetmeter", "demo", "--nodes", str(NODES), "--devices-per-node", str(DEVICES),
         "--hours", str(HOURS), "--seconds", "6", "--partitions", "2", "--directory", str(directory),
         "--metrics-port", str(free_port()), "--pipeline-metrics-port", str(free_port())],
        capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "fleetmeter report" in run.stdout and f"query --config {directory}/analysis.yaml" in run.stdout
    page = (directory / "report.html").read_text()
    assert page.count("<svg") == 4 + 2  # the fleet's four charts, and a demand fan per pool of the history cluster
    assert "Capacity plan" in run.stdout and f"plan --config {directory}/analysis.yaml" in run.stdout
    assert "Efficiency by model" in run.stdout and "--file rightsizing" in run.stdout

    config = str(directory / "analysis.yaml")
    result = CliRunner().invoke(app, ["query", "--config", config, "--format", "json",
                                      "SELECT (SELECT sum(device_hours) FROM util_1h WHERE cluster = 'demo') AS h, "
                                      "(SELECT count(DISTINCT device_uuid) FROM samples WHERE cluster = 'demo') AS d, "
                                      "(SELECT count(DISTINCT device_uuid) FROM samples WHERE cluster = 'east') AS e, "
                                      "(SELECT count(*) FROM forecasts WHERE mean IS NOT NULL) AS f, "
                                      "(SELECT count(DISTINCT kind) FROM anomalies WHERE cluster = 'lab') AS k"])
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)[0]
    assert answer["d"] == NODES * DEVICES and answer["e"] == 48 and answer["f"] > 0
    assert answer["k"] == 5  # the planted cluster shows every kind of anomaly
    # Every device streamed for the whole simulated span, less its first (priming) interval.
    assert answer["h"] / (NODES * DEVICES) == pytest.approx(HOURS, rel=0.05)


def test_demo_refuses_a_directory_it_did_not_make(tmp_path: Path) -> None:
    (tmp_path / "mine.txt").write_text("precious")
    result = CliRunner().invoke(app, ["demo", "--directory", str(tmp_path)])
    assert result.exit_code != 0 and "not a demo directory" in result.output
    assert (tmp_path / "mine.txt").read_text() == "precious"
