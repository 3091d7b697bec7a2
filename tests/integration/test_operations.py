"""Problem responses at the edge, request ids, health, readiness, metrics and the OpenAPI docs."""

from __future__ import annotations

import re
import socket
from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy import text

from reverb.config import Settings
from reverb.storage.db import Database
from reverb.storage.migrate import head_revision
from tests.conftest import make_settings, serve_in_process
from tests.helpers import assert_problem, register
from tests.services import REDIS_TEST_URL


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_unknown_route_and_wrong_method(client: httpx.AsyncClient) -> None:
    assert_problem(await client.get("/api/nothing-here"), 404, "not_found")
    assert_problem(await client.delete("/api/auth/login"), 405, "method_not_allowed")
    assert_problem(await client.put("/api/users/me"), 405, "method_not_allowed")


async def test_request_id_is_returned_and_kept(client: httpx.AsyncClient) -> None:
    r = await client.get("/healthz")
    assert len(r.headers["x-request-id"]) == 32
    r = await client.get("/healthz", headers={"X-Request-ID": "trace-abc.1"})
    assert r.headers["x-request-id"] == "trace-abc.1"
    # An id that could forge log lines is replaced, not echoed.
    r = await client.get("/healthz", headers={"X-Request-ID": 'bad id"}'})
    assert r.headers["x-request-id"] != 'bad id"}'
    assert_problem(await client.get("/nope"), 404, "not_found")


