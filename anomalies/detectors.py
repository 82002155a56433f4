"""The detectors: each reads the analyst views and returns findings, one per anomaly and entity.

- **idle allocation** (``util_1h``): a job's hours in which at least ``idle_share`` of its device-time was below
  the idle threshold (read off the stored histogram), ``idle_hours`` or more in a row. Cost so far: its
  device-hours in those hours at the model's price; per day: its devices at the last idle hour, for 24 hours.
- **straggler** (``device_1h``): in a job on at least ``straggler_min_devices`` devices, a device whose mean SM
  activity (utilization where SM activity is unknown) over the window is ``straggler_z`` robust z-scores below
  the devices' median (z = (median - x) / (1.4826 x MAD), the MAD floored at 0.01) and at most
  ``straggler_ratio`` of it: the slow GPU that holds a data-parallel job back. Cost: the job's device-hours
  in the window x the share of the job's speed it loses (1 - x / median), at the model's price.

A finding is open when it reaches the last hour the warehouse holds.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import duckdb
import numpy as np
import polars as pl
import ruptures

from fleetmeter.sql.settings import AnomalySettings

IDLE_ALLOCATION = "idle_allocation"
STRAGGLER = "straggler"
_MAD_FLOOR = 0.01


@dataclass(frozen=True)
class Finding:
    kind: str
    cluster: str
    tenant: str
    job_id: str
    model: str
    start: datetime
    end: datetime
    ongoing: bool
    severity: float
    evidence: dict[str, float | int | str]
    cost_impact: float | None
    cost_per_day: float | None
    node: str | None = None
    device_uuid: str | None = None

    @property
    def key(self) -> tuple[str, ...]:
        """What makes two runs' findings the same anomaly (with an overlapping or adjoining span): a sick device
        stays sick whoever runs on it; a spike (or a node's fault) on one model is not one on another."""
        if self.kind == "sick_hardware":
            return (self.kind, self.cluster, "", "", self.model, self.node or "", self.device_uuid or "")
        return (self.kind, self.cluster, self.tenant, self.job_id, self.model, self.node or "", self.device_uuid or "")


_JOB_HOURS = """
SELECT u.window_start AS hour, u.cluster, u.tenant, u.job_id, u.model, u.device_hours, u.util_known_seconds,
       u.idle_seconds, p.per_device_hour
FROM util_1h AS u LEFT JOIN model_prices AS p USING (model)
WHERE u.allocated AND u.job_id IS NOT NULL AND u.window_start >= getvariable('since')
ORDER BY u.cluster, u.tenant, u.job_id, u.model, u.window_start
"""
_LAST_HOUR = "SELECT max(window_start) FROM util_1h"
_DEVICES = """
SELECT d.cluster, d.tenant, d.job_id, d.model, d.device_uuid, arg_max(d.node, d.window_start) AS node,
       coalesce(ratio(sum(d.sm_active_seconds), sum(d.sm_active_known_seconds)),
                ratio(sum(d.busy_seconds), sum(d.util_known_seconds))) AS activity,
       sum(d.sm_active_known_seconds) > 0 AS sm_known,
       sum(d.device_seconds) / 3600 AS device_hours,
       min(d.window_start) AS first, max(d.window_start) AS last_hour, any_value(p.per_device_hour) AS per_device_hour
FROM device_1h AS d LEFT JOIN model_prices AS p USING (model)
WHERE d.job_id IS NOT NULL AND d.allocated AND d.window_start >= getvariable('since')
GROUP BY d.cluster, d.tenant, d.job_id, d.model, d.device_uuid
"""


def last_hour(connection: duckdb.DuckDBPyConnection) -> datetime | None:
    rows = connection.execute(_LAST_HOUR).fetchall()
    return rows[0][0] if rows else None


def idle_allocations(connection: duckdb.DuckDBPyConnection, settings: AnomalySettings, latest: datetime,
                     ) -> list[Finding]:
    hours = pl.DataFrame(pl.from_arrow(connection.sql(_JOB_HOURS).to_arrow_table()))
    idle = (pl.col("util_known_seconds") > 0) & (pl.col("idle_seconds") >= settings.idle_share
                                                 * pl.col("util_known_seconds"))
    # a run: consecutive idle hours of one job (a new run starts after a busy hour or a missing one)
    keys = ["cluster", "tenant", "job_id", "model"]
    hours = hours.filter(idle).with_columns(
        run=(pl.col("hour").diff().over(keys) != timedelta(hours=1)).fill_null(True).cum_sum().over(keys))
    runs = hours.group_by([*keys, "run"]).agg(
        pl.col("hour").min().alias("start"), pl.col("hour").max().alias("last"), pl.len().alias("hours"),
        pl.col("device_hours").sum(), pl.col("idle_seconds").sum(), pl.col("util_known_seconds").sum(),
        pl.col("device_hours").sort_by("hour").last().alias("devices_now"),
        pl.col("per_device_hour").first()).filter(pl.col("hours") >= settings.idle_hours).sort(*keys, "start")
    return [_idle(row, latest) for row in runs.iter_rows(named=True)]


def _idle(run: dict[str, Any], latest: datetime) -> Finding:
    price = run["per_device_hour"]
    return Finding(IDLE_ALLOCATION, run["cluster"], run["tenant"], run["job_id"], run["model"], run["start"],
                   run["last"] + timedelta(hours=1), run["last"] >= latest, severity=float(run["hours"]),
                   evidence={"idle_hours": run["hours"], "device_hours": round(run["device_hours"], 3),
                             "idle_share": round(run["idle_seconds"] / run["util_known_seconds"], 4),
                             "devices_at_last_hour": round(run["devices_now"], 3)},
                   cost_impact=None if price is None else run["device_hours"] * price,
                   cost_per_day=None if price is None else run["devices_now"] * 24 * price)


def stragglers(connection: duckdb.DuckDBPyConnection, settings: AnomalySettings, latest: datetime) -> list[Finding]:
    job = ["cluster", "tenant", "job_id", "model"]
    devices = pl.DataFrame(pl.from_arrow(connection.sql(_DEVICES).to_arrow_table())).filter(
        pl.col("activity").is_not_null() & (pl.col("device_hours") >= settings.straggler_min_hours)).with_columns(
        peers=pl.len().over(job), median=pl.col("activity").median().over(job),
        job_hours=pl.col("device_hours").sum().over(job))
    devices = devices.with_columns(
        mad=(pl.col("activity") - pl.col("median")).abs().median().over(job).clip(lower_bound=_MAD_FLOOR)).with_columns(
        z=(pl.col("median") - pl.col("activity")) / (1.4826 * pl.col("mad")))
    slow = devices.filter((pl.col("peers") >= settings.straggler_min_devices) & (pl.col("z") >= settings.straggler_z)
                          & (pl.col("activity") <= settings.straggler_ratio * pl.col("median")))
    return [_straggler(device, latest) for device in slow.iter_rows(named=True)]


def _straggler(device: dict[str, Any], latest: datetime) -> Finding:
    median, price = device["median"], device["per_device_hour"]
    lost = 1 - device["activity"] / median if median > 0 else 0.0
    end = device["last_hour"] + timedelta(hours=1)
    span_days = (end - device["first"]).total_seconds() / 86_400
    wasted = None if price is None else device["job_hours"] * lost * price
    return Finding(STRAGGLER, device["cluster"], device["tenant"], device["job_id"], device["model"], device["first"],
                   end, device["last_hour"] >= latest, severity=round(device["z"], 2),
                   evidence={"activity": round(device["activity"], 4), "peers_median": round(median, 4),
                             "peers_mad": round(device["mad"], 4), "peers": device["peers"],
                             "measure": "sm_active" if device["sm_known"] else "util_compute"},
                   cost_impact=wasted, cost_per_day=None if wasted is None else wasted / span_days,
                   node=device["node"], device_uuid=device["device_uuid"])


def evidence_text(finding: Finding) -> str:
    return json.dumps(finding.evidence, sort_keys=True)


_JOB_UTIL = """
SELECT u.window_start AS hour, u.cluster, u.tenant, u.job_id, u.model, sum(u.device_hours) AS device_hours,
       ratio(sum(u.busy_seconds), sum(u.util_known_seconds)) AS utilization, any_value(p.per_device_hour) AS price
FROM util_1h AS u LEFT JOIN model_prices AS p USING (model)
JOIN (SELECT cluster, tenant, job_id, min(first_seen) AS first_seen FROM job_devices GROUP BY ALL) AS j
    USING (cluster, tenant, job_id)
WHERE u.allocated AND u.job_id IS NOT NULL AND u.window_start >= getvariable('since')
  AND u.window_start >= date_trunc('hour', j.first_seen) + INTERVAL 1 HOUR  -- the hour it starts in: start-up
GROUP BY ALL ORDER BY u.cluster, u.tenant, u.job_id, u.model, hour
"""


def regressions(connection: duckdb.DuckDBPyConnection, settings: AnomalySettings, latest: datetime,
                ) -> list[Finding]:
    """A change point in a job's hourly utilization (ruptures' binary segmentation, one break, each side at
    least ``regression_min_hours``) after which it runs ``regression_drop`` lower, and lower by at least
    ``regression_noise`` standard errors of the difference of the two means (the hourly noise from the median
    absolute hour-to-hour change, robust to the odd slow hour). Its first hour (start-up) and idle hours (idle
    allocations) are left out. Cost: the device-hours since x the utilization lost, at the model's price."""
    idle = connection.execute("SELECT getvariable('idle_threshold')").fetchall()[0][0]
    hours = pl.DataFrame(pl.from_arrow(connection.sql(_JOB_UTIL).to_arrow_table())).drop_nulls("utilization").filter(
        pl.col("utilization") >= idle)  # idle hours are idle allocations: a job idle a while and back is no drop
    findings = []
    for (cluster, tenant, job, model), series in hours.group_by("cluster", "tenant", "job_id", "model",
                                                               maintain_order=True):
        if series.height < 2 * settings.regression_min_hours:
            continue
        values = series["utilization"].to_numpy()
        if _largest_drop(values, settings.regression_min_hours) < settings.regression_drop - 1e-9:
            continue  # no change point can show the drop (less rounding): spare ruptures the job
        segmentation = ruptures.Binseg(model="l2", min_size=settings.regression_min_hours, jump=1)
        cut = segmentation.fit(values.reshape(-1, 1)).predict(n_bkps=1)[0]
        before, after = float(np.mean(values[:cut])), float(np.mean(values[cut:]))
        noise = max(1.4826 * float(np.median(np.abs(np.diff(values)))) / np.sqrt(2), 0.005)  # one hour's
        drop = before - after
        if drop < settings.regression_drop or drop < settings.regression_noise * noise * np.sqrt(
                1 / cut + 1 / (len(values) - cut)):
            continue
        since = series.slice(cut)
        price = since["price"][0]
        lost_hours = float(since["device_hours"].sum()) * drop
        findings.append(Finding(
            "regression", str(cluster), str(tenant), str(job), str(model), since["hour"][0],
            since["hour"][-1] + timedelta(hours=1), since["hour"][-1] >= latest, severity=round(drop, 4),
            evidence={"before": round(before, 4), "after": round(after, 4), "noise": round(noise, 4),
                      "hours_before": cut, "hours_after": since.height},
            cost_impact=None if price is None else lost_hours * price,
            cost_per_day=None if price is None else float(since["device_hours"][-1]) * 24 * drop * price))
    return findings


def _largest_drop(values: np.ndarray, min_size: int) -> float:
    """The largest fall from the mean before a cut to the mean after it, over every cut with ``min_size`` values
    on each side: a bound on the drop at any change point ruptures may find."""
    sums = np.cumsum(values)
    cuts = np.arange(min_size, len(values) - min_size + 1)
    before = sums[cuts - 1] / cuts
    after = (sums[-1] - sums[cuts - 1]) / (len(values) - cuts)
    return float((before - after).max())


_DEVICE_DAYS = """
SELECT d.cluster, d.model, d.device_uuid, date_trunc('day', d.window_start) AS day,
       arg_max(d.node, d.window_start) AS node, arg_max(d.tenant, d.window_start) AS tenant,
       arg_max(d.job_id, d.window_start) AS job_id,
       ratio(sum(d.busy_seconds), sum(d.util_known_seconds)) AS util,
       ratio(sum(d.temp_seconds), sum(d.temp_known_seconds)) AS temp_c,
       coalesce(ratio(sum(d.throttled_seconds), sum(d.throttle_known_seconds)), 0) AS throttled_share,
       sum(d.ecc_uncorrected) AS ecc_uncorrected, sum(d.xid_events) AS xid_events,
       coalesce(sum(d.device_seconds) FILTER (WHERE d.allocated), 0) / 3600 AS allocated_hours,
       min(d.window_start) AS first, max(d.window_start) AS last_hour, any_value(p.per_device_hour) AS price
FROM device_1h AS d LEFT JOIN model_prices AS p USING (model)
WHERE d.window_start >= getvariable('since')
GROUP BY d.cluster, d.model, d.device_uuid, day
"""
_TEMP_MAD_FLOOR = 0.5


def sick_hardware(connection: duckdb.DuckDBPyConnection, settings: AnomalySettings, latest: datetime,
                  ) -> list[Finding]:
    """Per UTC day, a device (a) hotter than expected at its load by ``sick_temp_c`` and ``sick_z`` robust
    z-scores, the expected temperature interpolated between the median temperatures of the devices of its model
    and cluster in each tenth of load (tenths of at least ``sick_min_peers``), plus its node's warmth (the
    median excess of the node's devices where four or more are compared, counted up to half of ``sick_temp_c``:
    a warm rack is no sick device, and a node of sick devices does not hide them); (b) held down by heat or a
    hardware slowdown ``sick_throttle_share`` of its time while its peers' median is below that; or (c) with an
    uncorrectable ECC error or ``xid_burst`` XID events that day. A node where three devices in four run that
    far out (a cooling fault), among ``sick_min_peers`` nodes or more, is one finding for the node instead of
    one per device. Consecutive sick days are one finding. Cost: the allocated device-hours on those days, at
    the model's price (time spent on suspect hardware)."""
    days = pl.DataFrame(pl.from_arrow(connection.sql(_DEVICE_DAYS).to_arrow_table()))
    sick: list[dict[str, Any]] = []
    for _, peers in days.group_by("cluster", "model", "day", maintain_order=True):
        peers = peers.with_columns(excess=pl.Series(_temperature_residuals(peers, settings.sick_min_peers),
                                                    dtype=pl.Float64))
        nodes = peers.group_by("node").agg(
            pl.col("excess").median().alias("warmth"), pl.col("excess").quantile(0.25, "lower").alias("most"),
            pl.col("excess").count().alias("compared"), pl.col("cluster", "model", "day", "price").first(),
            pl.col("allocated_hours").sum(), pl.col("first").min(), pl.col("last_hour").max(),
        ).filter(pl.col("compared") >= _NODE_DEVICES)
        nodes = nodes.with_columns(node_z=pl.Series(_robust_z(nodes["most"]), dtype=pl.Float64)).with_columns(
            hot=pl.lit(nodes.height >= settings.sick_min_peers) & (pl.col("most") >= settings.sick_temp_c)
            & (pl.col("node_z") >= settings.sick_z))
        hot_nodes = nodes.filter(pl.col("hot"))
        sick += [node | {"device_uuid": "", "tenant": "", "job_id": None, "why": {
            "node_excess_c": round(node["most"], 1), "node_z": round(node["node_z"], 1), "devices": node["compared"]}}
            for node in hot_nodes.iter_rows(named=True)]
        peers = peers.join(nodes.select("node", "warmth"), on="node", how="left").with_columns(
            node_warmth=pl.col("warmth").clip(0, settings.sick_temp_c / 2).fill_null(0.0)).with_columns(
            own_excess=pl.col("excess") - pl.col("node_warmth"))
        throttled_median = float(peers["throttled_share"].median())  # type: ignore[arg-type]
        peers = peers.with_columns(temp_z=pl.Series(_robust_z(peers["own_excess"]), dtype=pl.Float64)).with_columns(
            hot=((pl.col("own_excess") >= settings.sick_temp_c) & (pl.col("temp_z") >= settings.sick_z)
                 & ~pl.col("node").is_in(hot_nodes["node"].implode())).fill_null(False),  # the node's finding says it
            held=(pl.col("throttled_share") >= settings.sick_throttle_share) & pl.lit(
                peers.height >= settings.sick_min_peers and settings.sick_throttle_share > throttled_median),
            faulty=(pl.col("ecc_uncorrected") > 0) | (pl.col("xid_events") >= settings.xid_burst))
        for device in peers.filter(pl.col("hot") | pl.col("held") | pl.col("faulty")).iter_rows(named=True):
            why: dict[str, float | int | str] = {}
            if device["hot"]:
                why |= {"temp_c": round(device["temp_c"], 1), "node_warmth_c": round(device["node_warmth"], 1),
                        "expected_temp_c": round(device["temp_c"] - device["own_excess"], 1),
                        "temp_z": round(device["temp_z"], 1)}
            if device["held"]:
                why |= {"throttled_share": round(device["throttled_share"], 3),
                        "peers_throttled_share": round(throttled_median, 3)}
            if device["faulty"]:
                why |= {"ecc_uncorrected": int(device["ecc_uncorrected"]), "xid_events": int(device["xid_events"])}
            sick.append(device | {"why": why})
    return [_sick_run(run, latest) for run in _consecutive_days(sick)]


#: A node's warmth is read off its devices' excess where at least this many of them are compared.
_NODE_DEVICES = 4


def _temperature_residuals(peers: pl.DataFrame, min_peers: int) -> list[float | None]:
    """Per device of ``peers`` (one model, cluster and day): how much hotter it ran than the devices at its load,
    in degrees; None where its load or temperature is unknown (a MIG board) or fewer than ``min_peers`` devices
    share its tenth of load (nothing to compare with: never extrapolated)."""
    known = peers.select("util", "temp_c").to_numpy().astype(float)
    usable = ~np.isnan(known).any(axis=1)
    if usable.sum() < min_peers:
        return [None] * peers.height
    util, temp = known[usable, 0], known[usable, 1]
    tenths = np.minimum(np.floor(util * 10), 9)
    centres, medians, populated = [], [], np.zeros(len(util), dtype=bool)
    for tenth in np.unique(tenths):
        members = tenths == tenth
        if members.sum() >= min_peers:
            centres.append(float(np.median(util[members])))
            medians.append(float(np.median(temp[members])))
            populated |= members
    if not centres:
        return [None] * peers.height
    excess = iter(np.where(populated, temp - np.interp(util, centres, medians), np.nan).tolist())
    return [value if ok and not np.isnan(value := next(excess)) else None for ok in usable]


def _robust_z(values: pl.Series) -> list[float | None]:
    """Each value's distance from the values' median in robust standard deviations (1.4826 x MAD, floored)."""
    known = values.drop_nulls()
    if known.is_empty():
        return [None] * len(values)
    median = float(known.median())  # type: ignore[arg-type]
    mad = max(float((known - median).abs().median()), _TEMP_MAD_FLOOR)  # type: ignore[arg-type]
    return [None if value is None else (value - median) / (1.4826 * mad) for value in values.to_list()]


def _consecutive_days(sick: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Sick days grouped into runs of consecutive days per device (or node and model)."""
    runs: dict[tuple[str, str, str, str], list[list[dict[str, Any]]]] = {}
    for day in sorted(sick, key=lambda row: (row["cluster"], row["model"], row["node"], row["device_uuid"],
                                              row["day"])):
        device_runs = runs.setdefault((day["cluster"], day["model"], day["node"], day["device_uuid"]), [])
        if device_runs and day["day"] - device_runs[-1][-1]["day"] == timedelta(days=1):
            device_runs[-1].append(day)
        else:
            device_runs.append([day])
    return [run for device_runs in runs.values() for run in device_runs]


def _sick_run(run: list[dict[str, Any]], latest: datetime) -> Finding:
    last = run[-1]
    reasons: dict[str, float | int | str] = {}
    for day in run:
        reasons |= day["why"]  # the latest day's figures for each reason
    hours = sum(day["allocated_hours"] for day in run)
    price = last["price"]
    return Finding("sick_hardware", str(last["cluster"]), str(last["tenant"]), str(last["job_id"] or ""),
                   str(last["model"]), run[0]["first"], last["last_hour"] + timedelta(hours=1),
                   last["last_hour"] >= latest, severity=float(len(last["why"])),
                   evidence=reasons | {"days": len(run)}, cost_impact=None if price is None else hours * price,
                   cost_per_day=None, node=last["node"], device_uuid=last["device_uuid"] or None)


_TENANT_DAYS = """
SELECT u.window_start AS day, u.cluster, u.tenant, u.model, sum(u.device_hours) AS device_hours,
       any_value(p.per_device_hour) AS price
FROM util_1d AS u LEFT JOIN model_prices AS p USING (model)
WHERE u.allocated
GROUP BY ALL ORDER BY u.cluster, u.tenant, u.model, day
"""
_BANDS = """
SELECT cluster, tenant, model, day, mean, hi_95 FROM forecasts
WHERE measure = 'allocated_device_hours' AND mean IS NOT NULL
"""


def spikes(connection: duckdb.DuckDBPyConnection, settings: AnomalySettings, latest: datetime) -> list[Finding]:
    """A tenant's day (device-hours of a model in a cluster) above its forecast's 95 % band where
    ``fleetmeter forecast`` made one for that day, else ``spike_z`` robust z-scores above what its trailing
    ``spike_trailing_days`` lead to expect (:func:`_baseline`). Only whole days since --since. Cost: the
    device-hours above the expected, at the
    model's price."""
    days = pl.DataFrame(pl.from_arrow(connection.sql(_TENANT_DAYS).to_arrow_table())).with_columns(
        pl.col("day").dt.date())
    bands = pl.DataFrame(pl.from_arrow(connection.sql(_BANDS).to_arrow_table()))
    since = connection.execute("SELECT getvariable('since')").fetchall()[0][0]
    days = days.join(bands, on=["cluster", "tenant", "model", "day"], how="left") if not bands.is_empty() else (
        days.with_columns(mean=pl.lit(None, pl.Float64), hi_95=pl.lit(None, pl.Float64)))
    findings = []
    for (cluster, tenant, model), series in days.group_by("cluster", "tenant", "model", maintain_order=True):
        by_day = dict(series.select("day", "device_hours").iter_rows())
        first_day = min(by_day)
        for row in series.iter_rows(named=True):
            day_start = datetime.combine(row["day"], datetime.min.time(), tzinfo=latest.tzinfo)
            if day_start < since or day_start + timedelta(days=1) > latest + timedelta(hours=1):  # whole days only
                continue
            if row["hi_95"] is not None:
                expected, above = row["mean"], row["device_hours"] > row["hi_95"]
                evidence: dict[str, float | int | str] = {"band": "forecast 95 %", "hi_95": round(row["hi_95"], 2)}
            else:
                baseline = _baseline(row["day"], by_day, first_day, settings.spike_trailing_days)
                if baseline is None:
                    continue
                expected, mad, band = baseline
                above = (row["device_hours"] - expected) / (1.4826 * mad) >= settings.spike_z
                evidence = {"band": band, "mad": round(mad, 2)}
            if not above:
                continue
            extra = row["device_hours"] - expected
            findings.append(Finding(
                "spike", str(cluster), str(tenant), "", str(model), day_start, day_start + timedelta(days=1), False,
                severity=round(row["device_hours"] / expected, 2) if expected else float(row["device_hours"]),
                evidence=evidence | {"device_hours": round(row["device_hours"], 2), "expected": round(expected, 2)},
                cost_impact=None if row["price"] is None else extra * row["price"], cost_per_day=None))
    return findings


def _baseline(day: date, by_day: dict[date, float], first_day: date, trailing_days: int,
              ) -> tuple[float, float, str] | None:
    """What a tenant's day is expected to hold, from its trailing days (a day without rows held nothing), and
    their spread (MAD, at least 5 % of the trailing median): the median of the same weekday where three or more
    are among them (a weekly rhythm: a busy Saturday of a weekday tenant), else of all; None under a week."""
    trailing = {earlier: by_day.get(earlier, 0.0) for back in range(1, trailing_days + 1)
                if (earlier := day - timedelta(days=back)) >= first_day}
    if len(trailing) < 7:
        return None
    overall = float(np.median(list(trailing.values())))
    weekdays: dict[int, list[float]] = {}
    for earlier, value in trailing.items():
        weekdays.setdefault(earlier.weekday(), []).append(value)
    if len(weekdays.get(day.weekday(), [])) >= 3:
        centres = {weekday: float(np.median(values)) for weekday, values in weekdays.items()}
        expected, band = centres[day.weekday()], f"same weekday, trailing {len(trailing)} days"
        deviations = [value - centres[earlier.weekday()] for earlier, value in trailing.items()]
    else:
        expected, band = overall, f"trailing {len(trailing)} days"
        deviations = [value - overall for value in trailing.values()]
    return expected, max(float(np.median(np.abs(deviations))), 0.05 * max(overall, 1.0)), band


Detector = Callable[[duckdb.DuckDBPyConnection, AnomalySettings, datetime], list[Finding]]
#: Each kind and its detector.
DETECTORS: dict[str, Detector] = {IDLE_ALLOCATION: idle_allocations, STRAGGLER: stragglers, "regression": regressions,
                                  "sick_hardware": sick_hardware, "spike": spikes}
KINDS = tuple(DETECTORS)
