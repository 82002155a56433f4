"""`fleetmeter export focus`: the FinOps Foundation's validator passes the export (CSV and Parquet), its total is
the `costs` view's, and each charge is the figure computed independently from the fleet's sample rows."""

from __future__ import annotations

import json
import subprocess
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import yaml
from typer.testing import CliRunner

from fleetmeter.cli import app
from tests.analysis.conftest import Fleet
from tests.analysis.fleet import group

FOCUS = Path(__file__).parents[1] / "focus"
VALIDATOR = Path(__file__).parents[2] / ".venv" / "focus-validator" / "bin" / "python"
needs_validator = pytest.mark.skipif(not VALIDATOR.exists(), reason="the FOCUS validator's environment is missing "
                                     "(./dev test makes it: tests/focus/requirements.txt)")
#: Columns FOCUS 1.2 requires (mandatory, or conditional on what this dataset holds) and 1.3's allocation columns.
FOCUS_1_2_COLUMNS = {
    "BilledCost", "BillingAccountId", "BillingAccountName", "BillingAccountType", "BillingCurrency",
    "BillingPeriodEnd", "BillingPeriodStart", "ChargeCategory", "ChargeClass", "ChargeDescription",
    "ChargeFrequency", "ChargePeriodEnd", "ChargePeriodStart", "ConsumedQuantity", "ConsumedUnit", "ContractedCost",
    "ContractedUnitPrice", "EffectiveCost", "InvoiceIssuerName", "ListCost", "ListUnitPrice", "PricingCategory",
    "PricingCurrency", "PricingQuantity", "PricingUnit", "ProviderName", "PublisherName", "RegionId", "RegionName",
    "ResourceId", "ResourceName", "ResourceType", "ServiceCategory", "ServiceName", "ServiceSubcategory", "SkuId",
    "SkuMeter", "SkuPriceId", "SubAccountId", "SubAccountName", "SubAccountType", "Tags",
}
FOCUS_1_3_ALLOCATION = {"AllocatedMethodId", "AllocatedMethodDetails", "AllocatedResourceId",
                        "AllocatedResourceName", "AllocatedTags"}


def export(fleet: Fleet, tmp_path: Path, output_format: str, **settings: Any) -> Path:
    config = tmp_path / "analysis.yaml"
    config.write_text(yaml.safe_dump(fleet.settings(**settings).model_dump(mode="json", exclude={"http"})))
    path = tmp_path / f"focus.{output_format}"
    first, stop = days(fleet)
    result = CliRunner().invoke(app, ["export", "focus", "--config", str(config), "--from", first.isoformat(),
                                      "--to", stop.isoformat(), "--format", output_format, "--output", str(path)])
    assert result.exit_code == 0, result.output
    return path


def days(fleet: Fleet) -> tuple[date, date]:
    """The fleet's UTC days: its first, and the one after its last."""
    first = fleet.start.date()
    return first, first + timedelta(days=3)


def validate(path: Path) -> dict[str, Any]:
    result = subprocess.run([str(VALIDATOR), str(FOCUS / "validate.py"), str(path), str(FOCUS / "overrides.yaml")],
                            capture_output=True, text=True, timeout=300)
    assert result.stdout, result.stderr[-3000:]
    verdict: dict[str, Any] = json.loads(result.stdout)
    verdict["returncode"] = result.returncode
    return verdict


@needs_validator
@pytest.mark.parametrize("output_format", ["csv", "parquet"])
def test_the_foundations_validator_passes_the_export(fleet: Fleet, tmp_path: Path, output_format: str) -> None:
    verdict = validate(export(fleet, tmp_path, output_format))
    assert verdict["returncode"] == 0 and not verdict["failed"], verdict
    statuses = verdict["statuses"]
    assert sum(status == "passed" for status in statuses.values()) >= 120
    assert {check for check, status in statuses.items() if status == "skipped"} == set(
        yaml.safe_load((FOCUS / "overrides.yaml").read_text())["overrides"])


@needs_validator
def test_the_validator_can_fail_on_this_export(fleet: Fleet, tmp_path: Path) -> None:
    """A charge without a cost and a period without its time zone are caught: the verdict is not a rubber stamp."""
    frame = pl.read_csv(export(fleet, tmp_path, "csv"), infer_schema=False)
    broken = frame.with_columns(pl.when(pl.int_range(pl.len()) == 0).then(None).otherwise(pl.col("BilledCost"))
                                .alias("BilledCost"),
                                pl.col("ChargePeriodStart").str.replace("Z$", ""))
    path = tmp_path / "broken.csv"
    broken.write_csv(path)
    verdict = validate(path)
    assert verdict["returncode"] == 1
    assert {"BilledCost_NotNull", "ChargePeriodStart_IsDateTime"} <= set(verdict["failed"])


