"""Register, login, refresh with rotation and reuse detection, logout, the OAuth2 form."""

from __future__ import annotations

import logging
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import func, select, update

from reverb import logs
from reverb.config import Settings
from reverb.storage.db import Database
from reverb.storage.tables import refresh_tokens, users
from reverb.storage.types import utcnow
from tests.conftest import make_settings, serve_in_process
from tests.helpers import PASSWORD, assert_problem, bearer, error_fields, register


async def count_users(db: Database) -> int:
    async with db.read() as conn:
        return int((await conn.execute(select(func.count()).select_from(users))).scalar_one())


async def test_register_returns_session(client: httpx.AsyncClient) -> None:
    r = await client.post(
        "/api/auth/register",
        json={"username": "Alice.B_1", "email": "Alice@Example.COM", "password": PASSWORD},
    )
    assert r.status_code == 201
    body = r.json()
    assert set(body) == {"user", "access_token", "refresh_token", "token_type", "expires_in"}
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 900
    me = body["user"]
    assert me["username"] == "alice.b_1"
    assert me["email"] == "alice@example.com"
    assert me["display_name"] == "alice.b_1"
    assert me["status"] == "offline"
    assert me["created_at"].endswith("Z")
    assert "password" not in r.text and "argon2" not in r.text


async def test_register_keeps_display_name(client: httpx.AsyncClient) -> None:
    s = await register(client, "bob", display_name="  Bob 🎸 Smith ")
    assert s["user"]["display_name"] == "Bob 🎸 Smith"


@pytest.mark.parametrize(
    ("username", "email", "code"),
    [
        ("ALICE", "other@example.com", "username_taken"),
        ("other", "ALICE@example.com", "email_taken"),
    ],
)
async def test_register_duplicates_are_409_case_insensitively(
    client: httpx.AsyncClient, db: Database, username: str, email: str, code: str
) -> None:
    await register(client, "alice")
    r = await client.post(
        "/api/auth/register", json={"username": username, "email": email, "password": PASSWORD}
    )
    assert_problem(r, 409, code)
    assert await count_users(db) == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"username": "ab", "email": "a@example.com", "password": PASSWORD}, "username"),
        ({"username": "a" * 33, "email": "a@example.com", "password": PASSWORD}, "username"),
        ({"username": "al ice", "email": "a@example.com", "password": PASSWORD}, "username"),
        ({"username": "alice!", "email": "a@example.com", "password": PASSWORD}, "username"),
        ({"username": "élodie", "email": "a@example.com", "password": PASSWORD}, "username"),
        ({"username": 12345, "email": "a@example.com", "password": PASSWORD}, "username"),
        ({"username": "alice", "email": "not-an-email", "password": PASSWORD}, "email"),
        ({"username": "alice", "email": "a@example.com", "password": "short"}, "password"),
        ({"username": "alice", "email": "a@example.com", "password": "x" * 1025}, "password"),
        ({"username": "alice", "email": "a@example.com"}, "password"),
        ({"email": "a@example.com", "password": PASSWORD}, "username"),
        ({"username": "alice", "password": PASSWORD}, "email"),
        (
            {
                "username": "alice",
                "email": "a@example.com",
                "password": PASSWORD,
                "display_name": "  ",
            },
            "display_name",
        ),
        (
            {
                "username": "alice",
                "email": "a@example.com",
                "password": PASSWORD,
                "display_name": "a\nb",
            },
            "display_name",
        ),
        (
            {"username": "alice", "email": "a@example.com", "password": PASSWORD, "is_admin": True},
            "is_admin",
        ),
    ],
)
async def test_register_bad_input_is_422_and_stores_nothing(
    client: httpx.AsyncClient, db: Database, body: dict[str, object], field: str
) -> None:
    r = await client.post("/api/auth/register", json=body)
    problem = assert_problem(r, 422, "validation_error")
    assert field in error_fields(problem)
    assert PASSWORD not in r.text
    assert await count_users(db) == 0


@pytest.mark.parametrize(
    ("content", "ctype"),
    [
        (b"{not json", "application/json"),
        (b"[1, 2]", "application/json"),
        (b"", "application/json"),
        (b"username=alice", "application/x-www-form-urlencoded"),
        (b"\xff\xfe\x00", "application/json"),
    ],
)
async def test_register_unparseable_body_is_422(
    client: httpx.AsyncClient, content: bytes, ctype: str
) -> None:
    r = await client.post("/api/auth/register", content=content, headers={"content-type": ctype})
    assert_problem(r, 422, "validation_error")


