"""E-mail verification and password reset with mailed codes, read from a real SMTP server."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select, update

from reverb.app import create_app
from reverb.storage.tables import email_codes, users
from tests.conftest import make_settings
from tests.helpers import PASSWORD, assert_problem, bearer, register, until
from tests.ports import free_port
from tests.smtp_server import MailSink, smtp_server

CODE = re.compile(r"\b(\d{6})\b")


class World:
    def __init__(self, app: FastAPI, client: httpx.AsyncClient, sink: MailSink) -> None:
        self.app, self.client, self.sink = app, client, sink

    async def code_for(self, address: str, nth: int = 1) -> str:
        """The code of the `nth` mail to `address`, once it has arrived."""
        await until(lambda: len(self.mails_to(address)) >= nth, f"mail {nth} to {address}")
        body = self.mails_to(address)[nth - 1].get_body(("plain",))
        assert body is not None
        [code] = CODE.findall(body.get_content())  # the only 6-digit number in the mail
        return str(code)

    def mails_to(self, address: str) -> list[Any]:
        with self.sink.lock:
            return [m for m in self.sink.mails if m["To"] == address]


async def reset(world: World, email: str, code: object, new_password: str) -> httpx.Response:
    return await world.client.post(
        "/api/auth/reset-password",
        json={"email": email, "code": code, "new_password": new_password},
    )


@asynccontextmanager
async def world_of(database_url: str, **settings: object) -> AsyncIterator[World]:
    port = free_port()
    with smtp_server(port) as sink:
        app = create_app(
            make_settings(database_url, smtp_url=f"smtp://127.0.0.1:{port}", **settings)
        )
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app, client=("203.0.113.9", 4000))
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                yield World(app, client, sink)


@pytest.fixture
async def world(database_url: str) -> AsyncIterator[World]:
    async with world_of(database_url) as w:
        yield w


async def test_a_new_account_proves_its_address(world: World) -> None:
    ann = await register(world.client, "ann")
    assert ann["user"]["email_verified"] is False
    code = await world.code_for("ann@example.com")
    wrong = "000000" if code != "000000" else "111111"
    r = await world.client.post(
        "/api/auth/verify-email", json={"code": wrong}, headers=ann["headers"]
    )
    assert_problem(r, 400, "invalid_code")
    r = await world.client.post(
        "/api/auth/verify-email", json={"code": code}, headers=ann["headers"]
    )
    assert r.status_code == 200 and r.json()["email_verified"] is True
    me = await world.client.get("/api/users/me", headers=ann["headers"])
    assert me.json()["email_verified"] is True
    again = await world.client.post(
        "/api/auth/verify-email", json={"code": code}, headers=ann["headers"]
    )
    assert_problem(again, 400, "invalid_code")


@pytest.mark.parametrize("code", ["12345", "1234567", "12a456", " 123456", 123456, None, "١٢٣٤٥٦"])
async def test_malformed_codes_are_422(world: World, code: object) -> None:
    ann = await register(world.client, "ann")
    r = await world.client.post(
        "/api/auth/verify-email", json={"code": code}, headers=ann["headers"]
    )
    assert_problem(r, 422, "validation_error")
    r = await reset(world, "ann@example.com", code, "a new password")
    assert_problem(r, 422, "validation_error")


async def test_resend_replaces_the_code_at_most_once_a_minute(
    world: World, database_url: str
) -> None:
    ann = await register(world.client, "ann")
    first = await world.code_for("ann@example.com")
    r = await world.client.post("/api/auth/resend-verification", headers=ann["headers"])
    retry = assert_problem(r, 429, "rate_limited")
    assert retry and 1 <= int(r.headers["retry-after"]) <= 60
    # A minute on: the next code replaces the first.
    await _age_codes(world, minutes=1)
    r = await world.client.post("/api/auth/resend-verification", headers=ann["headers"])
    assert r.status_code == 202 and r.json() == {"status": "accepted"}
    second = await world.code_for("ann@example.com", 2)
    if first != second:
        r = await world.client.post(
            "/api/auth/verify-email", json={"code": first}, headers=ann["headers"]
        )
        assert_problem(r, 400, "invalid_code")
    r = await world.client.post(
        "/api/auth/verify-email", json={"code": second}, headers=ann["headers"]
    )
    assert r.status_code == 200


async def _age_codes(world: World, *, minutes: float) -> None:
    """Move every stored code back in time (creation and expiry), as if minutes had passed."""
    db = world.app.state.services.db
    shift = timedelta(minutes=minutes)
    c = email_codes.c
    async with db.read() as conn:
        rows = (await conn.execute(select(c.user_id, c.purpose, c.created_at, c.expires_at))).all()
    async with db.transaction() as tx:
        for row in rows:
            await tx.conn.execute(
                update(email_codes)
                .where(c.user_id == row.user_id, c.purpose == row.purpose)
                .values(created_at=row.created_at - shift, expires_at=row.expires_at - shift)
            )


async def test_forgot_password_answers_alike_with_or_without_an_account(world: World) -> None:
    await register(world.client, "ann")
    await world.code_for("ann@example.com")  # the verification mail
    answers = []
    for email in ("nobody@example.com", "ann@example.com"):
        r = await world.client.post("/api/auth/forgot-password", json={"email": email})
        answers.append((r.status_code, r.headers["content-type"], r.content))
    assert answers[0] == answers[1] and answers[0][0] == 202
    await world.code_for("ann@example.com", 2)  # the reset mail: the positive event
    assert world.mails_to("nobody@example.com") == []
    assert world.sink.count() == 2


async def test_forgot_password_answers_before_it_looks_the_address_up(world: World) -> None:
    """The answer cannot tell, by its timing, whether the address has an account: it does not
    wait for the lookup at all. Shown by holding Ann's row while both are asked for."""
    ann = await register(world.client, "ann")
    await world.code_for("ann@example.com")  # the verification mail
    db = world.app.state.services.db
    async with db.transaction() as tx:
        # The reset code's write needs this row (its foreign key); held, it cannot happen.
        lock = select(users.c.id).where(users.c.id == ann["user"]["id"]).with_for_update()
        await tx.conn.execute(lock)
        for email in ("ann@example.com", "nobody@example.com"):
            async with asyncio.timeout(5):
                r = await world.client.post("/api/auth/forgot-password", json={"email": email})
            assert r.status_code == 202
        assert len(world.mails_to("ann@example.com")) == 1
    await world.code_for("ann@example.com", 2)  # once the row is free, the code goes out


