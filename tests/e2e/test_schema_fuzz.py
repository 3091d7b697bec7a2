"""A property-based run of the OpenAPI schema (schemathesis) against a real `reverb serve`
process, authenticated with a real token (issue 11, part 3): for every operation, requests the
schema accepts, generated from it, must never get a 5xx, and every answer must be one the schema
documents (status, content type, body).

The budget is bounded (EXAMPLES per operation, no shrinking, no example database), so the run
fits in the suite; a different seed each run explores a little more over time, and a failure
prints the seed and the request to reproduce it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import Case
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.openapi import from_dict
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.e2e.server import reverb_serve, server_env
from tests.helpers import PASSWORD

pytestmark = pytest.mark.e2e

# Requests per operation: about 30 operations at this many stay within the suite's minute per
# database on the 2-core CI machine, and still reach every parameter of every operation.
EXAMPLES = 25
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
# Would end the token the run is authenticated with, and so every later request's coverage.
SKIP = {("POST", "/api/auth/logout-all")}


def fuzz(case_test: Callable[[Case[Any]], None], strategy: Any) -> None:
    run = settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )(given(case=strategy)(case_test))
    run()


def test_schema_fuzz_finds_no_server_error_and_no_undocumented_answer(
    tmp_path: Path, database_url: str
) -> None:
    with reverb_serve(tmp_path, server_env(database_url)) as (url, log):
        r = httpx.post(
            f"{url}/api/auth/register",
            json={"username": "fuzzer", "email": "fuzzer@example.com", "password": PASSWORD},
        )
        assert r.status_code == 201, r.text
        auth = {"Authorization": f"Bearer {r.json()['access_token']}"}
        spec = httpx.get(f"{url}/api/openapi.json").json()
        schema = from_dict(spec)
        session = requests.Session()
        ran: list[str] = []
        for result in schema.get_all_operations():
            assert isinstance(result, Ok), result  # the schema reads as valid OpenAPI
            operation = result.ok()
            if (operation.method.upper(), operation.path) in SKIP:
                continue

            def call(case: Case[Any]) -> None:
                case.call_and_validate(base_url=url, session=session, headers=auth, checks=CHECKS)

            fuzz(call, operation.as_strategy())
            ran.append(operation.label)
        assert len(ran) > 25, ran
        # Still authenticated at the end: the run was not spent on 401s.
        assert httpx.get(f"{url}/api/users/me", headers=auth).status_code == 200
        assert "Traceback" not in log.read_text()
