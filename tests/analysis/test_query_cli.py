"""``fleetmeter query`` and ``fleetmeter sql`` on the generated warehouse: formats, configuration, errors."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from deltalake import DeltaTable
from typer.testing import CliRunner

from fleetmeter.cli import app
from tests.analysis.conftest import Fleet
from tests.analysis.fleet import PRICES, group
from tests.pipeline.test_compaction import flush, writer_for

runner = CliRunner()
BY_TENANT = "SELECT tenant, sum(device_hours) AS device_hours, sum(cost) AS cost FROM costs GROUP BY tenant"


def config(tmp_path: Path, fleet: Fleet, prices: list[dict[str, object]] = PRICES) -> str:
    path = tmp_path / "analysis.yaml"
    path.write_text(yaml.safe_dump({"warehouse": str(fleet.warehouse), "prices": prices}))
    return str(path)


def expected_by_tenant(fleet: Fleet) -> dict[str, tuple[float, float]]:
    return {tenant: (t.device_s / 3600, t.cost) for tenant, t in group(fleet.rows, lambda row: row["tenant"]).items()}


def test_csv_json_and_parquet_hold_the_same_answer(fleet: Fleet, tmp_path: Path) -> None:
    expected = expected_by_tenant(fleet)
    cfg = config(tmp_path, fleet)

    result = runner.invoke(app, ["query", "--config", cfg, BY_TENANT, "--format", "csv"])
    assert result.exit_code == 0, result.output
    from_csv = {row["tenant"]: (float(row["device_hours"]), float(row["cost"]))
                for row in csv.DictReader(io.StringIO(result.stdout))}

    result = runner.invoke(app, ["query", "--config", cfg, BY_TENANT, "--format", "json"])
    assert result.exit_code == 0, result.output
    from_json = {row["tenant"]: (row["device_hours"], row["cost"]) for row in json.loads(result.stdout)}

    parquet = tmp_path / "out.parquet"
    result = runner.invoke(app, ["query", "--config", cfg, BY_TENANT, "--format", "parquet", "--output", str(parquet)])
    assert result.exit_code == 0, result.output
    from_parquet = {row["tenant"]: (row["device_hours"], row["cost"]) for row in pq.read_table(parquet).to_pylist()}

    for answer in (from_csv, from_json, from_parquet):
        assert answer.keys() == expected.keys()
        for tenant, (hours, cost) in expected.items():
            assert answer[tenant] == (pytest.approx(hours), pytest.approx(cost))


def test_a_table_for_people_and_canned_queries_by_name(fleet: Fleet, tmp_path: Path) -> None:
    result = runner.invoke(app, ["query", "--config", config(tmp_path, fleet), "--file", "waste_by_job"])
    assert result.exit_code == 0, result.output
    assert "idle_device_hours" in result.stdout and "research" in result.stdout
    listing = runner.invoke(app, ["query", "--list"])
    assert "waste_by_job" in listing.stdout and "Where is allocated accelerator time wasted?" in listing.stdout


def test_changing_a_price_changes_the_answer_and_nothing_stored(fleet: Fleet, tmp_path: Path) -> None:
    before = sorted((path, path.stat().st_mtime_ns) for path in fleet.warehouse.rglob("*"))
    doubled = [price | {"per_device_hour": 2 * float(price["per_device_hour"])} for price in PRICES]  # type: ignore[arg-type]
    sql = "SELECT sum(device_cost) AS c FROM costs"
    once = runner.invoke(app, ["query", "--config", config(tmp_path, fleet), sql, "--format", "json"])
    twice = runner.invoke(app, ["query", "--config", config(tmp_path, fleet, doubled), sql, "--format", "json"])
    assert json.loads(twice.stdout)[0]["c"] == pytest.approx(2 * json.loads(once.stdout)[0]["c"])
    assert json.loads(once.stdout)[0]["c"] > 0
    assert sorted((path, path.stat().st_mtime_ns) for path in fleet.warehouse.rglob("*")) == before


@pytest.mark.parametrize(("args", "status", "message"), [
    (["query", "--warehouse", "/nonexistent/warehouse", "SELECT 1"], 2, "no fleetmeter Delta tables"),
    (["query", "--warehouse", "{warehouse}", "SELEKT 1"], 1, "syntax error"),
    (["query", "--warehouse", "{warehouse}"], 2, "give either SQL or --file"),
    (["query", "--warehouse", "{warehouse}", "SELECT 1", "--format", "parquet"], 1, "needs --output"),
    (["query", "--warehouse", "{warehouse}", "--since", "last tuesday", "SELECT 1"], 2, "give an age"),
])
def test_mistakes_get_one_clear_line(fleet: Fleet, args: list[str], status: int, message: str) -> None:
    result = runner.invoke(app, [arg.format(warehouse=fleet.warehouse) for arg in args])
    assert result.exit_code == status
    assert message in result.output
    assert not Path("/nonexistent").exists()  # a reader never creates the path it was given


def test_sql_opens_a_duckdb_shell_with_the_views(fleet: Fleet, tmp_path: Path) -> None:
    shell = subprocess.run(
        [sys.executable, "-m", "fleetmeter", "sql", "--config", config(tmp_path, fleet)],
        input=".mode csv\nSELECT count(*) AS samples FROM samples;\nSELECT count(*) AS jobs FROM jobs;\n",
        capture_output=True, text=True, timeout=60, check=True)
    jobs = {row["job_id"] for row in fleet.rows if row["job_id"] is not None}
    assert f"samples\n{len(fleet.rows)}\njobs\n{len(jobs)}\n" in shell.stdout


def test_the_printed_script_loads_the_views_in_the_duckdb_cli(fleet: Fleet, tmp_path: Path) -> None:
    script = runner.invoke(app, ["sql", "--config", config(tmp_path, fleet), "--print-script"])
    assert script.exit_code == 0, script.output
    init = tmp_path / "fleet.sql"
    init.write_text(script.stdout)
    duckdb_cli = Path(sys.executable).parent / "duckdb"
    out = subprocess.run([str(duckdb_cli), "-init", str(init), "-csv", "-c", BY_TENANT + " ORDER BY tenant"],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    rows = list(csv.DictReader(io.StringIO(out[out.index("tenant,"):])))
    expected = expected_by_tenant(fleet)
    assert {row["tenant"]: pytest.approx(float(row["cost"])) for row in rows} == \
        {tenant: cost for tenant, (_, cost) in expected.items()}


def test_as_of_reads_the_warehouse_as_it_was(tmp_path: Path) -> None:
    """``--as-of`` a samples version or a moment gives every table as of then (read by delta-rs's time travel);
    without it, the current version. The warehouse's path has a space and a quote (delta-rs percent-encodes
    the one, SQL must escape the other)."""
    tmp_path = tmp_path / "fleet's warehouse"
    writer = writer_for(tmp_path)
    flush(writer, 0, "GPU-1")
    (first_commit,) = DeltaTable(f"{tmp_path}/samples").history(1)
    time.sleep(0.05)
    flush(writer, 1, "GPU-2")
    moment = datetime.fromtimestamp(first_commit["timestamp"] / 1000, tz=UTC).isoformat()
    sql = "SELECT (SELECT count(*) FROM samples) AS samples, (SELECT sum(samples)::BIGINT FROM util_1h) AS rolled_up"
    answers = {}
    for as_of in (None, str(first_commit["version"]), moment):
        result = runner.invoke(app, ["query", "--warehouse", str(tmp_path), "--format", "json", sql,
                                     *(["--as-of", as_of] if as_of else [])])
        assert result.exit_code == 0, result.output
        answers[as_of] = json.loads(result.output)
    assert answers[None] == [{"samples": 4, "rolled_up": 4}]
    assert answers[str(first_commit["version"])] == answers[moment] == [{"samples": 2, "rolled_up": 2}]
    refused = runner.invoke(app, ["query", "--warehouse", str(tmp_path), "--as-of", "yesterday", sql])
    assert refused.exit_code == 2 and "--as-of 'yesterday'" in refused.output
