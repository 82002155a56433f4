"""The dashboard: server-rendered pages with inline SVG charts, no scripts and no requests anywhere else.

A person signs in with a token (kept in an HttpOnly, SameSite=Strict cookie); admin and viewer tokens see the
fleet, a tenant token its tenant only. Every figure comes from the same scoped queries as the API
(``web/queries.py``), so a page and an API answer never disagree, and a tenant's page cannot show another's rows.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Annotated, Any
from urllib.parse import parse_qs, quote

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader

from fleetmeter.reports import charts
from fleetmeter.sql.output import cell
from fleetmeter.web import queries
from fleetmeter.web.auth import Principal, TokenStore
from fleetmeter.web.snapshot import Snapshots

COOKIE = "fleetmeter_token"
TOP = 10
_environment = Environment(loader=PackageLoader("fleetmeter.web"), autoescape=True)
_environment.filters["cell"] = cell
_environment.filters["path"] = lambda value: quote(str(value), safe="")
Days = Annotated[int, Query(ge=1, le=92, description="Days of history shown.")]
Label = Annotated[str, Path(min_length=1, max_length=256)]
_FORM_BYTES = 4096

router = APIRouter(include_in_schema=False)


def _principal(request: Request) -> Principal | None:
    tokens: TokenStore = request.app.state.tokens
    token = request.cookies.get(COOKIE, "")
    return tokens.principal(token) if token else None


def _page(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    html = _environment.get_template(template).render(principal=_principal(request), **context)
    return HTMLResponse(html, status_code=status, headers={"Cache-Control": "private, no-store",
                                                           "Content-Security-Policy": "default-src 'none'; "
                                                           "style-src 'unsafe-inline'; img-src data:; "
                                                           "form-action 'self'; frame-ancestors 'none'",
                                                           "X-Content-Type-Options": "nosniff"})


async def _at_most(request: Request, limit: int) -> bytes:
    """The request's body, read no further than ``limit`` bytes (a sign-in form is a token and little else)."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) >= limit:
            break
    return body[:limit]


def _not_found(request: Request, what: str) -> HTMLResponse:
    return _page(request, "message.html.j2", 404, title="Not found", message=f"No {what} that this token may see.")


def _window(days: int) -> tuple[datetime, datetime]:
    end = datetime.combine(datetime.now(UTC).date() + timedelta(days=1), time(), tzinfo=UTC)
    return end - timedelta(days=days), end


def _chart(points: list[dict[str, Any]]) -> str:
    if not points:
        return ""
    return charts.usage_over_time([point["time"] for point in points],
                                  [point["device_hours"] for point in points],
                                  [point["busy_device_hours"] for point in points],
                                  [point["idle_device_hours"] + point["busy_idle_device_hours"] for point in points])


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request) -> Response:
    return _page(request, "login.html.j2")


@router.post("/login", response_class=HTMLResponse)
async def login(request: Request) -> Response:
    form = parse_qs((await _at_most(request, _FORM_BYTES)).decode(errors="replace"))
    token = (form.get("token") or [""])[0].strip()
    tokens: TokenStore = request.app.state.tokens
    if not token or tokens.principal(token) is None:
        return _page(request, "login.html.j2", 401, error="That token is not one this server knows.")
    response = RedirectResponse("/", status_code=303)
    response.set_cookie(COOKIE, token, httponly=True, samesite="strict", secure=request.url.scheme == "https",
                        max_age=12 * 3600)
    return response


@router.get("/logout")
def logout() -> Response:
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE)
    return response


@router.get("/", response_class=HTMLResponse)
def home(request: Request, days: Days = 14) -> Response:
    principal = _principal(request)
    if principal is None:
        return RedirectResponse("/login", status_code=303)
    if not principal.sees_everything:
        return RedirectResponse(f"/tenants/{quote(principal.tenant or '', safe='')}", status_code=303)
    start, end = _window(days)
    snapshots: Snapshots = request.app.state.snapshots
    with snapshots.cursor(start) as cursor:
        summary = queries.fleet(cursor, start, end)
        points = queries.usage_series(cursor, principal, None, "1d", start, end)
        tenants = queries.tenants(cursor, principal, start, end)
        jobs, _ = queries.jobs(cursor, principal, start, end, tenant=None, cluster=None, order="wasted_cost",
                               limit=TOP, after=None)
        anomalies = queries.anomalies(cursor, principal, status="open", kind=None, tenant=None, limit=TOP)
        plan = queries.capacity_plan(cursor)
    return _page(request, "fleet.html.j2", summary=summary, chart=_chart(points), tenants=tenants, jobs=jobs,
                 anomalies=anomalies, plan=plan, days=days, start=start, end=end,
                 currency=request.app.state.currency)


@router.get("/tenants/{tenant}", response_class=HTMLResponse)
def tenant_page(request: Request, tenant: Label, days: Days = 7) -> Response:
    principal = _principal(request)
    if principal is None:
        return RedirectResponse("/login", status_code=303)
    if not principal.may_see(tenant):
        return _not_found(request, "tenant")
    start, end = _window(days)
    snapshots: Snapshots = request.app.state.snapshots
    with snapshots.cursor(start) as cursor:
        found = queries.tenants(cursor, principal, start, end, tenant=tenant)
        if not found:
            return _not_found(request, "tenant with data in this window")
        points = queries.usage_series(cursor, principal, tenant, "1h" if days <= 14 else "1d", start, end)
        jobs, _ = queries.jobs(cursor, principal, start, end, tenant=tenant, cluster=None, order="wasted_cost",
                               limit=TOP, after=None)
        anomalies = queries.anomalies(cursor, principal, status=None, kind=None, tenant=tenant, limit=TOP)
        rightsizing = queries.rightsizing(cursor, principal, tenant, TOP, default_window=days == queries.DEFAULT_DAYS)
        forecasts = queries.forecasts(cursor, principal, tenant=tenant, cluster=None, model=None, limit=200)
    return _page(request, "tenant.html.j2", tenant=tenant, summary=found[0], chart=_chart(points), jobs=jobs,
                 anomalies=anomalies, rightsizing=rightsizing, forecasts=forecasts, days=days, start=start,
                 end=end, currency=request.app.state.currency)


@router.get("/jobs/{cluster}/{tenant}/{job_id}", response_class=HTMLResponse)
def job_page(request: Request, cluster: Label, tenant: Label, job_id: Label) -> Response:
    principal = _principal(request)
    if principal is None:
        return RedirectResponse("/login", status_code=303)
    if not principal.may_see(tenant):
        return _not_found(request, "job")
    snapshots: Snapshots = request.app.state.snapshots
    with snapshots.cursor() as cursor:
        job = queries.job(cursor, principal, cluster, tenant, job_id)
    if job is None:
        return _not_found(request, "job")
    return _page(request, "job.html.j2", job=job, histogram=charts.utilization_histogram(
        job["utilization_histogram_hours"]), currency=request.app.state.currency)
