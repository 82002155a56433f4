"""The API's questions as SQL over the analyst views, each one scoped to what the caller may see.

Tenant isolation is enforced here, where each query is built: every query over tenant rows takes the caller's
:class:`~fleetmeter.web.auth.Principal`, and for a tenant token the tenant is a bound parameter of the WHERE
clause (never text spliced into SQL), so no parameter of any endpoint can widen it. Fleet-wide answers (the
fleet summary, the pools' forecasts, the capacity plan, efficiency per model) are for admin and viewer tokens
only; the endpoints refuse them to tenant tokens before any query runs.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any, Literal

import duckdb

from fleetmeter.web.auth import Principal

Row = dict[str, Any]
JobOrder = Literal["wasted_cost", "cost", "device_hours"]

#: The figures of every usage answer, summed over rows of ``priced_rollups`` (or ``costs``).
_USAGE = """
    coalesce(sum(device_hours), 0) AS device_hours,
    coalesce(sum(busy_device_hours), 0) AS busy_device_hours,
    ratio(sum(busy_device_hours), sum(util_known_device_hours)) AS utilization,
    coalesce(sum(idle_device_hours), 0) AS idle_device_hours,
    coalesce(sum(busy_idle_device_hours), 0) AS busy_idle_device_hours,
    sum(cost) AS cost,
    sum(wasted_cost) AS idle_cost,
    sum(busy_idle_cost) AS busy_idle_cost,
    sum(wasted_cost) + coalesce(sum(busy_idle_cost), 0) AS wasted_cost"""


#: Answers cover the days before the next UTC midnight, this many unless asked otherwise.
DEFAULT_DAYS = 7
#: The snapshot's table of right-sizing over the default window (web/snapshot.py).
RIGHTSIZING_DEFAULT = "rightsizing_default"


def default_since() -> datetime:
    """The start of the default window: ``DEFAULT_DAYS`` before the next UTC midnight."""
    tomorrow = datetime.combine(datetime.now(UTC).date() + timedelta(days=1), time(), tzinfo=UTC)
    return tomorrow - timedelta(days=DEFAULT_DAYS)


#: What ``jobs`` sorts by (largest first).
_ORDER: dict[str, str] = {"wasted_cost": "wasted_cost", "cost": "cost", "device_hours": "device_hours"}


class BadCursor(ValueError):
    """A ``cursor`` parameter that is not one this API gave."""


@dataclass(frozen=True)
class Scoped:
    """The WHERE clause that limits rows to what the principal may see, with its parameters."""

    sql: str
    parameters: dict[str, Any]


def visible(principal: Principal, column: str = "tenant") -> Scoped:
    if principal.sees_everything:
        return Scoped("TRUE", {})
    return Scoped(f"{column} = $scope_tenant", {"scope_tenant": principal.tenant})


def where(principal: Principal, **equal: Any) -> Scoped:
    """The principal's scope and ``column = value`` for each value given (None: no filter), as one clause."""
    scope = visible(principal)
    filters, parameters = [scope.sql], dict(scope.parameters)
    for name, value in equal.items():
        if value is not None:
            filters.append(f"{name} = ${name}")
            parameters[name] = value
    return Scoped(" AND ".join(filters), parameters)


def _rows(cursor: duckdb.DuckDBPyConnection, sql: str, parameters: dict[str, Any]) -> list[Row]:
    relation = cursor.execute(sql, parameters)
    columns = [column[0] for column in relation.description or []]
    return [dict(zip(columns, values, strict=True)) for values in relation.fetchall()]


def fleet(cursor: duckdb.DuckDBPyConnection, start: datetime, end: datetime) -> Row:
    """The fleet's allocated usage in the window, and all device-hours present (callers check that the principal
    sees everything)."""
    return _rows(cursor, f"""
        SELECT {_USAGE},
               count(DISTINCT tenant) AS tenants,
               count(DISTINCT (cluster, tenant, job_id)) FILTER (WHERE job_id IS NOT NULL) AS jobs,
               (SELECT coalesce(sum(device_hours), 0) FROM costs WHERE day >= $start AND day < $end)
                   AS present_device_hours
        FROM costs WHERE allocated AND day >= $start AND day < $end""", {"start": start, "end": end})[0]


