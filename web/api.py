"""``/v1``: the self-service REST API. Every endpoint needs a bearer token; what it answers depends on the
token's scope (``web/auth.py``) and is limited where the query is built (``web/queries.py``). Answers carry an
ETag (the warehouse snapshot's version, what the caller may see, the request) and a short private cache
lifetime; a matching ``If-None-Match`` gets 304 without running the query."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel

from fleetmeter.web import models, queries
from fleetmeter.web.auth import Principal, TokenStore
from fleetmeter.web.cache import AnswerCache
from fleetmeter.web.problems import PROBLEMS, Refusal
from fleetmeter.web.snapshot import Snapshots

#: The longest window each granularity answers (points at most: 2,880 minutes, 2,208 hours, 3,660 days).
_MAX_SPAN = {"1m": timedelta(days=2), "1h": timedelta(days=92), "1d": timedelta(days=3660)}
_EARLIEST, _LATEST = datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC)

Row = TypeVar("Row", bound=BaseModel)
Label = Annotated[str, Path(min_length=1, max_length=256)]
LabelFilter = Annotated[str | None, Query(min_length=1, max_length=256)]
Moment = datetime | date
Limit = Annotated[int, Query(ge=1, le=1000)]


def bearer(request: Request) -> Principal:
    """The caller, from ``Authorization: Bearer <token>``; 401 without a token the server knows."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    tokens: TokenStore = request.app.state.tokens
    principal = tokens.principal(token.strip()) if scheme.lower() == "bearer" and token else None
    if principal is None:
        raise Refusal(401, "send Authorization: Bearer <token> with a token this server knows",
                      {"WWW-Authenticate": "Bearer"})
    return principal


Caller = Annotated[Principal, Depends(bearer)]


def fleet_wide(principal: Principal) -> None:
    if not principal.sees_everything:
        raise Refusal(403, "fleet-wide figures are for admin and viewer tokens; a tenant token sees its tenant's")


def own_tenant(principal: Principal, tenant: str | None) -> None:
    """A ``tenant`` filter naming another tenant than the token's is refused."""
    if tenant is not None and not principal.may_see(tenant):
        raise Refusal(403, "this token sees only its own tenant's data")


def _utc(moment: Moment) -> datetime:
    if isinstance(moment, datetime):
        return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return datetime.combine(moment, time(), tzinfo=UTC)


def window(start: Moment | None, end: Moment | None, granularity: str = "1d") -> models.Window:
    """``from`` and ``to`` as a window: the 7 days before the next UTC midnight unless given."""
    tomorrow = datetime.combine(datetime.now(UTC).date() + timedelta(days=1), time(), tzinfo=UTC)
    stop = _utc(end) if end is not None else tomorrow
    begin = _utc(start) if start is not None else stop - timedelta(days=queries.DEFAULT_DAYS)
    if not _EARLIEST <= begin < stop <= _LATEST:
        raise Refusal(422, "need 2000-01-01 <= from < to <= 2100-01-01")
    if stop - begin > _MAX_SPAN[granularity]:
        raise Refusal(422, f"a window of at most {_MAX_SPAN[granularity].days} days at granularity {granularity}")
    return models.Window(start=begin, end=stop)


From = Annotated[Moment | None, Query(alias="from", description="Start (inclusive): a date or a date-time, UTC.")]
To = Annotated[Moment | None, Query(alias="to", description="End (exclusive); default: the next UTC midnight.")]


