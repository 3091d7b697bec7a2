"""Small helpers the tests share: registering users and checking problem bodies."""

from __future__ import annotations

import itertools
from typing import Any

import httpx

_counter = itertools.count(1)
PASSWORD = "correct horse battery"


async def register(
    client: httpx.AsyncClient, name: str | None = None, **extra: Any
) -> dict[str, Any]:
    """Register a user; returns the Session body plus a ready `headers` entry."""
    name = name or f"user{next(_counter)}"
    body = {"username": name, "email": f"{name}@example.com", "password": PASSWORD, **extra}
    r = await client.post("/api/auth/register", json=body)
    assert r.status_code == 201, r.text
    session: dict[str, Any] = r.json()
    session["headers"] = bearer(session["access_token"])
    return session


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def assert_problem(r: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json"), r.headers
    body: dict[str, Any] = r.json()
    assert body["status"] == status
    assert body["code"] == code
    assert body["title"] and body["detail"] and body["type"] == "about:blank"
    return body


def error_fields(body: dict[str, Any]) -> set[str]:
    """The names of the fields a validation problem complains about."""
    return {str(e["loc"][-1]) for e in body["errors"] if e["loc"]}
