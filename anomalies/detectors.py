"""The detectors: each reads the analyst views and returns findings, one per anomaly and entity.

- **idle allocation** (``util_1h``): a job's hours in which at least ``idle_share`` of its device-time was below
  the idle threshold (read off the stored histogram), ``idle_hours`` or more in a row. Cost so far: its
  device-hours in those hours at the model's price; per day: its devices at the last idle hour, for 24 hours.
- **straggler** (``samples``): in a job on at least ``straggler_min_devices`` devices, a device whose mean SM
  activity (utilization where SM activity is unknown) over the window is ``straggler_z`` robust z-scores below
  the devices' median (z = (median - x) / (1.4826 x MAD), the MAD floored at 0.01) and at most
  ``straggler_ratio`` of it: the slow GPU that holds a data-parallel job back. Cost: the job's device-hours
  in the window x the share of the job's speed it loses (1 - x / median), at the model's price.

A finding is open when it reaches the last hour the warehouse holds.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import duckdb
import polars as pl

from fleetmeter.sql.settings import AnomalySettings

IDLE_ALLOCATION = "idle_allocation"
STRAGGLER = "straggler"
KINDS = (IDLE_ALLOCATION, STRAGGLER)
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
        """What makes two runs' findings the same anomaly (with an overlapping or adjoining span)."""
        return (self.kind, self.cluster, self.tenant, self.job_id, self.node or "", self.device_uuid or "")


_JOB_HOURS = """
SELECT u.window_start AS hour, u.cluster, u.tenant, u.job_id, u.model, u.device_hours, u.util_known_seconds,
       u.idle_seconds, p.per_device_hour
FROM util_1h AS u LEFT JOIN model_prices AS p USING (model)
WHERE u.allocated AND u.job_id IS NOT NULL AND u.window_start >= getvariable('since')
ORDER BY u.cluster, u.tenant, u.job_id, u.model, u.window_start
"""
_LAST_HOUR = "SELECT max(window_start) FROM util_1h"
_DEVICES = """
SELECT s.cluster, s.tenant, s.job_id, s.model, s.device_uuid, any_value(s.node) AS node,
       sum(coalesce(s.sm_active, s.util_compute) * s.interval_s * coalesce(s.share, 1))
           / sum(s.interval_s * coalesce(s.share, 1)) FILTER (WHERE coalesce(s.sm_active, s.util_compute) IS NOT NULL)
           AS activity,
       bool_or(s.sm_active IS NOT NULL) AS sm_known,
       sum(s.interval_s * coalesce(s.share, 1)) / 3600 AS device_hours,
       min(s.ts) AS first, max(s.ts + to_microseconds(CAST(s.interval_s * 1e6 AS BIGINT))) AS last,
       any_value(p.per_device_hour) AS per_device_hour
FROM samples AS s LEFT JOIN model_prices AS p USING (model)
WHERE s.job_id IS NOT NULL AND s.tenant <> 'unallocated' AND s.ts >= getvariable('since')
GROUP BY s.cluster, s.tenant, s.job_id, s.model, s.device_uuid
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
    devices = pl.DataFrame(pl.from_arrow(connection.sql(_DEVICES).to_arrow_table())).filter(
        pl.col("activity").is_not_null() & (pl.col("device_hours") >= settings.straggler_min_hours))
    findings = []
    for (cluster, tenant, job, model), peers in devices.group_by("cluster", "tenant", "job_id", "model",
                                                                maintain_order=True):
        if peers.height < settings.straggler_min_devices:
            continue
        median = float(peers["activity"].median())  # type: ignore[arg-type]
        mad = max(float((peers["activity"] - median).abs().median()), _MAD_FLOOR)  # type: ignore[arg-type]
        job_hours = float(peers["device_hours"].sum())
        for device in peers.iter_rows(named=True):
            z = (median - device["activity"]) / (1.4826 * mad)
            if z < settings.straggler_z or device["activity"] > settings.straggler_ratio * median:
                continue
            lost = 1 - device["activity"] / median if median > 0 else 0.0
            price = device["per_device_hour"]
            span_days = max((device["last"] - device["first"]).total_seconds() / 86_400, 1 / 24)
            findings.append(Finding(
                STRAGGLER, str(cluster), str(tenant), str(job), str(model), device["first"], device["last"],
                device["last"] >= latest, severity=round(z, 2),
                evidence={"activity": round(device["activity"], 4), "peers_median": round(median, 4),
                          "peers_mad": round(mad, 4), "peers": peers.height,
                          "measure": "sm_active" if device["sm_known"] else "util_compute"},
                cost_impact=None if price is None else job_hours * lost * price,
                cost_per_day=None if price is None else job_hours * lost * price / span_days,
                node=device["node"], device_uuid=device["device_uuid"]))
    return findings


def evidence_text(finding: Finding) -> str:
    return json.dumps(finding.evidence, sort_keys=True)
