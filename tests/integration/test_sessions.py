"""Access tokens that must be refused, password changes, and the login rate limit."""

from __future__ import annotations

import time
from datetime import timedelta

import httpx
import jwt
import pytest
from sqlalchemy import update

from reverb.config import Settings
from reverb.storage.db import Database
from reverb.storage.tables import login_failures
from reverb.storage.types import utcnow
from tests.conftest import TEST_SECRET, make_settings, serve_in_process
from tests.helpers import PASSWORD, assert_problem, bearer, register


def claims(user_id: str, **overrides: object) -> dict[str, object]:
    now = int(time.time())
    base: dict[str, object] = {
        "iss": "reverb",
        "aud": "reverb",
        "sub": user_id,
        "iat": now,
        "exp": now + 600,
        "typ": "access",
        "sv": 0,
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


async def test_a_valid_forged_token_is_accepted(client: httpx.AsyncClient) -> None:
    # Guards the tests below: they fail for the reason they name, not for a wrong claim set.
    s = await register(client)
    token = jwt.encode(claims(s["user"]["id"]), TEST_SECRET, algorithm="HS256")
    assert (await client.get("/api/users/me", headers=bearer(token))).status_code == 200


def _none_alg(payload: dict[str, object]) -> str:
    import base64
    import json

    def part(obj: object) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(payload)}."


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda uid: _none_alg(claims(uid)), id="alg-none"),
        pytest.param(
            lambda uid: jwt.encode(claims(uid), "another-secret-" + "y" * 60, algorithm="HS256"),
            id="wrong-secret",
        ),
        pytest.param(
            lambda uid: jwt.encode(claims(uid), TEST_SECRET, algorithm="HS512"), id="other-alg"
        ),
        pytest.param(
            lambda uid: jwt.encode(
                claims(uid, exp=int(time.time()) - 5), TEST_SECRET, algorithm="HS256"
            ),
            id="expired",
        ),
        pytest.param(
            lambda uid: jwt.encode(claims(uid, aud="someone-else"), TEST_SECRET, algorithm="HS256"),
            id="wrong-aud",
        ),
        pytest.param(
            lambda uid: jwt.encode(claims(uid, iss="evil"), TEST_SECRET, algorithm="HS256"),
            id="wrong-iss",
        ),
        pytest.param(
            lambda uid: jwt.encode(claims(uid, typ="refresh"), TEST_SECRET, algorithm="HS256"),
            id="wrong-typ",
        ),
        pytest.param(
            lambda uid: jwt.encode(claims(uid, exp=None), TEST_SECRET, algorithm="HS256"),
            id="no-exp",
        ),
        pytest.param(
            lambda uid: jwt.encode(claims(uid, sv=1), TEST_SECRET, algorithm="HS256"),
            id="old-session",
        ),
        pytest.param(
            lambda uid: jwt.encode(claims("0" * 32), TEST_SECRET, algorithm="HS256"),
            id="unknown-user",
        ),
        pytest.param(lambda uid: "not.a.jwt", id="garbage"),
        pytest.param(lambda uid: "é" * 10, id="non-ascii"),
    ],
)
async def test_bad_access_tokens_are_401(client: httpx.AsyncClient, make: object) -> None:
    s = await register(client)
    token = make(s["user"]["id"])  # type: ignore[operator]
    header = f"Bearer {token}".encode()
    r = await client.get("/api/users/me", headers=[(b"Authorization", header)])
    assert_problem(r, 401, "invalid_token")
    assert r.headers["www-authenticate"] == "Bearer"


async def test_tampered_token_is_401(client: httpx.AsyncClient) -> None:
    s = await register(client)
    head, body, sig = s["access_token"].split(".")
    other = await register(client)
    forged = f"{head}.{other['access_token'].split('.')[1]}.{sig}"
    assert_problem(await client.get("/api/users/me", headers=bearer(forged)), 401, "invalid_token")
    assert body


async def test_refresh_token_is_not_an_access_token(client: httpx.AsyncClient) -> None:
    s = await register(client)
    r = await client.get("/api/users/me", headers=bearer(s["refresh_token"]))
    assert_problem(r, 401, "invalid_token")


