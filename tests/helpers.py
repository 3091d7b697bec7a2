"""Small helpers the tests share: registering users, checking problem bodies, waiting on a
condition."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from typing import Any

import httpx
import pytest

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
    """The names of the fields a validation problem complains about (for an item of a list, the
    list's name)."""
    names = ([p for p in e["loc"] if isinstance(p, str)] for e in body["errors"])
    return {n[-1] for n in names if n}


async def group(
    client: httpx.AsyncClient, owner: dict[str, Any], *members: dict[str, Any], name: str = "Team"
) -> str:
    """Create a group chat owned by `owner` with `members`; returns its id."""
    r = await client.post(
        "/api/chats",
        json={"type": "group", "name": name, "member_ids": [m["user"]["id"] for m in members]},
        headers=owner["headers"],
    )
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def direct(client: httpx.AsyncClient, a: dict[str, Any], b: dict[str, Any]) -> str:
    r = await client.post(
        "/api/chats", json={"type": "direct", "user_id": b["user"]["id"]}, headers=a["headers"]
    )
    assert r.status_code in (200, 201), r.text
    return str(r.json()["id"])


async def send(
    client: httpx.AsyncClient, who: dict[str, Any], chat_id: str, content: str = "hi", **extra: Any
) -> dict[str, Any]:
    r = await client.post(
        "/api/messages",
        json={"chat_id": chat_id, "content": content, **extra},
        headers=who["headers"],
    )
    assert r.status_code in (200, 201), r.text
    body: dict[str, Any] = r.json()
    return body


async def events(
    client: httpx.AsyncClient, who: dict[str, Any], chat_id: str
) -> list[dict[str, Any]]:
    """The whole event log of a chat, following `has_more`."""
    out: list[dict[str, Any]] = []
    while True:
        after = out[-1]["seq"] if out else 0
        r = await client.get(
            f"/api/chats/{chat_id}/events",
            params={"after": after, "limit": 1000},
            headers=who["headers"],
        )
        assert r.status_code == 200, r.text
        out += r.json()["items"]
        if not r.json()["has_more"]:
            return out


async def until(
    condition: Callable[[], bool], what: str = "the condition", timeout: float = 10.0
) -> None:
    """Wait (bounded) until `condition()` holds; fail the test, saying `what`, if it does not."""
    try:
        async with asyncio.timeout(timeout):
            while not condition():
                await asyncio.sleep(0.01)  # poll interval, bounded by the timeout above
    except TimeoutError:
        pytest.fail(f"not within {timeout} s: {what}")