async def test_login_by_username_or_email_any_case(client: httpx.AsyncClient) -> None:
    await register(client, "carol")
    for body in ({"username": "Carol"}, {"email": "CAROL@example.com"}, {"username": " carol "}):
        r = await client.post("/api/auth/login", json={**body, "password": PASSWORD})
        assert r.status_code == 200, r.text
        assert r.json()["user"]["username"] == "carol"
        assert r.json()["refresh_token"]


async def test_login_failures_are_uniform(client: httpx.AsyncClient) -> None:
    await register(client, "dave")
    wrong = await client.post(
        "/api/auth/login", json={"username": "dave", "password": "wrong-pass"}
    )
    unknown = await client.post(
        "/api/auth/login", json={"username": "nobody", "password": "wrong-pass"}
    )
    unknown_email = await client.post(
        "/api/auth/login", json={"email": "nobody@example.com", "password": "wrong-pass"}
    )
    bodies = [
        assert_problem(r, 401, "invalid_credentials") for r in (wrong, unknown, unknown_email)
    ]
    assert bodies[0] == bodies[1] == bodies[2]


@pytest.mark.parametrize(
    "body",
    [
        {"password": PASSWORD},
        {"username": "a", "email": "a@example.com", "password": PASSWORD},
        {"username": "dave"},
        {"username": "dave", "password": ""},
        {"username": ["dave"], "password": PASSWORD},
        {"username": "dave", "password": PASSWORD, "remember": True},
        {"username": "da\x00ve", "password": PASSWORD},
        {"email": "\x00@example.com", "password": PASSWORD},
    ],
)
async def test_login_bad_input_is_422(client: httpx.AsyncClient, body: dict[str, object]) -> None:
    assert_problem(await client.post("/api/auth/login", json=body), 422, "validation_error")


async def test_refresh_rotates_and_reuse_revokes_the_family(client: httpx.AsyncClient) -> None:
    s = await register(client, "erin")
    first = s["refresh_token"]
    r = await client.post("/api/auth/refresh", json={"refresh_token": first})
    assert r.status_code == 200, r.text
    second = r.json()["refresh_token"]
    assert second != first
    assert (
        await client.get("/api/users/me", headers=bearer(r.json()["access_token"]))
    ).status_code == 200

    # The first token was rotated: presenting it again is reuse, and ends the whole login.
    assert_problem(
        await client.post("/api/auth/refresh", json={"refresh_token": first}), 401, "invalid_token"
    )
    assert_problem(
        await client.post("/api/auth/refresh", json={"refresh_token": second}), 401, "invalid_token"
    )


async def test_reuse_leaves_other_logins_alone(client: httpx.AsyncClient) -> None:
    s = await register(client, "fred")
    other = (
        await client.post("/api/auth/login", json={"username": "fred", "password": PASSWORD})
    ).json()
    await client.post("/api/auth/refresh", json={"refresh_token": s["refresh_token"]})
    await client.post("/api/auth/refresh", json={"refresh_token": s["refresh_token"]})
    r = await client.post("/api/auth/refresh", json={"refresh_token": other["refresh_token"]})
    assert r.status_code == 200


async def test_expired_refresh_token_is_401(client: httpx.AsyncClient, db: Database) -> None:
    s = await register(client, "gina")
    async with db.transaction() as tx:
        await tx.conn.execute(
            update(refresh_tokens).values(expires_at=utcnow() - timedelta(seconds=1))
        )
    r = await client.post("/api/auth/refresh", json={"refresh_token": s["refresh_token"]})
    assert_problem(r, 401, "invalid_token")


@pytest.mark.parametrize("token", ["garbage", "x" * 1024, "é"])
async def test_unknown_refresh_token_is_401(client: httpx.AsyncClient, token: str) -> None:
    r = await client.post("/api/auth/refresh", json={"refresh_token": token})
    assert_problem(r, 401, "invalid_token")


@pytest.mark.parametrize(
    "body",
    [{}, {"refresh_token": ""}, {"refresh_token": 5}, {"token": "x"}, {"refresh_token": "\x00"}],
)
async def test_refresh_and_logout_bad_input_is_422(
    client: httpx.AsyncClient, body: dict[str, object]
) -> None:
    assert_problem(await client.post("/api/auth/refresh", json=body), 422, "validation_error")
    assert_problem(await client.post("/api/auth/logout", json=body), 422, "validation_error")