async def test_reset_password_ends_every_session(world: World) -> None:
    ann = await register(world.client, "ann")
    await world.client.post("/api/auth/forgot-password", json={"email": "ann@example.com"})
    code = await world.code_for("ann@example.com", 2)
    r = await reset(world, "ANN@example.com", code, "a new password")
    assert r.status_code == 200, r.text
    session = r.json()
    assert session["user"]["email_verified"] is True  # the code came to the address
    old = await world.client.get("/api/users/me", headers=ann["headers"])
    assert_problem(old, 401, "invalid_token")
    refresh = await world.client.post(
        "/api/auth/refresh", json={"refresh_token": ann["refresh_token"]}
    )
    assert_problem(refresh, 401, "invalid_token")
    new = await world.client.get("/api/users/me", headers=bearer(session["access_token"]))
    assert new.status_code == 200
    login = await world.client.post(
        "/api/auth/login", json={"username": "ann", "password": PASSWORD}
    )
    assert_problem(login, 401, "invalid_credentials")
    login = await world.client.post(
        "/api/auth/login", json={"username": "ann", "password": "a new password"}
    )
    assert login.status_code == 200
    # The code worked once.
    again = await reset(world, "ann@example.com", code, "yet another one")
    assert_problem(again, 400, "invalid_code")


