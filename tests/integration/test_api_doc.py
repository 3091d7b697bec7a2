"""docs/api.md, the contract, and the OpenAPI schema name the same endpoints."""

from __future__ import annotations

import re
from pathlib import Path

import httpx

DOC = Path(__file__).resolve().parents[2] / "docs" / "api.md"
# In the contract but not HTTP API operations, so not in the OpenAPI schema: the WebSocket
# upgrade, and the web client's page.
NOT_OPERATIONS = {("GET", "/ws"), ("GET", "/")}


def _shape(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "{}", path)


async def test_every_endpoint_is_in_both(client: httpx.AsyncClient) -> None:
    document = (await client.get("/api/openapi.json")).json()
    in_schema = {
        (method.upper(), _shape(path))
        for path, operations in document["paths"].items()
        for method in operations
    }
    in_doc = {
        (method, _shape(path))
        for method, path in re.findall(r"`(GET|POST|PUT|PATCH|DELETE) (/[^`?\s]*)", DOC.read_text())
    }
    assert in_schema - in_doc == set(), "in the OpenAPI schema, missing from docs/api.md"
    assert in_doc - in_schema - NOT_OPERATIONS == set(), "in docs/api.md, not served"
