"""Property-based contract testing of the OpenAPI document (schemathesis): generated requests to every operation,
with a viewer's and a tenant's token, never get a 5xx, and every answer (data or problem) matches the document:
its status is documented, its content type and body are the schema's."""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, settings

from fleetmeter.sql.settings import AnalysisSettings
from fleetmeter.web.app import create_app
from tests.web.conftest import TENANT, Server

#: The document as the application publishes it at /openapi.json (the server under test is built the same way).
schema = schemathesis.openapi.from_dict(
    create_app(AnalysisSettings(warehouse="unused", http={"token": "unused"})).openapi())  # type: ignore[arg-type]


#: Combinations of parameters that a document cannot express (``from`` before ``to``, a window no longer than its
#: granularity allows) are refused with a documented 422 problem: not a broken contract.
_CROSS_PARAMETER = [schemathesis.checks.positive_data_acceptance]


@schema.parametrize()
@settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_answer_matches_the_document(case: schemathesis.Case, server: Server) -> None:
    for token in (server.tokens["viewer"], server.tokens[TENANT]):
        response = case.call(base_url=server.url, headers={"Authorization": f"Bearer {token}"})
        case.validate_response(response, excluded_checks=_CROSS_PARAMETER)