async def test_logout_ends_that_login_only(client: httpx.AsyncClient) -> None:
    s = await register(client, "hank")
    other = (
        await client.post("/api/auth/login", json={"username": "hank", "password": PASSWORD})
    ).json()
    r = await client.post("/api/auth/logout", json={"refresh_token": s["refresh_token"]})
    assert r.status_code == 204 and r.content == b""
    assert_problem(
        await client.post("/api/auth/refresh", json={"refresh_token": s["refresh_token"]}),
        401,
        "invalid_token",
    )
    assert (
        await client.post("/api/auth/refresh", json={"refresh_token": other["refresh_token"]})
    ).status_code == 200
    # Logging out twice, or with a token never issued, is not an error (RFC 7009).
    assert (
        await client.post("/api/auth/logout", json={"refresh_token": s["refresh_token"]})
    ).status_code == 204
    assert (
        await client.post("/api/auth/logout", json={"refresh_token": "never-issued"})
    ).status_code == 204


async def test_logout_all_ends_every_login_and_access_token(client: httpx.AsyncClient) -> None:
    s = await register(client, "iris")
    other = (
        await client.post("/api/auth/login", json={"username": "iris", "password": PASSWORD})
    ).json()
    assert (await client.post("/api/auth/logout-all", headers=s["headers"])).status_code == 204
    assert_problem(await client.get("/api/users/me", headers=s["headers"]), 401, "invalid_token")
    assert_problem(
        await client.get("/api/users/me", headers=bearer(other["access_token"])),
        401,
        "invalid_token",
    )
    for token in (s["refresh_token"], other["refresh_token"]):
        assert_problem(
            await client.post("/api/auth/refresh", json={"refresh_token": token}),
            401,
            "invalid_token",
        )
    again = await client.post("/api/auth/login", json={"username": "iris", "password": PASSWORD})
    assert (
        await client.get("/api/users/me", headers=bearer(again.json()["access_token"]))
    ).status_code == 200


async def test_oauth2_token_form(client: httpx.AsyncClient) -> None:
    await register(client, "jane")
    for login in ("jane", "jane@example.com"):
        r = await client.post("/api/auth/token", data={"username": login, "password": PASSWORD})
        assert r.status_code == 200, r.text
        assert set(r.json()) == {"access_token", "token_type"}
        assert (
            await client.get("/api/users/me", headers=bearer(r.json()["access_token"]))
        ).status_code == 200
    bad = await client.post("/api/auth/token", data={"username": "jane", "password": "wrong-pass"})
    assert_problem(bad, 401, "invalid_credentials")
    assert_problem(
        await client.post("/api/auth/token", data={"username": "jane"}), 422, "validation_error"
    )
    assert_problem(
        await client.post("/api/auth/token", json={"username": "jane"}), 422, "validation_error"
    )


async def test_login_rehashes_when_parameters_change(
    client: httpx.AsyncClient, db: Database, settings: Settings
) -> None:
    s = await register(client, "kate")
    async with db.read() as conn:
        before = (await conn.execute(select(users.c.password_hash))).scalar_one()
    assert "t=1" in before
    stronger = make_settings(settings.database_url, argon2_time_cost=2)
    async with serve_in_process(stronger) as c2:
        r = await c2.post("/api/auth/login", json={"username": "kate", "password": PASSWORD})
        assert r.status_code == 200
    async with db.read() as conn:
        after = (await conn.execute(select(users.c.password_hash))).scalar_one()
    assert after.startswith("$argon2id$") and "t=2" in after and after != before
    assert s["user"]["id"]


async def test_no_secret_reaches_the_logs(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    logs.configure(fmt="json", level="DEBUG")  # the most verbose setting a deployment can pick
    root.addHandler(caplog.handler)
    try:
        await _log_in_and_out(client)
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    text = caplog.text
    assert "reverb.access" in text  # the access log did run
    for secret in _SECRETS:
        assert secret not in text


_SECRETS: list[str] = []


async def _log_in_and_out(client: httpx.AsyncClient) -> None:
    s = await register(client, "liam")
    login = await client.post("/api/auth/login", json={"username": "liam", "password": PASSWORD})
    await client.post("/api/auth/login", json={"username": "liam", "password": "wrong-password"})
    await client.post("/api/auth/refresh", json={"refresh_token": login.json()["refresh_token"]})
    await client.get("/api/users/me", headers=s["headers"])
    _SECRETS[:] = [
        PASSWORD,
        "wrong-password",
        s["access_token"],
        s["refresh_token"],
        login.json()["refresh_token"],
        "$argon2",
    ]