class Answering:
    """Runs a request's query on the current snapshot, unless the caller already holds the answer (ETag) or the
    server kept it (web/cache.py)."""

    def __init__(self, request: Request, principal: Caller) -> None:
        self.request, self.principal = request, principal
        self.snapshots: Snapshots = request.app.state.snapshots
        self.cache: AnswerCache = request.app.state.answers

    def __call__(self, produce: Callable[[Any], BaseModel | list[Any]], since: datetime | None = None) -> Response:
        snapshot = self.snapshots.current()
        # what the answer depends on: the data, what the caller may see, the question, and the day (default windows)
        key = hashlib.sha256("\n".join([snapshot.version, self.principal.scope, self.principal.tenant or "",
                                        str(self.request.url), datetime.now(UTC).date().isoformat()]).encode())
        etag = f'W/"{key.hexdigest()[:32]}"'
        headers = {"ETag": etag, "Cache-Control": "private, max-age=15", "Vary": "Authorization"}
        wanted = {part.strip() for part in self.request.headers.get("if-none-match", "").split(",")}
        if etag in wanted or "*" in wanted:
            return Response(status_code=304, headers=headers)
        body = self.cache.get(etag)
        if body is None:
            with self.snapshots.cursor(since or datetime(1970, 1, 1, tzinfo=UTC)) as cursor:
                answer = produce(cursor)
            content = [row.model_dump(mode="json") for row in answer] if isinstance(answer, list) else \
                answer.model_dump(mode="json")
            body = bytes(JSONResponse(content).body)
            self.cache.put(etag, body)
        return Response(body, media_type="application/json", headers=headers)


Answer = Annotated[Answering, Depends(Answering)]
router = APIRouter(prefix="/v1", responses=PROBLEMS)


@router.get("/fleet", response_model=models.FleetSummary, summary="The fleet's usage, waste and cost")
def fleet(caller: Caller, answer: Answer, start: From = None, end: To = None) -> Response:
    fleet_wide(caller)
    span = window(start, end)
    currency = answer.request.app.state.currency
    return answer(lambda cursor: models.FleetSummary(window=span, currency=currency,
                                                     **queries.fleet(cursor, span.start, span.end)))


@router.get("/tenants", response_model=models.TenantList, summary="Tenants' usage, waste and cost")
def tenants(caller: Caller, answer: Answer, start: From = None, end: To = None) -> Response:
    span = window(start, end)
    currency = answer.request.app.state.currency
    return answer(lambda cursor: models.TenantList(
        window=span, currency=currency,
        tenants=_list(models.TenantSummary, queries.tenants(cursor, caller, span.start, span.end))))


def _visible_tenant(caller: Principal, tenant: str) -> None:
    if not caller.may_see(tenant):
        raise Refusal(404, "no such tenant")


@router.get("/tenants/{tenant}", response_model=models.TenantSummary, summary="One tenant's usage")
def tenant(caller: Caller, answer: Answer, tenant: Label, start: From = None, end: To = None) -> Response:
    _visible_tenant(caller, tenant)
    span = window(start, end)

    def produce(cursor: Any) -> models.TenantSummary:
        rows = queries.tenants(cursor, caller, span.start, span.end, tenant=tenant)
        if not rows:
            raise Refusal(404, "no such tenant in this window")
        return models.TenantSummary(**rows[0])

    return answer(produce)


@router.get("/tenants/{tenant}/usage", response_model=models.TenantUsage,
            summary="A tenant's usage, waste and cost over time")
def tenant_usage(caller: Caller, answer: Answer, tenant: Label, start: From = None, end: To = None,
                 granularity: Annotated[models.Granularity, Query()] = "1h") -> Response:
    _visible_tenant(caller, tenant)
    span = window(start, end, granularity)
    currency = answer.request.app.state.currency
    return answer(lambda cursor: models.TenantUsage(
        tenant=tenant, granularity=granularity, window=span, currency=currency,
        points=_list(models.UsagePoint, queries.usage_series(cursor, caller, tenant, granularity, span.start,
                                                             span.end))))


