"""``fleetmeter forecast`` and ``fleetmeter plan`` on a warehouse holding nine weeks of generated history
(fleetmeter/demo/history.py, stored through the import path): the series fitted are the demand the history
was generated with, the stored tables read back with delta-rs, the TCO computed again by hand."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
import yaml
from deltalake import DeltaTable
from typer.testing import CliRunner

from fleetmeter.cli import app
from fleetmeter.demo.history import Demand, History, Pool
from fleetmeter.pipeline.importing.runner import run_import
from fleetmeter.pipeline.settings import PipelineSettings

H100, A100 = "NVIDIA H100 80GB HBM3", "NVIDIA A100-SXM4-80GB"
DAYS = 63
cli = CliRunner()
ECONOMICS = [
    {"model": H100, "purchase_price": 25_000, "depreciation_years": 4, "hosting_per_year": 2_000,
     "support_per_year": 1_000, "throughput": 2.0, "power_kw": 0.7, "lead_time_quarters": 1, "min_order": 8},
    {"model": A100, "purchase_price": 10_000, "depreciation_years": 5, "hosting_per_year": 1_500,
     "throughput": 1.0, "power_kw": 0.4, "lead_time_quarters": 0, "min_order": 8, "on_demand_per_hour": 1.5,
     "reserved_per_hour": 0.9},
]


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, History, str]:
    """The warehouse, its history, and what `fleetmeter forecast` said of it."""
    root = tmp_path_factory.mktemp("planning")
    h100 = Pool("east", H100, [f"GPU-h{i}" for i in range(16)], [f"east-{i // 8}" for i in range(16)])
    a100 = Pool("east", A100, [f"GPU-a{i}" for i in range(8)], ["east-a"] * 8)
    demands = [Demand("research", H100, 7, 0.04, 0.4, 0.6), Demand("vision", H100, 4, 0.02, 0.3, 0.4),
               Demand("speech", A100, 4, 0.03, 0.5, 0.7)]
    end = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=1)
    history = History([h100, a100], demands, DAYS, end)
    run_import(history, PipelineSettings(warehouse={"uri": str(root / "warehouse")}))  # type: ignore[arg-type]
    (root / "analysis.yaml").write_text(yaml.safe_dump({
        "warehouse": str(root / "warehouse"), "economics": ECONOMICS, "pue": 1.3, "per_kwh": 0.1,
        "forecast": {"horizon_days": 120}, "procurement": {"quarters": 2}}))
    return root, history, run("forecast", "--config", str(root / "analysis.yaml"))


def run(*args: str) -> str:
    result = cli.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def test_forecasts_and_the_capacity_plan_are_stored(fleet: tuple[Path, History, str]) -> None:
    root, history, output = fleet
    assert "15 series" in output and "0 without enough history" in output  # (3 tenants + 2 pools) x 3 measures
    forecasts = pl.DataFrame(pl.from_arrow(DeltaTable(str(root / "warehouse" / "forecasts")).to_pyarrow_table()))
    held = history.held()
    last_day = (history.end - timedelta(days=1)).date()
    for (tenant, model), devices in held.items():
        actual = forecasts.filter((pl.col("tenant") == tenant) & (pl.col("model") == model)
                                  & pl.col("actual").is_not_null()).sort("day")
        peak = actual.filter(pl.col("measure") == "peak_devices")
        assert peak["day"].max() == last_day
        days = peak.height  # the series starts on the tenant's first day with demand
        assert peak["actual"].to_list() == [float(d) for d in devices[-days:]]
        hours = actual.filter(pl.col("measure") == "allocated_device_hours")["actual"].to_list()
        assert hours == pytest.approx([24.0 * d for d in devices[-days:]])
    fitted = forecasts.filter(pl.col("mean").is_not_null())
    assert set(fitted["method"]) <= {"AutoETS", "MSTL", "SeasonalNaive"}
    assert fitted["day"].min() == last_day + timedelta(days=1)
    assert fitted.select("cluster", "tenant", "model", "measure").unique().height == 15
    plan = pl.DataFrame(pl.from_arrow(DeltaTable(str(root / "warehouse" / "capacity_plan")).to_pyarrow_table()))
    assert set(plan["model"]) == {H100, A100}
    supply = dict(plan.group_by("model").agg(pl.col("supply_devices").first()).iter_rows())
    assert supply == {H100: 16.0, A100: 8.0}  # every device is in the rows, allocated or not


def test_plan_buys_within_the_constraints_and_answers_what_if(fleet: tuple[Path, History, str]) -> None:
    root, _, _ = fleet
    config = str(root / "analysis.yaml")
    document = json.loads(cli.invoke(app, ["plan", "--config", config, "--format", "json"]).stdout)
    capacity, purchases = document["capacity_plan"], document["purchases"]
    assert any(note.startswith("purchases:") for note in document["notes"])
    assert {row["model"] for row in capacity} == {H100, A100}
    for purchase in purchases:
        minimum = next(e["min_order"] for e in ECONOMICS if e["model"] == purchase["model"])
        assert purchase["devices"] >= minimum
    after = json.loads(cli.invoke(app, ["plan", "--config", config, "--move", f"speech:{A100}:{H100}", "--format",
                                        "json"]).stdout)
    assert any(note.startswith(f"after speech: {A100} -> {H100}: running cost") for note in after["notes"])
    moved_supply = {(row["model"], row["quarter"]): row["supply_devices"] for row in after["capacity_plan_after"]}
    assert {supply for (model, _), supply in moved_supply.items() if model == A100} == {8.0}  # measured, not re-added
    csv = cli.invoke(app, ["plan", "--config", config, "--format", "csv", "--table", "purchases"])
    assert csv.exit_code == 0 and csv.stdout.splitlines()[0] == '"cluster","model","quarter","devices","cost"'
    for refused, says in ((["--move", "nobody"], "TENANT:FROM_MODEL:TO_MODEL"),
                          (["--move", f"nobody:{A100}:{H100}"], "no forecast of nobody"),
                          (["--format", "parquet"], "--format parquet"), (["--table", "x"], "--table 'x'")):
        wrong = cli.invoke(app, ["plan", "--config", config, *refused])
        assert wrong.exit_code == 2 and says in wrong.output, wrong.output


def test_tco_by_model_is_what_owning_or_renting_costs(fleet: tuple[Path, History, str]) -> None:
    root, history, _ = fleet
    output = run("query", "--config", str(root / "analysis.yaml"), "--format", "json",
                 "SELECT model, pricing, present_device_hours, allocated_device_hours, busy_device_hours, cost, "
                 "per_allocated_hour, per_busy_hour FROM tco_by_model ORDER BY model, pricing")
    rows = {(row["model"], row["pricing"]): row for row in json.loads(output)}
    assert set(rows) == {(A100, "on_demand"), (A100, "owned"), (A100, "reserved"), (H100, "owned")}
    hours = (history.end - history.start).days * 24
    owned = rows[H100, "owned"]
    assert owned["present_device_hours"] == pytest.approx(16 * hours)
    samples = pl.DataFrame(pl.from_arrow(DeltaTable(str(root / "warehouse" / "samples")).to_pyarrow_table(
        columns=["model", "energy_j"])))
    energy_kwh = samples.filter(pl.col("model") == H100)["energy_j"].sum() / 3.6e6
    fixed = 16 * hours * (25_000 / 4 + 2_000 + 1_000) / 8766
    assert owned["cost"] == pytest.approx(fixed + energy_kwh * 1.3 * 0.1)
    assert owned["per_allocated_hour"] == pytest.approx(owned["cost"] / owned["allocated_device_hours"])
    held_hours = sum(history.held()["speech", A100]) * 24
    assert rows[A100, "on_demand"]["allocated_device_hours"] == pytest.approx(held_hours)
    assert rows[A100, "on_demand"]["cost"] == pytest.approx(held_hours * 1.5)
    assert rows[A100, "reserved"]["cost"] == pytest.approx(8 * hours * 0.9)  # paid for every device, used or not
    assert rows[A100, "reserved"]["per_busy_hour"] == pytest.approx(
        8 * hours * 0.9 / rows[A100, "reserved"]["busy_device_hours"])


def test_the_report_shows_the_forecast_and_the_plan(fleet: tuple[Path, History, str]) -> None:
    root, _, _ = fleet
    output = run("report", "--config", str(root / "analysis.yaml"), "--html", str(root / "report.html"))
    assert "Capacity plan" in output and "Forecast methods" in output and "Total cost of ownership" in output
    page = (root / "report.html").read_text()
    for pool in (H100, A100):
        assert f"Demand and supply: east / {pool}" in page
    for part in ("fan-95-0", "fan-80-0", "fan-mean-0", "fan-history-0", "fan-supply-0", 'id="table-capacity-plan"'):
        assert part in page


def test_a_history_too_short_for_any_forecast_is_said_not_crashed_on(fleet: tuple[Path, History, str]) -> None:
    root, _, _ = fleet  # the last test of the module: it replaces the stored forecasts
    output = run("forecast", "--config", str(root / "analysis.yaml"), "--since", "20d")
    assert "0 forecast" in output and "15 without enough history" in output
    plan = pl.DataFrame(pl.from_arrow(DeltaTable(str(root / "warehouse" / "capacity_plan")).to_pyarrow_table()))
    assert set(plan["note"]) == {"not enough history to forecast its pool's demand"}