@pytest.mark.parametrize("header", [None, "", "Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "bearer"])
async def test_missing_credentials_are_401(client: httpx.AsyncClient, header: str | None) -> None:
    headers = {} if header is None else {"Authorization": header}
    r = await client.get("/api/users/me", headers=headers)
    assert_problem(r, 401, "not_authenticated")


async def test_password_change_revokes_every_session(client: httpx.AsyncClient) -> None:
    s = await register(client, "mona")
    other = (
        await client.post("/api/auth/login", json={"username": "mona", "password": PASSWORD})
    ).json()
    r = await client.post(
        "/api/users/me/password",
        json={"current_password": PASSWORD, "new_password": "a brand new secret"},
        headers=s["headers"],
    )
    assert r.status_code == 204
    for token in (s["access_token"], other["access_token"]):
        assert_problem(
            await client.get("/api/users/me", headers=bearer(token)), 401, "invalid_token"
        )
    for token in (s["refresh_token"], other["refresh_token"]):
        assert_problem(
            await client.post("/api/auth/refresh", json={"refresh_token": token}),
            401,
            "invalid_token",
        )
    old = await client.post("/api/auth/login", json={"username": "mona", "password": PASSWORD})
    assert_problem(old, 401, "invalid_credentials")
    new = await client.post(
        "/api/auth/login", json={"username": "mona", "password": "a brand new secret"}
    )
    assert new.status_code == 200


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (
            {"current_password": "wrong-password", "new_password": "another secret"},
            403,
            "invalid_credentials",
        ),
        ({"current_password": PASSWORD, "new_password": "short"}, 422, "validation_error"),
        ({"current_password": PASSWORD}, 422, "validation_error"),
        ({"new_password": "another secret"}, 422, "validation_error"),
        ({"current_password": PASSWORD, "new_password": 12345678}, 422, "validation_error"),
    ],
)
async def test_bad_password_change_changes_nothing(
    client: httpx.AsyncClient, body: dict[str, object], status: int, code: str
) -> None:
    s = await register(client, "nina")
    r = await client.post("/api/users/me/password", json=body, headers=s["headers"])
    assert_problem(r, status, code)
    assert PASSWORD not in r.text
    assert (await client.get("/api/users/me", headers=s["headers"])).status_code == 200
    again = await client.post("/api/auth/login", json={"username": "nina", "password": PASSWORD})
    assert again.status_code == 200


async def test_password_change_needs_auth(client: httpx.AsyncClient) -> None:
    r = await client.post(
        "/api/users/me/password", json={"current_password": PASSWORD, "new_password": "x" * 10}
    )
    assert_problem(r, 401, "not_authenticated")


# --- rate limit ---------------------------------------------------------------------------------


@pytest.fixture
def limited(database_url: str) -> Settings:
    return make_settings(
        database_url, login_max_failures_per_account=3, login_max_failures_per_address=6
    )


async def _fail(client: httpx.AsyncClient, username: str) -> httpx.Response:
    return await client.post(
        "/api/auth/login", json={"username": username, "password": "wrong-password"}
    )


async def _ok(client: httpx.AsyncClient, username: str) -> httpx.Response:
    return await client.post("/api/auth/login", json={"username": username, "password": PASSWORD})


async def test_account_limit_then_429_even_with_right_password(
    limited: Settings, db: Database
) -> None:
    async with serve_in_process(limited) as client:
        await register(client, "olga")
        await register(client, "paul")
        for _ in range(3):
            assert_problem(await _fail(client, "olga"), 401, "invalid_credentials")
        for attempt in (
            await _fail(client, "olga"),
            await _ok(client, "OLGA"),
            await client.post(
                "/api/auth/login", json={"email": "olga@example.com", "password": PASSWORD}
            ),
        ):
            assert_problem(attempt, 429, "rate_limited")
            assert 1 <= int(attempt.headers["retry-after"]) <= 900
        # Another account from the same address is not held up.
        assert (await _ok(client, "paul")).status_code == 200

        # Once the window has passed, the account logs in again: no permanent lockout.
        async with db.transaction() as tx:
            await tx.conn.execute(
                update(login_failures).values(created_at=utcnow() - timedelta(minutes=16))
            )
        assert (await _ok(client, "olga")).status_code == 200


async def test_unknown_accounts_are_limited_alike(limited: Settings) -> None:
    async with serve_in_process(limited) as client:
        for _ in range(3):
            assert_problem(await _fail(client, "ghost"), 401, "invalid_credentials")
        assert_problem(await _fail(client, "ghost"), 429, "rate_limited")


async def test_success_resets_the_account_count(limited: Settings) -> None:
    async with serve_in_process(limited) as client:
        await register(client, "quinn")
        for _ in range(2):
            await _fail(client, "quinn")
        assert (await _ok(client, "quinn")).status_code == 200
        for _ in range(2):
            assert_problem(await _fail(client, "quinn"), 401, "invalid_credentials")


async def test_address_limit_spans_accounts(limited: Settings) -> None:
    async with serve_in_process(limited) as client:
        await register(client, "rita")
        for name in ("a1", "a2", "a3", "a4", "a5", "a6"):
            assert_problem(await _fail(client, name), 401, "invalid_credentials")
        assert_problem(await _ok(client, "rita"), 429, "rate_limited")


async def test_wrong_current_password_counts_as_a_failure(limited: Settings) -> None:
    async with serve_in_process(limited) as client:
        s = await register(client, "sam")
        body = {"current_password": "wrong-password", "new_password": "another secret"}
        for _ in range(3):
            assert_problem(
                await client.post("/api/users/me/password", json=body, headers=s["headers"]),
                403,
                "invalid_credentials",
            )
        r = await client.post("/api/users/me/password", json=body, headers=s["headers"])
        assert_problem(r, 429, "rate_limited")
