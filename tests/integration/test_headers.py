"""Security headers on every response (issue 11, part 5): `nosniff` everywhere, `no-store` on
tokens and the caller's own profile, a Content-Security-Policy on the docs pages."""

from __future__ import annotations

import base64
import hashlib
import io
import re
from collections.abc import AsyncIterator

import httpx
import pytest
from PIL import Image

from reverb.app import create_app
from reverb.config import Settings
from reverb.errors import ErrorCode
from tests.helpers import PASSWORD, assert_problem, register

Response = httpx.Response


def png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (16, 16)).save(buf, "PNG")
    return buf.getvalue()


async def every_kind_of_response(client: httpx.AsyncClient) -> dict[str, Response]:
    me = await register(client)
    h = me["headers"]
    media = await client.post(
        "/api/media", files={"file": ("a.png", png(), "image/png")}, headers=h
    )
    assert media.status_code == 201, media.text
    m = media.json()
    return {
        "json": await client.get("/api/chats", headers=h),
        "problem 401": await client.get("/api/chats"),
        "problem 422": await client.post("/api/chats", json={"type": "nope"}, headers=h),
        "404 unmatched": await client.get("/no/such/path"),
        "404 media": await client.get("/media/" + "0" * 32),
        "413": await client.post("/api/chats", content=b"x" * (2 * 1024 * 1024), headers=h),
        "media": await client.get(m["url"]),
        "thumbnail": await client.get(m["thumbnail_url"]),
        "docs": await client.get("/api/docs"),
        "openapi": await client.get("/api/openapi.json"),
        "health": await client.get("/healthz"),
        "metrics": await client.get("/metrics"),
    }


async def test_every_response_is_nosniff(client: httpx.AsyncClient) -> None:
    answers = await every_kind_of_response(client)
    assert answers["413"].status_code == 413 and answers["404 unmatched"].status_code == 404
    for kind, r in answers.items():
        assert r.headers.get_list("x-content-type-options") == ["nosniff"], kind


@pytest.fixture
async def failing(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The app with one more route that fails unexpectedly."""
    app = create_app(settings)

    async def boom() -> None:
        raise RuntimeError("a bug")

    app.add_api_route("/boom", boom)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://reverb.test") as c:
            yield c


async def test_a_500_is_a_problem_with_the_same_headers(failing: httpx.AsyncClient) -> None:
    r = await failing.get("/boom")
    assert_problem(r, 500, ErrorCode.INTERNAL_ERROR.value)
    assert r.headers["x-content-type-options"] == "nosniff"
    assert re.fullmatch(r"[0-9a-f]{32}", r.headers["x-request-id"])
    assert (await failing.get("/healthz")).status_code == 200


async def test_tokens_and_own_profile_are_not_stored(client: httpx.AsyncClient) -> None:
    me = await register(client, "storeless")
    h = me["headers"]
    login = await client.post(
        "/api/auth/login", json={"username": "storeless", "password": PASSWORD}
    )
    assert login.status_code == 200, login.text
    no_store = {
        "register": await client.post(
            "/api/auth/register",
            json={"username": "other1", "email": "o1@example.com", "password": PASSWORD},
        ),
        "login": login,
        "bad login": await client.post(
            "/api/auth/login", json={"username": "storeless", "password": "wrong-password"}
        ),
        "refresh": await client.post(
            "/api/auth/refresh", json={"refresh_token": login.json()["refresh_token"]}
        ),
        "me": await client.get("/api/users/me", headers=h),
        "me unauthenticated": await client.get("/api/users/me"),
        "patch me": await client.patch("/api/users/me", json={"bio": "x"}, headers=h),
        "avatar": await client.put(
            "/api/users/me/avatar", files={"file": ("a.png", png(), "image/png")}, headers=h
        ),
    }
    assert no_store["bad login"].status_code == 401
    for kind, r in no_store.items():
        assert r.headers.get_list("cache-control") == ["no-store"], kind
    others = [
        await client.get("/api/chats", headers=h),
        await client.get("/api/users", params={"search": "store"}, headers=h),
        await client.get(f"/api/users/{me['user']['id']}", headers=h),
        await client.get("/healthz"),
    ]
    for r in others:
        assert r.status_code == 200, r.text
        assert "no-store" not in r.headers.get("cache-control", ""), r.url


def _sources(policy: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for directive in policy.split(";"):
        name, *values = directive.split()
        out[name] = values
    return out


def _allowed(url: str, sources: list[str]) -> bool:
    # This server's own paths, under 'self'.
    return url.startswith("/") and "'self'" in sources


@pytest.mark.parametrize("path", ["/api/docs", "/docs/oauth2-redirect"])
async def test_the_docs_pages_have_a_policy_that_allows_exactly_their_assets(
    client: httpx.AsyncClient, path: str
) -> None:
    r = await client.get(path)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    policy = _sources(r.headers["content-security-policy"])
    assert policy["default-src"] == ["'none'"]
    assert "'unsafe-inline'" not in policy["script-src"]
    html = r.text
    for src in re.findall(r'<script src="([^"]+)"', html):
        assert _allowed(src, policy["script-src"]), src
    for href in re.findall(r'<link type="text/css" rel="stylesheet" href="([^"]+)"', html):
        assert _allowed(href, policy["style-src"]), href
    for href in re.findall(r'<link rel="shortcut icon" href="([^"]+)"', html):
        assert _allowed(href, policy["img-src"]), href
    inline = re.findall(r"<script>(.*?)</script>", html, re.DOTALL)
    assert inline, "the page starts itself with an inline script"
    for script in inline:
        digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
        assert f"'sha256-{digest}'" in policy["script-src"]
    # No other origin: everything comes from this server.
    external = {s for v in policy.values() for s in v if "://" in s}
    assert external == set()
    assert r.headers["x-content-type-options"] == "nosniff"
    assert int(r.headers["content-length"]) == len(r.content)


async def test_only_the_docs_pages_have_that_policy(client: httpx.AsyncClient) -> None:
    for path in ("/api/openapi.json", "/healthz", "/no/such/path"):
        assert "content-security-policy" not in (await client.get(path)).headers, path


async def test_the_web_client_has_a_policy_that_allows_only_this_server(
    client: httpx.AsyncClient,
) -> None:
    r = await client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    policy = _sources(r.headers["content-security-policy"])
    assert policy["default-src"] == ["'self'"] and "script-src" not in policy
    assert policy["connect-src"] == ["'self'"]
    assert policy["object-src"] == ["'none'"] and policy["frame-ancestors"] == ["'none'"]
    html = r.text
    scripts = re.findall(r'<script type="module" src="([^"]+)"', html)
    styles = re.findall(r'<link rel="stylesheet" href="([^"]+)"', html)
    assert scripts and styles
    for src in [*scripts, *styles]:
        assert _allowed(src, policy["default-src"]), src
        assert (await client.get(src)).status_code == 200, src
    # No inline script or style: the policy (default-src 'self') would block it.
    assert re.findall(r"<script>|<style|style=", html) == []
    external = {s for v in policy.values() for s in v if "://" in s}
    assert external == set()