def tenants(cursor: duckdb.DuckDBPyConnection, principal: Principal, start: datetime, end: datetime,
            tenant: str | None = None) -> list[Row]:
    scope = visible(principal)
    only = "AND tenant = $tenant" if tenant is not None else ""
    sql = f"""
        SELECT tenant, {_USAGE},
               count(DISTINCT (cluster, job_id)) FILTER (WHERE job_id IS NOT NULL) AS jobs
        FROM costs
        WHERE allocated AND day >= $start AND day < $end AND {scope.sql} {only}
        GROUP BY tenant ORDER BY wasted_cost DESC NULLS LAST, device_hours DESC, tenant"""
    parameters = {"start": start, "end": end, **scope.parameters, **({"tenant": tenant} if tenant else {})}
    return _rows(cursor, sql, parameters)


def usage_series(cursor: duckdb.DuckDBPyConnection, principal: Principal, tenant: str | None, granularity: str,
                 start: datetime, end: datetime) -> list[Row]:
    """A tenant's (or, with ``tenant`` None, every visible tenant's) allocated usage per window of ``granularity``."""
    scope = visible(principal)
    only = "AND tenant = $tenant" if tenant is not None else ""
    sql = f"""
        SELECT window_start AS time, {_USAGE}
        FROM priced_rollups
        WHERE width = $width AND allocated AND window_start >= $start AND window_start < $end AND {scope.sql} {only}
        GROUP BY time ORDER BY time"""
    return _rows(cursor, sql, {"width": granularity, "start": start, "end": end, **scope.parameters,
                               **({"tenant": tenant} if tenant is not None else {})})


def jobs(cursor: duckdb.DuckDBPyConnection, principal: Principal, start: datetime, end: datetime, *,
         tenant: str | None, cluster: str | None, order: JobOrder, limit: int, after: str | None,
         ) -> tuple[list[Row], str | None]:
    """A page of jobs, the largest ``order`` first, and the cursor of the next page (keyset pagination: a page
    follows the last row of the one before, so rows do not repeat or go missing while pages are read)."""
    clause = where(principal, tenant=tenant, cluster=cluster)
    parameters: dict[str, Any] = clause.parameters | {"start": start, "end": end, "limit": limit + 1}
    page = ""
    if after is not None:
        value, last = decode_cursor(after)
        page = "WHERE sort_key < $k OR (sort_key = $k AND (cluster, tenant, job_id) > ($c, $t, $j))"
        parameters |= {"k": value, "c": last[0], "t": last[1], "j": last[2]}
    sql = f"""
        WITH per_job AS (
            SELECT cluster, tenant, job_id, {_USAGE},
                   min(day)::DATE AS first_day, max(day)::DATE AS last_day
            FROM costs WHERE job_id IS NOT NULL AND allocated AND day >= $start AND day < $end AND {clause.sql}
            GROUP BY cluster, tenant, job_id
        ), keyed AS (SELECT *, coalesce({_ORDER[order]}, 0.0)::DOUBLE AS sort_key FROM per_job)
        SELECT * FROM keyed {page}
        ORDER BY sort_key DESC, cluster, tenant, job_id
        LIMIT $limit"""
    rows = _rows(cursor, sql, parameters)
    more = len(rows) > limit
    rows = rows[:limit]
    following = encode_cursor(rows[-1]["sort_key"], (rows[-1]["cluster"], rows[-1]["tenant"], rows[-1]["job_id"])) \
        if more and rows else None
    for row in rows:
        del row["sort_key"]
    return rows, following


def encode_cursor(value: float, key: tuple[str, str, str]) -> str:
    return base64.urlsafe_b64encode(json.dumps([value, *key]).encode()).decode().rstrip("=")


def decode_cursor(text: str) -> tuple[float, tuple[str, str, str]]:
    try:
        decoded = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError) as exc:
        raise BadCursor("not a cursor this API gave") from exc
    if not (isinstance(decoded, list) and len(decoded) == 4 and isinstance(decoded[0], int | float)
            and not isinstance(decoded[0], bool) and all(isinstance(part, str) for part in decoded[1:])):
        raise BadCursor("not a cursor this API gave")
    return float(decoded[0]), (decoded[1], decoded[2], decoded[3])


