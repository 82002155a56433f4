"""The dashboard in a real headless Chromium (Debian's ``chromium``, driven by Playwright through its executable
path): a tenant signs in with its token, sees its own numbers, equal to the SQL views', and cannot reach another
tenant's pages; the pages make no request to anywhere but the server. Screenshots are kept as test artifacts
(``test-artifacts/dashboard/``, or ``$FLEETMETER_TEST_ARTIFACTS``)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, time, timedelta
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from fleetmeter.sql.catalog import Catalog
from fleetmeter.sql.output import cell
from fleetmeter.sql.settings import AnalysisSettings
from fleetmeter.sql.since import parse_since
from tests.analysis.fleet import PRICES
from tests.web.conftest import OTHER, TENANT, Server

CHROMIUM = shutil.which("chromium")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)")
ARTIFACTS = Path(os.environ.get("FLEETMETER_TEST_ARTIFACTS", "test-artifacts")) / "dashboard"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        launched.close()


def signed_in(browser: Browser, server: Server, token: str) -> tuple[Page, list[str]]:
    page = browser.new_page(viewport={"width": 1280, "height": 1600})
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.goto(f"{server.url}/")
    assert page.url.endswith("/login")
    page.fill("#token", token)
    page.click("#sign-in")
    return page, requests


def view_figure(server: Server, sql: str) -> object:
    settings = AnalysisSettings.model_validate({"warehouse": str(server.warehouse), "prices": PRICES})
    return Catalog.open(settings, parse_since(None)).connect().execute(sql).fetchall()[0][0]


def test_a_tenant_sees_its_own_numbers_and_no_one_elses(browser: Browser, server: Server) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page, requests = signed_in(browser, server, server.tokens[TENANT])
    assert page.url.endswith(f"/tenants/{TENANT}")
    page.screenshot(path=str(ARTIFACTS / "tenant.png"), full_page=True)
    end = datetime.combine(datetime.now(UTC).date() + timedelta(days=1), time(), tzinfo=UTC)
    window = f"day >= TIMESTAMPTZ '{(end - timedelta(days=7)).isoformat()}' AND day < TIMESTAMPTZ '{end.isoformat()}'"
    held = view_figure(server, "SELECT sum(device_hours) FROM costs "
                               f"WHERE allocated AND tenant = '{TENANT}' AND {window}")
    wasted = view_figure(server, "SELECT sum(wasted_cost) + sum(busy_idle_cost) FROM costs "
                                 f"WHERE allocated AND tenant = '{TENANT}' AND {window}")
    assert page.inner_text("#tile-device-hours .value") == cell(held)
    assert page.inner_text("#tile-wasted .value") == f"{cell(wasted)} USD"
    jobs = view_figure(server, f"SELECT count(DISTINCT job_id) FROM costs WHERE tenant = '{TENANT}' AND {window}")
    assert page.locator("#table-jobs tbody tr").count() == min(int(jobs), 10)  # type: ignore[call-overload]
    assert page.locator("#chart-usage svg").count() == 1

    job_link = page.locator("#table-jobs a").first
    job_link.click()
    assert "/jobs/" in page.url and page.locator("#table-devices tbody tr").count() >= 1
    page.screenshot(path=str(ARTIFACTS / "job.png"), full_page=True)

    other_job = next(row for row in server.fleet.rows if row["tenant"] == OTHER and row["job_id"])
    for path in (f"/tenants/{OTHER}", f"/jobs/{other_job['cluster']}/{OTHER}/{other_job['job_id']}",
                 f"/jobs/{other_job['cluster']}/{TENANT}/{other_job['job_id']}"):
        response = page.goto(f"{server.url}{path}")
        assert response is not None and response.status == 404, path
        assert other_job["job_id"] not in page.content()
    response = page.goto(f"{server.url}/")  # the fleet view is not a tenant's: it sends it home
    assert response is not None and page.url.endswith(f"/tenants/{TENANT}")
    page.screenshot(path=str(ARTIFACTS / "other-tenant-refused.png"))
    assert all(url.startswith(server.url) for url in requests), [url for url in requests
                                                                if not url.startswith(server.url)]


def test_an_admin_sees_the_fleet_and_a_wrong_token_is_refused(browser: Browser, server: Server) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page, _ = signed_in(browser, server, server.tokens["admin"])
    assert page.url == f"{server.url}/"
    tenants = {row.inner_text() for row in page.locator("#table-tenants tbody tr td:first-child").all()}
    assert {TENANT, OTHER} <= tenants
    page.screenshot(path=str(ARTIFACTS / "fleet.png"), full_page=True)
    refused, _ = signed_in(browser, server, "fm_not-a-token")
    assert refused.url.endswith("/login") and "not one this server knows" in refused.inner_text("#login-error")
