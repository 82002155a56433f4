"""SQL over the warehouse's views for dashboards and notebooks, over HTTP (served by ``fleetmeter serve``, for admin
tokens: web/app.py).

Every request but ``/health`` needs ``Authorization: Bearer <token>``. A request runs in a fresh DuckDB
session over the warehouse's committed files as they are then, which is read-only by construction:
- one ``SELECT`` statement per request (DuckDB parses it; anything else is refused with 400);
- file access is confined to the warehouse directory (``allowed_directories`` with
  ``enable_external_access`` off, then ``lock_configuration``): no ``COPY ... TO``, ``ATTACH``,
  ``read_csv('/etc/passwd')``, extension installs or settings changes;
- bounds on what one request and all of them may take: a time limit over the whole request (the query is
  interrupted), DuckDB's memory limit per query and no spilling to disk unless a temporary directory and
  its cap are configured, an answer of at most ``max_rows`` rows and ``max_answer_bytes`` (counted batch by
  batch while it is read), and at most ``max_concurrent`` queries at once (others wait up to
  ``queue_timeout_s``, then get 503);
- DuckDB's own catalogue of settings, secrets and files is not queryable (it names paths).
"""

from __future__ import annotations

import hmac
import threading
from collections.abc import Callable
from datetime import date, datetime, time
from decimal import Decimal
from time import monotonic as time_now
from typing import Any

import duckdb
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from fleetmeter.sql.catalog import Catalog, WarehouseEmpty, canned_queries
from fleetmeter.sql.settings import AnalysisSettings, HttpSettings
from fleetmeter.sql.since import EVERYTHING


class Refused(Exception):
    """A request the endpoint will not run; the message says why."""


class Busy(Exception):
    """Every query slot stayed taken for the queue timeout."""


#: Table functions and functions that show DuckDB's own configuration, secrets or files (paths included).
_INTERNALS = frozenset({"duckdb_settings", "current_setting", "duckdb_secrets", "which_secret",
                        "duckdb_temporary_files", "duckdb_databases", "duckdb_extensions", "duckdb_memory",
                        "read_text", "read_blob", "glob", "getenv", "pragma_database_size"})


def create_app(settings: AnalysisSettings) -> Starlette:
    """The SQL endpoint alone, for the admin token of ``http.token`` (``fleetmeter serve`` serves it beside the
    API and the pages: web/app.py)."""
    token = (settings.http.bearer() or "").encode()

    def authorized(request: Request) -> bool:
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        return bool(token) and scheme.lower() == "bearer" and hmac.compare_digest(given.encode(), token)

    return Starlette(routes=sql_routes(settings, authorized))


def sql_routes(settings: AnalysisSettings, authorized: Callable[[Request], bool]) -> list[Route]:
    """``/health``, ``/queries``, ``/queries/<name>`` and ``POST /query``, for the requests ``authorized``
    accepts."""
    slots = threading.BoundedSemaphore(settings.http.max_concurrent)

    async def health(request: Request) -> Response:
        return PlainTextResponse("ok")

    async def queries(request: Request) -> Response:
        if not authorized(request):
            return _unauthorized()
        return JSONResponse({"queries": list(canned_queries())})

    async def query(request: Request) -> Response:
        if not authorized(request):
            return _unauthorized()
        if "name" in request.path_params:
            path = canned_queries().get(request.path_params["name"])
            if path is None:
                return JSONResponse({"error": "no such canned query"}, status_code=404)
            text = path.read_text()
        else:
            try:
                given = (await request.json())["sql"]
            except (ValueError, KeyError, TypeError):
                given = None
            if not isinstance(given, str):
                return JSONResponse({"error": 'send JSON {"sql": "SELECT ..."}'}, status_code=400)
            text = given
        try:  # DuckDB blocks: off the event loop, so that one slow query does not hold up the others
            return JSONResponse(await run_in_threadpool(run_queued, settings, text, slots))
        except Busy as exc:
            return JSONResponse({"error": str(exc)}, status_code=503, headers={"Retry-After": "5"})
        except Refused as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        except WarehouseEmpty as exc:
            return JSONResponse({"error": str(exc)}, status_code=503)

    return [
        Route("/health", health),
        Route("/queries", queries),
        Route("/queries/{name}", query),
        Route("/query", query, methods=["POST"]),
    ]


