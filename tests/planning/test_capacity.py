"""The capacity plan on a pool whose demand and supply are given: headroom, the day it runs out, what to add."""

from __future__ import annotations

from datetime import date, timedelta

import polars as pl

from fleetmeter.planning.capacity import capacity_plan
from fleetmeter.sql.settings import CapacitySettings, PlannedChange

START = date(2027, 3, 25)  # the last week of a quarter, then the next one


def forecasts(demand: list[float]) -> pl.DataFrame:
    return pl.DataFrame([{"cluster": "c", "tenant": "*", "model": "H100", "measure": "peak_devices",
                          "day": START + timedelta(days=day), "mean": value - 5, "hi_80": value, "hi_95": value + 5}
                         for day, value in enumerate(demand)])


def test_headroom_the_day_it_runs_out_and_the_devices_to_add() -> None:
    demand = [80 + day for day in range(30)]  # 80 on 25 March, 109 on 23 April
    supply = pl.DataFrame({"cluster": ["c"], "model": ["H100"], "day": [START - timedelta(days=1)], "devices": [100.0]})
    planned = [PlannedChange(cluster="c", model="H100", starting=date(2027, 4, 10), devices=8),
               PlannedChange(cluster="c", model="H100 NVL", starting=date(2027, 4, 1), devices=5)]  # another pool
    plan = capacity_plan(forecasts(demand), supply, CapacitySettings(level=80, target_headroom=0.1, planned=planned))
    assert plan.filter(pl.col("model") == "H100 NVL")["note"].to_list() == [
        "no tenant held any of its devices: no demand to forecast"]  # a planned model is a pool of its own
    first, second = plan.filter(pl.col("model") == "H100").sort("quarter").to_dicts()
    assert first["quarter"] == "2027-Q1" and second["quarter"] == "2027-Q2"
    # supply 100 until 10 April (demand 95 on the 9th), 108 after; demand is 108 on 22 April, 109 on the 23rd
    assert first["runs_out_on"] == date(2027, 4, 23) and first["headroom_devices"] == 100 - 86
    # Q1 (25-31 March): at most 86 x 1.1 = 94.6 needed, 100 there: none; Q2 up to 109 x 1.1 = 119.9 against 108: 12
    assert first["add_devices"] == 0 and second["add_devices"] == 12
    assert second["supply_devices"] == 108 and second["demand_devices"] == 109
    # the 95 % bound, 5 more devices every day: Q1 needs 91 x 1.1 = 100.1 (1 more), Q2 125.4 - 108 = 17.4 (18, 1 added)
    plan95 = capacity_plan(forecasts(demand), supply, CapacitySettings(level=95, target_headroom=0.1, planned=planned))
    assert plan95.filter(pl.col("model") == "H100").sort("quarter")["add_devices"].to_list() == [1, 17]


def test_a_pool_without_a_forecast_says_so() -> None:
    supply = pl.DataFrame({"cluster": ["c"], "model": ["A100"], "day": [START], "devices": [16.0]})
    plan = capacity_plan(forecasts([1.0]).clear(), supply, CapacitySettings())
    assert plan.to_dicts()[0]["note"] == "no tenant held any of its devices: no demand to forecast"
    retired = pl.DataFrame({"cluster": ["c", "c"], "model": ["A100", "V100"], "day": [START, START - timedelta(30)],
                            "devices": [16.0, 40.0]})  # the V100s' rows stopped a month ago
    plan = capacity_plan(forecasts([1.0]).clear(), retired, CapacitySettings(planned=[
        PlannedChange(cluster="c", model="A100", starting=START, devices=-100)]))
    assert dict(plan.select("model", "supply_devices").iter_rows()) == {"A100": 16.0, "V100": 0.0}