def test_the_charges_are_the_fleets_costs_with_idle_time_as_its_own_charge(fleet: Fleet, tmp_path: Path) -> None:
    focus = pl.read_parquet(export(fleet, tmp_path, "parquet"))
    assert set(focus.columns) >= FOCUS_1_2_COLUMNS | FOCUS_1_3_ALLOCATION
    first, stop = days(fleet)
    total = fleet.query(f"SELECT sum(cost) AS cost FROM costs WHERE day >= DATE '{first}' AND day < DATE '{stop}'")
    assert focus["BilledCost"].sum() == pytest.approx(total[0]["cost"], rel=1e-9)

    def key(row: dict[str, Any]) -> tuple[Any, ...]:
        day = datetime.fromtimestamp(row["ts"] / 1000, tz=UTC).date()
        return row["tenant"], row["job_id"], row["model"], day

    expected = group(fleet.rows, key)
    charges: dict[tuple[Any, ...], dict[str, float]] = defaultdict(lambda: defaultdict(float))
    quantities: dict[tuple[Any, ...], dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for row in focus.iter_rows(named=True):
        kind = f"{row['SkuMeter']}/{row['x_AllocationState']}"
        found = (row["x_Tenant"], row["x_JobId"], row["x_Model"], row["ChargePeriodStart"].date())
        charges[found][kind] += row["BilledCost"]
        quantities[found][kind] += row["ConsumedQuantity"]
    assert set(charges) == {k for k, totals in expected.items() if totals.cost > 0}
    kinds = {kind for found in charges.values() for kind, charge in found.items() if charge > 0}
    assert kinds == {"Device Hours/used", "Device Hours/idle", "Device Hours/unallocated", "Energy/used",
                     "Energy/unallocated"}  # the fleet has every kind of charge
    for found, totals in expected.items():
        if totals.cost == 0:
            continue
        device_cost = totals.cost - totals.energy_cost
        if found[0] == "unallocated":
            assert charges[found]["Device Hours/unallocated"] == pytest.approx(device_cost, rel=1e-9)
            assert quantities[found]["Device Hours/unallocated"] == pytest.approx(totals.device_s / 3600)
            continue
        assert charges[found]["Device Hours/idle"] == pytest.approx(totals.wasted_cost, rel=1e-9, abs=1e-9)
        assert quantities[found]["Device Hours/idle"] == pytest.approx(totals.idle_s / 3600, abs=1e-9)
        assert charges[found]["Device Hours/used"] == pytest.approx(device_cost - totals.wasted_cost, rel=1e-9,
                                                                     abs=1e-9)
        assert charges[found]["Energy/used"] == pytest.approx(totals.energy_cost, rel=1e-9, abs=1e-9)


def test_each_pools_allocated_ratios_add_up_to_one(fleet: Fleet, tmp_path: Path) -> None:
    focus = pl.read_parquet(export(fleet, tmp_path, "parquet"))
    ratios = focus.select(
        "ResourceId", "ChargePeriodStart", "SkuMeter",
        ratio=pl.col("AllocatedMethodDetails").str.json_path_match("$.Elements[0].AllocatedRatio").cast(pl.Float64))
    sums = ratios.group_by("ResourceId", "ChargePeriodStart", "SkuMeter").agg(pl.col("ratio").sum())
    assert sums["ratio"].to_list() == pytest.approx([1.0] * sums.height)
    assert focus.filter(pl.col("ProviderName").is_null() | pl.col("ResourceId").is_null()
                        | pl.col("SkuPriceId").is_null()).is_empty()  # what the skipped validator rules mean


def test_refusals_are_one_line(fleet: Fleet, tmp_path: Path) -> None:
    config = tmp_path / "analysis.yaml"
    config.write_text(yaml.safe_dump(fleet.settings(currency="dollars").model_dump(mode="json", exclude={"http"})))
    cases = [
        (["--from", "2026-11-01", "--to", "2026-12-01"], "not an ISO 4217 code"),
        (["--from", "2026-12-01", "--to", "2026-11-01"], None),
        (["--from", "November", "--to", "2026-12-01"], "are dates"),
        (["--from", "2026-11-01", "--to", "2026-12-01", "--format", "parquet"], "needs --output"),
    ]
    for arguments, message in cases:
        result = CliRunner().invoke(app, ["export", "focus", "--config", str(config), *arguments])
        assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1, result.output
        assert message is None or message in result.output
