"""Profiles, public user views and user search."""

from __future__ import annotations

import httpx
import pytest

from tests.helpers import assert_problem, error_fields, register

USER_FIELDS = {"id", "username", "display_name", "bio", "avatar_url", "status", "last_seen_at"}


async def test_me_and_patch(client: httpx.AsyncClient) -> None:
    s = await register(client, "tom")
    me = (await client.get("/api/users/me", headers=s["headers"])).json()
    assert set(me) == USER_FIELDS | {"email", "email_verified", "created_at"}
    r = await client.patch(
        "/api/users/me",
        json={"display_name": " Tom ✨ ", "bio": 'مرحبا\u200f — "quotes" \'; DROP TABLE users;--'},
        headers=s["headers"],
    )
    assert r.status_code == 200, r.text
    assert r.json()["display_name"] == "Tom ✨"
    assert r.json()["bio"] == 'مرحبا\u200f — "quotes" \'; DROP TABLE users;--'
    again = (await client.get("/api/users/me", headers=s["headers"])).json()
    assert again["bio"] == r.json()["bio"]
    # An empty patch changes nothing.
    assert (await client.patch("/api/users/me", json={}, headers=s["headers"])).json() == again


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"display_name": ""}, "display_name"),
        ({"display_name": "   "}, "display_name"),
        ({"display_name": "x" * 65}, "display_name"),
        ({"display_name": "tab\there"}, "display_name"),
        ({"display_name": 42}, "display_name"),
        ({"bio": "b" * 501}, "bio"),
        ({"bio": ["list"]}, "bio"),
        ({"email": "new@example.com"}, "email"),
        ({"username": "renamed"}, "username"),
        ({"bio": "nul\x00byte"}, "bio"),
    ],
)
async def test_bad_patch_is_422_and_changes_nothing(
    client: httpx.AsyncClient, body: dict[str, object], field: str
) -> None:
    s = await register(client, "uma")
    before = (await client.get("/api/users/me", headers=s["headers"])).json()
    r = await client.patch("/api/users/me", json=body, headers=s["headers"])
    assert field in error_fields(assert_problem(r, 422, "validation_error"))
    assert (await client.get("/api/users/me", headers=s["headers"])).json() == before


async def test_get_user_hides_email(client: httpx.AsyncClient) -> None:
    a = await register(client, "vera")
    b = await register(client, "walt")
    r = await client.get(f"/api/users/{b['user']['id']}", headers=a["headers"])
    assert r.status_code == 200
    assert set(r.json()) == USER_FIELDS
    assert "walt@example.com" not in r.text


async def test_unknown_user_is_404(client: httpx.AsyncClient) -> None:
    s = await register(client)
    assert_problem(
        await client.get(f"/api/users/{'0' * 32}", headers=s["headers"]), 404, "user_not_found"
    )


@pytest.mark.parametrize("user_id", ["nope", "x" * 5000, "%00", "' OR 1=1 --", "A" * 32])
async def test_what_cannot_be_an_id_is_422(client: httpx.AsyncClient, user_id: str) -> None:
    s = await register(client)
    r = await client.get(f"/api/users/{user_id}", headers=s["headers"])
    assert error_fields(assert_problem(r, 422, "validation_error")) == {"user_id"}


async def test_users_need_auth(client: httpx.AsyncClient) -> None:
    s = await register(client)
    for path in ("/api/users/me", f"/api/users/{s['user']['id']}", "/api/users?search=a"):
        assert_problem(await client.get(path), 401, "not_authenticated")
    assert_problem(await client.patch("/api/users/me", json={}), 401, "not_authenticated")


async def test_search(client: httpx.AsyncClient) -> None:
    me = await register(client, "searcher", display_name="Zed")
    await register(client, "anna_k", display_name="Anna Karenina")
    await register(client, "bobby", display_name="ÉLODIE Bobby")
    await register(client, "annabel", display_name="Bel")
    await register(client, "percent", display_name="100% sure")

    async def names(q: str) -> list[str]:
        r = await client.get("/api/users", params={"search": q}, headers=me["headers"])
        assert r.status_code == 200, r.text
        assert r.json()["next_cursor"] is None
        return [u["username"] for u in r.json()["items"]]

    assert await names("ANN") == ["anna_k", "annabel"]
    assert await names("karen") == ["anna_k"]
    assert await names("élodie") == ["bobby"]  # case folding beyond ASCII
    assert await names("bobby@example.com") == ["bobby"]  # exact email
    assert await names("BOBBY@EXAMPLE.COM") == ["bobby"]
    assert await names("example.com") == []  # partial emails reveal nothing
    assert await names("_") == ["anna_k"]  # LIKE wildcards are literal
    assert await names("%") == ["percent"]
    assert await names("searcher") == []  # never the caller
    assert await names("Zed") == []


async def test_search_pages_with_cursor(client: httpx.AsyncClient) -> None:
    me = await register(client, "pager")
    expected = sorted(f"member{i:02d}" for i in range(23))
    for name in expected:
        await register(client, name)
    seen: list[str] = []
    cursor: str | None = None
    while True:
        params = {"search": "member", "limit": "10", **({"cursor": cursor} if cursor else {})}
        page = (await client.get("/api/users", params=params, headers=me["headers"])).json()
        seen += [u["username"] for u in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == expected


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"search": ""},
        {"search": "   "},
        {"search": "x" * 101},
        {"search": "a", "limit": "0"},
        {"search": "a", "limit": "101"},
        {"search": "a", "limit": "ten"},
        {"search": "a", "cursor": "%%%"},
        {"search": "a", "cursor": "_w"},
        {"search": "a\x00b"},
    ],
)
async def test_bad_search_is_422(client: httpx.AsyncClient, params: dict[str, str]) -> None:
    s = await register(client)
    r = await client.get("/api/users", params=params, headers=s["headers"])
    assert_problem(r, 422, "validation_error")
