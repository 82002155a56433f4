"""``fleetmeter serve``'s application: the REST API (``/v1``, its OpenAPI 3.1 document at ``/openapi.json``), the
dashboard's pages, and the SQL endpoint for admin tokens (``/query``, ``/queries``), in one process."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
from fastapi import FastAPI
from starlette.requests import Request

from fleetmeter.sql.serve import sql_routes
from fleetmeter.sql.settings import AnalysisSettings
from fleetmeter.web import api, pages, problems
from fleetmeter.web.auth import TokenStore
from fleetmeter.web.cache import AnswerCache
from fleetmeter.web.snapshot import Snapshots

API_VERSION = "1.0.0"
log = structlog.get_logger(__name__)


def create_app(settings: AnalysisSettings) -> FastAPI:
    """The application; a configuration without any token, or with a broken tokens file, raises ConfigError."""
    tokens = TokenStore(settings.http.bearer(), settings.http.tokens_file)
    snapshots = Snapshots(settings)

    @asynccontextmanager
    async def warm(app: FastAPI) -> AsyncIterator[None]:
        """Take the first snapshot while the server starts listening: the first request does not wait for it."""
        def first() -> None:
            try:
                snapshots.current()
            except Exception as exc:  # an empty warehouse, say: requests will say so, as a 503
                log.warning("no snapshot of the warehouse yet", error=str(exc))
        threading.Thread(target=first, name="first-snapshot", daemon=True).start()
        yield

    app = FastAPI(title="fleetmeter", version=API_VERSION, openapi_url="/openapi.json", docs_url=None, lifespan=warm,
                  redoc_url=None, description="Accelerator usage, waste and cost per tenant and job. Every answer "
                                              "needs `Authorization: Bearer <token>`; a tenant token sees only its "
                                              "tenant's rows.")
    app.state.tokens = tokens
    app.state.snapshots = snapshots
    app.state.answers = AnswerCache(settings.http.answer_cache)
    app.state.currency = settings.currency
    app.state.settings = settings
    problems.install(app)
    app.include_router(api.router)
    app.include_router(pages.router)

    def admin(request: Request) -> bool:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        principal = tokens.principal(token.strip()) if scheme.lower() == "bearer" and token else None
        return principal is not None and principal.scope == "admin"

    app.router.routes.extend(sql_routes(settings, admin))
    return app
