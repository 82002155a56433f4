"""Property-based contract testing of the OpenAPI document (schemathesis): generated requests to every operation,
with a viewer's and a tenant's token, never get a 5xx, and every answer (data or problem) matches the document:
its status is documented, its content type and body are the schema's."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from tests.web.conftest import TENANT, Server


@pytest.fixture
def api_schema(server: Server) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(f"{server.url}/openapi.json")


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_answer_matches_the_document(case: schemathesis.Case, server: Server) -> None:
    for token in (server.tokens["viewer"], server.tokens[TENANT]):
        response = case.call(headers={"Authorization": f"Bearer {token}"})
        case.validate_response(response)