async def test_five_wrong_codes_void_the_right_one(world: World) -> None:
    await register(world.client, "ann")
    await world.client.post("/api/auth/forgot-password", json={"email": "ann@example.com"})
    code = await world.code_for("ann@example.com", 2)
    wrong = [f"{(int(code) + i) % 1_000_000:06d}" for i in range(1, 6)]
    for guess in wrong:
        r = await reset(world, "ann@example.com", guess, "a new password")
        assert_problem(r, 400, "invalid_code")
    r = await reset(world, "ann@example.com", code, "a new password")
    assert_problem(r, 400, "invalid_code")
    login = await world.client.post(
        "/api/auth/login", json={"username": "ann", "password": PASSWORD}
    )
    assert login.status_code == 200


async def test_expired_codes_and_codes_for_another_address(world: World) -> None:
    await register(world.client, "ann")
    await register(world.client, "ben")
    for who in ("ann", "ben"):
        await world.client.post("/api/auth/forgot-password", json={"email": f"{who}@example.com"})
    ann_code = await world.code_for("ann@example.com", 2)
    ben_code = await world.code_for("ben@example.com", 2)
    if ann_code != ben_code:
        r = await reset(world, "ben@example.com", ann_code, "a new password")
        assert_problem(r, 400, "invalid_code")
    await _age_codes(world, minutes=16)
    r = await reset(world, "ann@example.com", ann_code, "a new password")
    assert_problem(r, 400, "invalid_code")
    unknown = await world.client.post(
        "/api/auth/reset-password",
        json={"email": "nobody@example.com", "code": "123456", "new_password": "a new password"},
    )
    assert_problem(unknown, 400, "invalid_code")


async def test_a_reset_racing_a_login_leaves_no_session_of_the_old_password(
    world: World,
) -> None:
    await register(world.client, "ann")
    await world.client.post("/api/auth/forgot-password", json={"email": "ann@example.com"})
    code = await world.code_for("ann@example.com", 2)
    passwords = world.app.state.services.auth.passwords
    checked, reset_done = asyncio.Event(), asyncio.Event()
    real_verify = passwords.verify

    async def verify_then_wait(stored: str | None, given: str) -> bool:
        ok: bool = await real_verify(stored, given)
        if given == PASSWORD:  # the racing login: its check passed, the reset lands now
            checked.set()
            await reset_done.wait()
        return ok

    passwords.verify = verify_then_wait
    try:
        login = asyncio.create_task(
            world.client.post("/api/auth/login", json={"username": "ann", "password": PASSWORD})
        )
        await checked.wait()
        r = await reset(world, "ann@example.com", code, "a new password")
        assert r.status_code == 200, r.text
        reset_done.set()
        assert_problem(await login, 401, "invalid_credentials")
    finally:
        passwords.verify = real_verify


async def test_unverified_accounts_are_held_back_where_required(database_url: str) -> None:
    async with world_of(database_url, require_email_verification=True) as w:
        ann = await register(w.client, "ann")
        assert (await w.client.get("/api/users/me", headers=ann["headers"])).status_code == 200
        assert_problem(
            await w.client.get("/api/chats", headers=ann["headers"]), 403, "email_unverified"
        )
        up = await w.client.post(
            "/api/media", files={"file": ("a.txt", b"x", "text/plain")}, headers=ann["headers"]
        )
        assert_problem(up, 403, "email_unverified")
        sent = await w.client.post(
            "/api/messages", json={"chat_id": "x" * 32, "content": "hi"}, headers=ann["headers"]
        )
        assert_problem(sent, 403, "email_unverified")
        code = await w.code_for("ann@example.com")
        await w.client.post("/api/auth/verify-email", json={"code": code}, headers=ann["headers"])
        assert (await w.client.get("/api/chats", headers=ann["headers"])).status_code == 200


async def test_codes_are_asked_for_and_tried_within_the_address_limit(database_url: str) -> None:
    async with world_of(database_url, rate_limit_anonymous="3 per minute") as w:
        for _ in range(3):
            r = await w.client.post("/api/auth/forgot-password", json={"email": "x@example.com"})
            assert r.status_code == 202
        limited = await w.client.post("/api/auth/forgot-password", json={"email": "y@example.com"})
        assert_problem(limited, 429, "rate_limited")
        assert int(limited.headers["retry-after"]) >= 1
        tried = await reset(w, "x@example.com", "123456", "a new password")
        assert_problem(tried, 429, "rate_limited")