async def test_health_and_ready(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json()["status"] == "ok"
    r = await client.get("/readyz")
    assert r.status_code == 200
    assert r.json()["checks"] == {"database": "ok"}


async def test_ready_checks_redis_when_configured(database_url: str) -> None:
    async with serve_in_process(make_settings(database_url, redis_url=REDIS_TEST_URL)) as client:
        r = await client.get("/readyz")
        assert r.status_code == 200, r.text
        assert r.json()["checks"] == {"database": "ok", "redis": "ok"}
    down = make_settings(database_url, redis_url=f"redis://127.0.0.1:{closed_port()}/0")
    async with serve_in_process(down) as client:
        r = await client.get("/readyz")
        assert r.status_code == 503
        assert r.json()["checks"]["redis"] == "unavailable"
        assert (await client.get("/healthz")).status_code == 200


async def test_not_ready_when_database_is_unreachable(tmp_path: object) -> None:
    url = f"postgresql://postgres@127.0.0.1:{closed_port()}/none"
    async with serve_in_process(make_settings(url)) as client:
        r = await client.get("/readyz")
        assert r.status_code == 503
        assert r.json()["checks"] == {"database": "unavailable"}


async def test_not_ready_while_the_schema_is_not_the_newest(
    client: httpx.AsyncClient, db: Database
) -> None:
    assert (await client.get("/readyz")).status_code == 200
    head = head_revision()
    async with db.transaction() as tx:
        await tx.conn.execute(text("UPDATE alembic_version SET version_num = '0002'"))
    try:
        r = await client.get("/readyz")
        assert r.status_code == 503
        assert r.json()["checks"] == {"database": "schema_mismatch"}
    finally:
        async with db.transaction() as tx:
            await tx.conn.execute(
                text("UPDATE alembic_version SET version_num = :head"), {"head": head}
            )
    assert (await client.get("/readyz")).status_code == 200


async def test_metrics(client: httpx.AsyncClient) -> None:
    await client.get("/healthz")
    await client.get("/api/users/me")
    r = await client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    text = r.text
    assert 'reverb_http_requests_total{method="GET",route="/healthz",status="200"}' in text
    assert 'route="/api/users/me",status="401"' in text
    assert "reverb_http_request_duration_seconds_bucket" in text


async def test_openapi_and_docs(client: httpx.AsyncClient) -> None:
    schema = (await client.get("/api/openapi.json")).json()
    for path in (
        "/api/auth/register",
        "/api/auth/login",
        "/api/auth/refresh",
        "/api/auth/logout",
        "/api/auth/token",
        "/api/users/me",
        "/api/users/me/password",
        "/api/users/{user_id}",
        "/api/users",
    ):
        assert path in schema["paths"], path
    flows = schema["components"]["securitySchemes"]["OAuth2PasswordBearer"]["flows"]
    assert flows["password"]["tokenUrl"] == "/api/auth/token"
    login_422 = schema["paths"]["/api/auth/login"]["post"]["responses"]["422"]
    assert "application/problem+json" in login_422["content"]
    docs = await client.get("/api/docs")
    assert docs.status_code == 200 and "swagger-ui" in docs.text
    assert "/api/openapi.json" in docs.text


@pytest.mark.parametrize("origin", ["https://app.example.com"])
async def test_cors(database_url: str, origin: str) -> None:
    settings: Settings = make_settings(
        database_url, cors_origins=f"{origin}, https://other.example"
    )
    async with serve_in_process(settings) as client:
        pre = await client.options(
            "/api/auth/login",
            headers={
                "Origin": origin,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type,authorization",
            },
        )
        assert pre.status_code == 200
        assert pre.headers["access-control-allow-origin"] == origin
        s = await register(client)
        r = await client.get("/api/users/me", headers={**s["headers"], "Origin": origin})
        assert r.headers["access-control-allow-origin"] == origin
        evil = await client.get("/healthz", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in evil.headers


async def test_oversized_json_bodies_are_refused(client: httpx.AsyncClient) -> None:
    s = await register(client)
    big = b'{"chat_id": "x", "content": "' + b"x" * (2 * 1024 * 1024) + b'"}'
    r = await client.post(
        "/api/messages", content=big, headers={**s["headers"], "content-type": "application/json"}
    )
    assert_problem(r, 413, "payload_too_large")

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: the size shows as it streams
        for piece in (b'{"chat_id": "x", "content": "', *[b"x" * 65536] * 64, b'"}'):
            yield piece

    r = await client.post(
        "/api/messages",
        content=chunks(),
        headers={**s["headers"], "content-type": "application/json"},
    )
    assert r.status_code in (413, 422), r.text
    assert r.headers["content-type"].startswith("application/problem+json")


async def test_docs_are_served_from_reverb_itself(client: httpx.AsyncClient) -> None:
    page = await client.get("/api/docs")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assets = re.findall(r"""(?:src|href)=["']([^"']+)["']|url: ?["']([^"']+)["']""", page.text)
    urls = [a or b for a, b in assets]
    assert urls, page.text
    for url in urls:
        # Nothing from another origin: every asset is a path on this server, and it is there.
        assert url.startswith("/"), url
        assert (await client.get(url)).status_code == 200, url
    assert "/api/docs/static/swagger-ui-bundle.js" in urls
    assert "/api/openapi.json" in urls
    assert "cdn." not in page.text and "https://" not in page.text


async def test_home_page_links_the_docs(client: httpx.AsyncClient) -> None:
    home = await client.get("/")
    assert home.status_code == 200 and 'href="/api/docs"' in home.text


async def test_metrics_token_protects_metrics(database_url: str) -> None:
    settings = make_settings(database_url, metrics_token="scrape-me-0123456789")
    async with serve_in_process(settings) as client:
        assert_problem(await client.get("/metrics"), 401, "not_authenticated")
        wrong = await client.get("/metrics", headers={"Authorization": "Bearer nope"})
        assert_problem(wrong, 401, "not_authenticated")
        ok = await client.get("/metrics", headers={"Authorization": "Bearer scrape-me-0123456789"})
        assert ok.status_code == 200 and "reverb_ws_connections" in ok.text


async def test_web_files_are_served_and_a_missing_one_is_a_problem(
    client: httpx.AsyncClient,
) -> None:
    page = await client.get("/")
    assert page.headers["content-type"].startswith("text/html")
    assert page.headers["x-content-type-options"] == "nosniff"
    same = await client.get("/web/index.html")
    assert same.status_code == 200 and same.text == page.text
    assert_problem(await client.get("/web/no-such-file.js"), 404, "not_found")
    assert_problem(await client.get("/web/%2e%2e/app.py"), 404, "not_found")