def job(cursor: duckdb.DuckDBPyConnection, principal: Principal, cluster: str, tenant: str, job_id: str,
        ) -> Row | None:
    """A job over its whole life: its usage, its devices and its utilization histogram; None if the principal
    may not see it or it does not exist."""
    scope = visible(principal)
    key = {"cluster": cluster, "tenant": tenant, "job_id": job_id, **scope.parameters}
    where = f"cluster = $cluster AND tenant = $tenant AND job_id = $job_id AND {scope.sql}"
    devices = _rows(cursor, f"""
        SELECT device_uuid, node, vendor, model, first_seen, last_seen, device_seconds / 3600 AS device_hours,
               ratio(busy_seconds, util_known_seconds) AS utilization, mem_used_max_bytes
        FROM job_devices WHERE {where} ORDER BY node, device_uuid""", key)
    if not devices:
        return None
    usage = _rows(cursor, f"SELECT {_USAGE} FROM costs WHERE {where}", key)[0]
    histogram = _rows(cursor, f"SELECT hist_add(util_hist_seconds) AS h FROM util_1d WHERE {where}", key)[0]["h"]
    return usage | {
        "cluster": cluster, "tenant": tenant, "job_id": job_id, "devices": devices,
        "first_seen": min(device["first_seen"] for device in devices),
        "last_seen": max(device["last_seen"] for device in devices),
        "utilization_histogram_hours": [(seconds or 0.0) / 3600 for seconds in histogram or [0.0] * 20],
    }


def forecasts(cursor: duckdb.DuckDBPyConnection, principal: Principal, *, tenant: str | None,
              cluster: str | None, model: str | None, limit: int) -> list[Row]:
    """Forecast rows; a tenant token sees its own series only (the pools, tenant '*', are fleet-wide)."""
    clause = where(principal, tenant=tenant, cluster=cluster, model=model)
    return _rows(cursor, f"""
        SELECT cluster, tenant, model, measure, day, actual, mean, lo_80, hi_80, lo_95, hi_95, method, note
        FROM forecasts WHERE {clause.sql}
        ORDER BY cluster, tenant, model, measure, day LIMIT $limit""", clause.parameters | {"limit": limit})


def capacity_plan(cursor: duckdb.DuckDBPyConnection) -> list[Row]:
    return _rows(cursor, """
        SELECT cluster, model, quarter, supply_devices, demand_devices, headroom_devices, runs_out_on, add_devices,
               note
        FROM capacity_plan ORDER BY cluster, model, quarter_start""", {})


def anomalies(cursor: duckdb.DuckDBPyConnection, principal: Principal, *, status: str | None, kind: str | None,
              tenant: str | None, limit: int) -> list[Row]:
    """Anomalies, the costliest first; a tenant token sees those of its tenant (not a node's or a device's that
    no tenant owns)."""
    clause = where(principal, status=status, kind=kind, tenant=tenant)
    return _rows(cursor, f"""
        SELECT id, kind, status, cluster, tenant, job_id, node, device_uuid, model, start, "end", severity,
               evidence, cost_impact, cost_per_day
        FROM anomalies WHERE {clause.sql}
        ORDER BY status = 'open' DESC, cost_impact DESC NULLS LAST, id LIMIT $limit""",
                 clause.parameters | {"limit": limit})


def efficiency(cursor: duckdb.DuckDBPyConnection, principal: Principal, grain: str, tenant: str | None,
               limit: int) -> list[Row]:
    """The efficiency view at a grain (since the cursor's ``since``); per model is fleet-wide."""
    clause = where(principal, grain=grain, tenant=tenant)
    return _rows(cursor, f"""
        SELECT * EXCLUDE (mem_peak_share, mem_typical_share, device_cost)
        FROM efficiency WHERE {clause.sql}
        ORDER BY coalesce(idle_cost, 0) + coalesce(busy_idle_cost, 0) DESC, device_hours DESC,
                 cluster, tenant, job_id, model
        LIMIT $limit""", clause.parameters | {"limit": limit})


def rightsizing(cursor: duckdb.DuckDBPyConnection, principal: Principal, tenant: str | None,
                limit: int, default_window: bool = False) -> list[Row]:
    """Right-sizing since the cursor's ``since``; over the default window, from the snapshot's table of it."""
    clause = where(principal, tenant=tenant)
    relation = RIGHTSIZING_DEFAULT if default_window else "rightsizing"
    return _rows(cursor, f"""
        SELECT cluster, tenant, job_id, model, recommended, change, saving_per_day, saving_in_period,
               per_device_hour, recommended_per_device_hour, compute_reading, compute_quantile, compute_peak_hourly,
               compute_needed,
               recommended_compute_share, mem_peak_bytes, memory_needed, recommended_memory_bytes, device_hours,
               observed_hours
        FROM {relation} WHERE {clause.sql}
        ORDER BY saving_per_day DESC, cluster, tenant, job_id, model LIMIT $limit""",
                 clause.parameters | {"limit": limit})