@router.get("/jobs", response_model=models.JobPage, summary="Jobs, the largest waste (or cost) first")
def jobs(caller: Caller, answer: Answer, start: From = None, end: To = None, tenant: LabelFilter = None,
         cluster: LabelFilter = None, sort: Annotated[queries.JobOrder, Query()] = "wasted_cost",
         limit: Annotated[int, Query(ge=1, le=500)] = 50,
         cursor: Annotated[str | None, Query(max_length=2048)] = None) -> Response:
    own_tenant(caller, tenant)
    span = window(start, end)
    currency = answer.request.app.state.currency

    def produce(connection: Any) -> models.JobPage:
        try:
            rows, following = queries.jobs(connection, caller, span.start, span.end, tenant=tenant, cluster=cluster,
                                           order=sort, limit=limit, after=cursor)
        except queries.BadCursor as exc:
            raise Refusal(422, str(exc)) from exc
        return models.JobPage(window=span, currency=currency, jobs=[models.JobSummary(**row) for row in rows],
                              next_cursor=following)

    return answer(produce)


@router.get("/jobs/{cluster}/{tenant}/{job_id}", response_model=models.JobDetail,
            summary="A job over its life: devices, utilization histogram, idle time, cost")
def job(caller: Caller, answer: Answer, cluster: Label, tenant: Label, job_id: Label) -> Response:
    _visible_tenant(caller, tenant)
    currency = answer.request.app.state.currency

    def produce(cursor: Any) -> models.JobDetail:
        found = queries.job(cursor, caller, cluster, tenant, job_id)
        if found is None:
            raise Refusal(404, "no such job")
        return models.JobDetail(currency=currency, **found)

    return answer(produce)


@router.get("/forecasts", response_model=list[models.ForecastPoint], summary="Demand forecasts (fleetmeter forecast)")
def forecasts(caller: Caller, answer: Answer, tenant: LabelFilter = None, cluster: LabelFilter = None,
              model: LabelFilter = None, limit: Annotated[int, Query(ge=1, le=100_000)] = 10_000) -> Response:
    own_tenant(caller, tenant)
    return answer(lambda cursor: _list(models.ForecastPoint, queries.forecasts(
        cursor, caller, tenant=tenant, cluster=cluster, model=model, limit=limit)))


@router.get("/capacity-plan", response_model=list[models.CapacityQuarter], summary="The capacity plan")
def capacity_plan(caller: Caller, answer: Answer) -> Response:
    fleet_wide(caller)
    return answer(lambda cursor: _list(models.CapacityQuarter, queries.capacity_plan(cursor)))


@router.get("/anomalies", response_model=list[models.Anomaly], summary="Anomalies, open first, costliest first")
def anomalies(caller: Caller, answer: Answer, status: Annotated[Literal["open", "resolved"] | None, Query()] = None,
              kind: LabelFilter = None, tenant: LabelFilter = None, limit: Limit = 100) -> Response:
    own_tenant(caller, tenant)
    return answer(lambda cursor: _list(models.Anomaly, queries.anomalies(
        cursor, caller, status=status, kind=kind, tenant=tenant, limit=limit)))


@router.get("/efficiency", response_model=list[models.Efficiency],
            summary="SM, tensor and memory activity beside the busy share, with coverage (docs/efficiency.md)")
def efficiency(caller: Caller, answer: Answer, start: From = None,
               grain: Annotated[Literal["job", "tenant", "model"], Query()] = "job", tenant: LabelFilter = None,
               limit: Limit = 100) -> Response:
    own_tenant(caller, tenant)
    if grain == "model":
        fleet_wide(caller)
    since = window(start, None).start
    return answer(lambda cursor: _list(models.Efficiency, queries.efficiency(cursor, caller, grain, tenant, limit)),
                  since)


@router.get("/rightsizing", response_model=list[models.Rightsizing],
            summary="The cheapest device that holds each job, and the saving (docs/efficiency.md)")
def rightsizing(caller: Caller, answer: Answer, start: From = None, tenant: LabelFilter = None,
                limit: Limit = 100) -> Response:
    own_tenant(caller, tenant)
    since = window(start, None).start
    return answer(lambda cursor: _list(models.Rightsizing, queries.rightsizing(
        cursor, caller, tenant, limit, default_window=start is None)), since)


def _list(model: type[Row], rows: list[dict[str, Any]]) -> list[Row]:
    """Rows as their model, each validated."""
    return [model(**row) for row in rows]
