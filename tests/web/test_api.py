"""The REST API on a real server: its figures against the rows the warehouse was built from, tenant isolation over
every endpoint and parameter, tokens rotated while it runs, pagination, ETags and problem details."""

from __future__ import annotations

import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import polars as pl
import pytest
import yaml
from starlette.testclient import TestClient
from typer.testing import CliRunner

from fleetmeter.cli import app
from fleetmeter.planning.store import replace_table
from fleetmeter.schemas.warehouse import ANOMALIES
from fleetmeter.sql.settings import AnalysisSettings
from fleetmeter.web.app import create_app
from fleetmeter.web.auth import add_token, digest
from fleetmeter.web.cache import AnswerCache
from tests.analysis.fleet import PRICES, Row, approx_equal, capacity_s, floor, group
from tests.web.conftest import OTHER, TENANT, Server

ALLOCATED = {"where": lambda row: row["tenant"] != "unallocated"}


def close(actual: Any, expected: float) -> bool:
    return approx_equal(actual, expected, rel=1e-6)


def test_tenant_and_fleet_figures_equal_the_rows(server: Server) -> None:
    answer = server.get("/v1/tenants", server.tokens["viewer"], **server.window).json()
    expected = group(server.fleet.rows, lambda row: row["tenant"], **ALLOCATED)
    got = {tenant["tenant"]: tenant for tenant in answer["tenants"]}
    assert set(got) == set(expected)
    for tenant, totals in expected.items():
        assert close(got[tenant]["device_hours"], totals.device_s / 3600), tenant
        assert close(got[tenant]["idle_device_hours"], totals.idle_s / 3600), tenant
        assert close(got[tenant]["cost"], totals.cost), tenant
        assert close(got[tenant]["idle_cost"], totals.wasted_cost), tenant
        assert got[tenant]["wasted_cost"] >= got[tenant]["idle_cost"]
    fleet = server.get("/v1/fleet", server.tokens["admin"], **server.window).json()
    assert close(fleet["device_hours"], sum(totals.device_s for totals in expected.values()) / 3600)
    assert close(fleet["present_device_hours"], sum(capacity_s(row) for row in server.fleet.rows) / 3600)
    assert fleet["tenants"] == len(expected)


def test_a_tenants_usage_over_time_equals_its_rows_hour_by_hour(server: Server) -> None:
    points = server.get(f"/v1/tenants/{TENANT}/usage", server.tokens[TENANT], granularity="1h",
                        **server.window).json()["points"]
    hours: dict[Any, float] = defaultdict(float)
    for row in server.fleet.rows:
        if row["tenant"] == TENANT:
            hours[floor(row["ts"], "hour")] += capacity_s(row) / 3600
    got = {point["time"]: point["device_hours"] for point in points}
    assert len(got) == len(hours)
    for hour, device_hours in hours.items():
        assert close(got[hour.isoformat().replace("+00:00", "Z")], device_hours), hour