def run_queued(settings: AnalysisSettings, text: str, slots: threading.BoundedSemaphore) -> dict[str, Any]:
    """:func:`run`, once one of the ``max_concurrent`` slots is free (within ``queue_timeout_s``)."""
    if not slots.acquire(timeout=settings.http.queue_timeout_s):
        raise Busy(f"{settings.http.max_concurrent} queries are running; try again shortly")
    try:
        return run(settings, text)
    finally:
        slots.release()


def run(settings: AnalysisSettings, text: str) -> dict[str, Any]:
    """The answer to one SELECT: column names, rows (JSON-ready), and whether rows were cut."""
    http = settings.http
    deadline = time_now() + http.timeout_s
    _check_statement(text)
    catalog = Catalog.open(settings, EVERYTHING)
    connection = sandboxed(catalog, http)
    timer = threading.Timer(http.timeout_s, connection.interrupt)
    timer.start()
    try:
        relation = connection.sql(text)
        columns = relation.columns
        reader = relation.limit(http.max_rows + 1).to_arrow_reader(batch_size=1024)
        rows: list[list[Any]] = []
        size = 0
        for batch in reader:
            size += batch.nbytes
            if size > http.max_answer_bytes:
                raise Refused(f"the answer is larger than {http.max_answer_bytes:,} bytes: select fewer columns "
                              "or rows, or aggregate")
            rows += [[_json(value) for value in row.values()] for row in batch.to_pylist()]
            if time_now() > deadline:
                raise Refused(f"the query ran longer than {http.timeout_s} s")
    except duckdb.InterruptException as exc:
        raise Refused(f"the query ran longer than {http.timeout_s} s") from exc
    except duckdb.Error as exc:
        raise Refused(str(exc).splitlines()[0]) from exc
    finally:
        timer.cancel()
        connection.close()
    return {"columns": columns, "rows": rows[:http.max_rows], "truncated": len(rows) > http.max_rows}


def _check_statement(text: str) -> None:
    """One SELECT, naming none of DuckDB's own catalogue functions."""
    try:
        statements = duckdb.extract_statements(text)
    except duckdb.Error as exc:
        raise Refused(f"cannot parse: {exc}") from exc
    if len(statements) != 1 or statements[0].type != duckdb.StatementType.SELECT:
        raise Refused("only one SELECT statement per request")
    starts = [start for start, _ in duckdb.tokenize(text)]
    named = {text[start:end].strip().strip('"').lower() for start, end in zip(starts, [*starts[1:], len(text)],
                                                                              strict=True)}
    internal = sorted(name for name in named if name in _INTERNALS)
    if internal:
        raise Refused(f"not available here: {', '.join(internal)}")


def sandboxed(catalog: Catalog, http: HttpSettings, memory_limit: str | None = None,
              threads: int | None = None) -> duckdb.DuckDBPyConnection:
    """The catalog's session, unable to touch any file outside the warehouse or change its own settings (its
    memory limit ``http.memory_limit`` unless given; DuckDB's threads per query unless given)."""
    connection = catalog.connect()
    allowed = [catalog.local_root + "/"] if catalog.local_root is not None else []
    connection.execute("SET memory_limit = $limit", {"limit": memory_limit or http.memory_limit})
    if threads is not None:
        connection.execute(f"SET threads = {int(threads)}")
    if http.temp_directory is None:
        connection.execute("SET temp_directory = ''")  # over the memory limit, a query fails; it never spills
    else:
        connection.execute("SET temp_directory = $directory", {"directory": str(http.temp_directory)})
        connection.execute("SET max_temp_directory_size = $limit", {"limit": http.max_temp_bytes})
    connection.execute("SET allowed_directories = $allowed", {"allowed": allowed})
    connection.execute("SET enable_external_access = false")
    connection.execute("SET lock_configuration = true")
    return connection


def _json(value: Any) -> Any:
    """A value as JSON holds it: DuckDB's HUGEINT sums arrive as Decimal, times as ISO 8601 text."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, date | time | datetime):
        return value.isoformat()
    return str(value)


def _unauthorized() -> Response:
    return JSONResponse({"error": "send Authorization: Bearer <token>"}, status_code=401,
                        headers={"WWW-Authenticate": "Bearer"})