def test_jobs_page_by_page_are_every_job_once_largest_first(server: Server) -> None:
    jobs: list[dict[str, Any]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"sort": "device_hours", "limit": 3, **server.window}
        if cursor:
            params["cursor"] = cursor
        page = server.get("/v1/jobs", server.tokens["viewer"], **params).json()
        jobs += page["jobs"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    expected = group(server.fleet.rows, lambda row: (row["cluster"], row["tenant"], row["job_id"]),
                     where=lambda row: row["job_id"] is not None and row["tenant"] != "unallocated")
    order = sorted(expected, key=lambda key: (-round(expected[key].device_s, 6), key))
    assert [(job["cluster"], job["tenant"], job["job_id"]) for job in jobs] == order
    for job in jobs:
        assert close(job["device_hours"], expected[(job["cluster"], job["tenant"], job["job_id"])].device_s / 3600)


def test_a_jobs_detail_lists_its_devices_and_its_time(server: Server) -> None:
    row = next(row for row in server.fleet.rows if row["tenant"] == TENANT and row["job_id"])
    detail = server.get(f"/v1/jobs/{row['cluster']}/{TENANT}/{row['job_id']}", server.tokens[TENANT]).json()
    mine = [r for r in server.fleet.rows if (r["cluster"], r["tenant"], r["job_id"]) ==
            (row["cluster"], TENANT, row["job_id"])]
    assert {device["device_uuid"] for device in detail["devices"]} == {r["device_uuid"] for r in mine}
    assert close(detail["device_hours"], sum(capacity_s(r) for r in mine) / 3600)
    known = sum(capacity_s(r) for r in mine if r["util_compute"] is not None)
    assert close(sum(detail["utilization_histogram_hours"]), known / 3600)


# -- tenant isolation -------------------------------------------------------------------------------------------

def _other_job(server: Server) -> Row:
    return next(row for row in server.fleet.rows if row["tenant"] == OTHER and row["job_id"])


def _attempts(server: Server) -> dict[str, list[tuple[str, dict[str, Any], int | str]]]:
    """Per endpoint of the OpenAPI document: requests of the research token that reach for other data, and what
    each must get: a status, or "own" (200 with its own rows only)."""
    other = _other_job(server)
    own = next(row for row in server.fleet.rows if row["tenant"] == TENANT and row["job_id"])
    window = server.window
    return {
        "/v1/fleet": [("/v1/fleet", window, 403)],
        "/v1/tenants": [("/v1/tenants", window, "own")],
        "/v1/tenants/{tenant}": [(f"/v1/tenants/{OTHER}", window, 404), (f"/v1/tenants/{TENANT}", window, "own")],
        "/v1/tenants/{tenant}/usage": [(f"/v1/tenants/{OTHER}/usage", window, 404),
                                       (f"/v1/tenants/{TENANT}/usage", window, "own")],
        "/v1/jobs": [("/v1/jobs", {**window, "tenant": OTHER}, 403), ("/v1/jobs", window, "own"),
                     ("/v1/jobs", {**window, "cluster": other["cluster"]}, "own"),
                     ("/v1/jobs", {**window, "tenant": "*"}, 403)],
        "/v1/jobs/{cluster}/{tenant}/{job_id}": [
            (f"/v1/jobs/{other['cluster']}/{OTHER}/{other['job_id']}", {}, 404),
            (f"/v1/jobs/{other['cluster']}/{TENANT}/{other['job_id']}", {}, 404),
            (f"/v1/jobs/{own['cluster']}/{TENANT}/{own['job_id']}", {}, "own")],
        "/v1/forecasts": [("/v1/forecasts", {"tenant": OTHER}, 403), ("/v1/forecasts", {"tenant": "*"}, 403),
                          ("/v1/forecasts", {}, "own"), ("/v1/forecasts", {"cluster": "test"}, "own")],
        "/v1/capacity-plan": [("/v1/capacity-plan", {}, 403)],
        "/v1/anomalies": [("/v1/anomalies", {"tenant": OTHER}, 403), ("/v1/anomalies", {}, "own"),
                          ("/v1/anomalies", {"kind": "sick_hardware"}, "own")],
        "/v1/efficiency": [("/v1/efficiency", {"grain": "model"}, 403),
                           ("/v1/efficiency", {"grain": "tenant", "tenant": OTHER}, 403),
                           ("/v1/efficiency", {"grain": "job", "from": window["from"]}, "own"),
                           ("/v1/efficiency", {"grain": "tenant", "from": window["from"]}, "own")],
        "/v1/rightsizing": [("/v1/rightsizing", {"tenant": OTHER}, 403), ("/v1/rightsizing", {}, "own")],
    }


def _tenants_in(value: Any) -> set[str]:
    if isinstance(value, dict):
        found = {value["tenant"]} if isinstance(value.get("tenant"), str) else set()
        return found.union(*(_tenants_in(item) for item in value.values()))
    if isinstance(value, list):
        return set().union(*(_tenants_in(item) for item in value))
    return set()


def test_a_tenant_token_sees_its_own_rows_in_every_endpoint_and_nothing_else(server: Server) -> None:
    attempts = _attempts(server)
    documented = set(httpx.get(f"{server.url}/openapi.json").json()["paths"])
    assert documented == set(attempts)  # a new endpoint must be added here
    other_jobs = {row["job_id"] for row in server.fleet.rows if row["tenant"] == OTHER and row["job_id"]}
    for template, requests in attempts.items():
        for path, params, outcome in requests:
            response = server.get(path, server.tokens[TENANT], **params)
            if outcome == "own":
                assert response.status_code == 200, (path, params, response.text)
                assert _tenants_in(response.json()) <= {TENANT}, (path, params)
                assert not any(job in response.text for job in other_jobs if len(job) > 6), (path, params)
            else:
                assert response.status_code == outcome, (template, path, params, response.text)
                assert OTHER not in response.text.replace(f"/{OTHER}", "")  # nothing of theirs, but the path
    # and where a tenant has rows, it sees them
    assert server.get("/v1/tenants", server.tokens[TENANT], **server.window).json()["tenants"]
    assert server.get("/v1/anomalies", server.tokens[TENANT]).json()[0]["tenant"] == TENANT
    assert {row["tenant"] for row in server.get("/v1/forecasts", server.tokens[TENANT]).json()} == {TENANT}


def test_only_admin_tokens_reach_sql(server: Server) -> None:
    for scope in ("viewer", TENANT):
        token = server.tokens[scope]
        assert httpx.post(f"{server.url}/query", json={"sql": "SELECT 1"},
                          headers={"Authorization": f"Bearer {token}"}).status_code == 401
        assert httpx.get(f"{server.url}/queries", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    answer = httpx.post(f"{server.url}/query", json={"sql": "SELECT 1 AS one"},
                        headers={"Authorization": f"Bearer {server.tokens['admin']}"})
    assert answer.json()["rows"] == [[1]]


# -- tokens, caching, problems ----------------------------------------------------------------------------------

def test_a_token_added_or_removed_takes_effect_without_a_restart(server: Server) -> None:
    token = add_token(server.tokens_file, "rotating", "tenant", TENANT)
    assert server.get("/v1/tenants", token).status_code == 200
    entries = yaml.safe_load(server.tokens_file.read_text())
    entries["tokens"] = [entry for entry in entries["tokens"] if entry["name"] != "rotating"]
    server.tokens_file.write_text(yaml.safe_dump(entries))
    assert server.get("/v1/tenants", token).status_code == 401
    assert server.get("/v1/tenants", server.tokens[TENANT]).status_code == 200
    server.tokens_file.write_text("tokens: [{name: broken}]")  # a broken file keeps the tokens read before
    try:
        assert server.get("/v1/tenants", server.tokens[TENANT]).status_code == 200
    finally:
        server.tokens_file.write_text(yaml.safe_dump(entries))


def test_answers_carry_an_etag_and_a_matching_one_gets_304(server: Server) -> None:
    first = server.get("/v1/tenants", server.tokens["viewer"], **server.window)
    etag = first.headers["etag"]
    assert first.headers["cache-control"].startswith("private")
    again = httpx.get(f"{server.url}/v1/tenants", params=server.window,
                      headers={"Authorization": f"Bearer {server.tokens['viewer']}", "If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    assert server.get("/v1/tenants", server.tokens[TENANT], **server.window).headers["etag"] != etag


@pytest.mark.parametrize(("path", "params", "status"), [
    ("/v1/tenants", {}, 401),
    ("/v1/tenants/research/usage", {"granularity": "5m"}, 422),
    ("/v1/tenants/research/usage", {"granularity": "1m", "from": "2020-01-01", "to": "2020-02-01"}, 422),
    ("/v1/jobs", {"from": "2026-01-02", "to": "2026-01-01"}, 422),
    ("/v1/jobs", {"cursor": "not-a-cursor"}, 422),
    ("/v1/jobs", {"limit": 0}, 422),
    ("/v1/jobs", {"sort": "name"}, 422),
])
def test_refusals_are_problem_details(server: Server, path: str, params: dict[str, Any], status: int) -> None:
    response = server.get(path, server.tokens["viewer"] if status != 401 else None, **params)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == status and body["title"] and body["detail"]


def test_a_server_started_before_any_data_says_so(tmp_path: Path) -> None:
    settings = AnalysisSettings.model_validate({"warehouse": str(tmp_path / "nothing-yet"), "http": {"token": "t"}})
    client = TestClient(create_app(settings))
    response = client.get("/v1/tenants", headers={"Authorization": "Bearer t"})
    assert response.status_code == 503 and response.headers["content-type"] == "application/problem+json"
    assert "no data" in response.json()["detail"]


def test_answers_follow_the_warehouse_within_the_snapshot_age(server: Server) -> None:
    """A new version of a table shows in the answers once the snapshot is older than http.snapshot_s (1 s here):
    the next request starts a new one in the background, and a later one reads it."""
    settings = AnalysisSettings.model_validate({"warehouse": str(server.warehouse), "prices": PRICES})
    stored = pl.read_delta(str(server.warehouse / "anomalies")).drop("run_at", strict=False)
    now = datetime.now(UTC)
    late = stored.head(1).with_columns(id=pl.lit("late"), tenant=pl.lit(TENANT), job_id=pl.lit(None, pl.String),
                                       start=pl.lit(now))
    replace_table(settings, ANOMALIES, pl.concat([stored, late]), now)
    deadline = time.monotonic() + 30
    while "late" not in {row["id"] for row in server.get("/v1/anomalies", server.tokens["admin"]).json()}:
        assert time.monotonic() < deadline, "the new table version never showed"
        time.sleep(0.5)


def test_kept_answers_are_bounded_in_number_and_bytes() -> None:
    cache = AnswerCache(2, max_bytes=100)
    for key in ("a", "b", "c"):
        cache.put(key, b"x" * 10)
    assert (cache.get("a"), cache.get("b"), cache.get("c")) == (None, b"x" * 10, b"x" * 10)
    cache.put("big", b"x" * 30)  # over a quarter of the bytes: never kept
    assert cache.get("big") is None
    off = AnswerCache(0)
    off.put("a", b"x")
    assert off.get("a") is None


def test_token_add_prints_a_token_whose_hash_alone_is_kept(tmp_path: Path) -> None:
    file = tmp_path / "tokens.yaml"
    result = CliRunner().invoke(app, ["token", "add", "--file", str(file), "--name", "bot", "--scope", "tenant",
                                      "--tenant", TENANT])
    token = result.stdout.strip()
    assert result.exit_code == 0 and token.startswith("fm_")
    assert token not in file.read_text() and digest(token) in file.read_text()
    assert file.stat().st_mode & 0o077 == 0  # the owner's alone
    refused = CliRunner().invoke(app, ["token", "add", "--file", str(file), "--name", "x", "--scope", "tenant"])
    assert refused.exit_code == 2 and "needs --tenant" in refused.output
