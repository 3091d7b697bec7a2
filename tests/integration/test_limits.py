"""Rate limits (per user on writes, per address where no one is signed in; one budget for
message sends over REST and the WebSocket) and the reaction caps."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from reverb.config import Settings
from reverb.realtime.protocol import CLOSE_FLOODING
from tests.conftest import UNLIMITED, make_settings, serve_in_process
from tests.e2e.wsclient import WsClient
from tests.helpers import assert_problem, events, group, register
from tests.live_server import live
from tests.redis_server import RedisServer

Session = dict[str, Any]
DEFAULTS = {name: Settings.model_fields[name].default for name in UNLIMITED}
MAX_TRIES = 400  # sends before a test gives up waiting for the limit


def retry_after(r: httpx.Response) -> int:
    assert_problem(r, 429, "rate_limited")
    wait = int(r.headers["Retry-After"])
    assert wait >= 1
    return wait


async def rest_send(http: httpx.AsyncClient, who: Session, chat: str, i: int) -> httpx.Response:
    body = {"chat_id": chat, "content": f"m{i}", "client_id": f"rest-{i}"}
    return await http.post("/api/messages", json=body, headers=who["headers"])


async def ws_send(ws: WsClient, chat: str, i: int) -> dict[str, Any]:
    ref = f"ws-{i}"
    frame = {"type": "message.send", "chat_id": chat, "content": f"w{i}", "client_id": ref}
    await ws.send({**frame, "ref": ref})
    return await ws.until(lambda f: f.get("ref") == ref)


async def test_rest_sends_past_the_default_limit_are_429_with_retry_after(
    database_url: str,
) -> None:
    settings = make_settings(database_url, **DEFAULTS)  # the shipped defaults, unraised
    async with live(settings) as srv:
        a, b = await register(srv.http), await register(srv.http)
        chat = await group(srv.http, a, b)
        started = time.monotonic()
        statuses = []
        for i in range(MAX_TRIES):
            r = await rest_send(srv.http, a, chat, i)
            statuses.append(r.status_code)
            if r.status_code == 429:
                break
        elapsed = time.monotonic() - started
        assert statuses[-1] == 429, statuses
        wait = retry_after(r)
        assert wait <= 2  # the window is 2 s
        accepted = statuses.count(201)
        assert statuses[:accepted] == [201] * accepted
        # 40 at once, then 20 a second (the WebSocket's budget too, see the next test).
        assert 40 <= accepted <= 40 + 20 * elapsed + 1, (accepted, elapsed)
        # The other member's budget is untouched.
        assert (await rest_send(srv.http, b, chat, 10_000)).status_code == 201
        stored = [e for e in await events(srv.http, b, chat) if e["type"] == "message.created"]
        assert len(stored) == accepted + 1  # nothing stored for a refused send


async def test_rest_and_websocket_sends_draw_on_one_budget(database_url: str) -> None:
    # A long window, so the budget cannot refill while the test runs.
    settings = make_settings(database_url, rate_limit_messages="10 per hour")
    async with live(settings) as srv:
        a, b = await register(srv.http), await register(srv.http)
        chat = await group(srv.http, a, b)
        ws = await WsClient.ready(srv.url, a["access_token"])
        try:
            for i in range(5):
                assert (await ws_send(ws, chat, i))["type"] == "ack"
                assert (await rest_send(srv.http, a, chat, i)).status_code == 201
            refused = await ws_send(ws, chat, 5)
            assert refused["type"] == "error" and refused["code"] == "rate_limited", refused
            assert 1 <= retry_after(await rest_send(srv.http, a, chat, 5)) <= 3600
            # Another user's socket on the same server still sends.
            other = await WsClient.ready(srv.url, b["access_token"])
            assert (await ws_send(other, chat, 100))["type"] == "ack"
            await other.close()
        finally:
            await ws.close()
        stored = [e for e in await events(srv.http, b, chat) if e["type"] == "message.created"]
        assert len(stored) == 11


def other_address(client: httpx.AsyncClient, address: str) -> httpx.AsyncClient:
    app: FastAPI = client._transport.app  # type: ignore[attr-defined]
    transport = httpx.ASGITransport(app=app, client=(address, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://reverb.test")


async def test_register_and_the_other_anonymous_endpoints_are_limited_per_address(
    database_url: str,
) -> None:
    settings = make_settings(database_url, rate_limit_anonymous="3 per hour")
    async with serve_in_process(settings) as client:
        users = [await register(client) for _ in range(2)]
        r = await client.post(
            "/api/auth/refresh", json={"refresh_token": users[0]["refresh_token"]}
        )
        assert r.status_code == 200, r.text  # the third anonymous call of this address
        body = {"username": "late", "email": "late@example.com", "password": "x" * 12}
        assert retry_after(await client.post("/api/auth/register", json=body)) <= 3600
        login = {"username": users[1]["user"]["username"], "password": "x" * 12}
        retry_after(await client.post("/api/auth/login", json=login))
        # Signed-in calls are not counted per address; another address has its own budget.
        assert (await client.get("/api/users/me", headers=users[1]["headers"])).status_code == 200
        async with other_address(client, "198.51.100.9") as elsewhere:
            assert (await elsewhere.post("/api/auth/register", json=body)).status_code == 201


async def test_other_writes_are_limited_per_user(database_url: str) -> None:
    settings = make_settings(database_url, rate_limit_writes="3 per hour")
    async with serve_in_process(settings) as client:
        a, b = await register(client), await register(client)
        for i in range(3):
            r = await client.patch("/api/users/me", json={"bio": f"b{i}"}, headers=a["headers"])
            assert r.status_code == 200, r.text
        retry_after(await client.patch("/api/users/me", json={"bio": "x"}, headers=a["headers"]))
        me = (await client.get("/api/users/me", headers=a["headers"])).json()
        assert me["bio"] == "b2"  # the refused change was not made
        chat = {"type": "group", "name": "g", "member_ids": []}
        retry_after(await client.post("/api/chats", json=chat, headers=a["headers"]))
        r = await client.patch("/api/users/me", json={"bio": "b"}, headers=b["headers"])
        assert r.status_code == 200


async def test_websocket_auth_attempts_are_limited_per_address(database_url: str) -> None:
    settings = make_settings(database_url, rate_limit_ws_auth="3 per hour")
    async with live(settings) as srv:
        a = await register(srv.http)
        for _ in range(3):
            ws = await WsClient.ready(srv.url, a["access_token"])
            await ws.close()
        ws = await WsClient.open(srv.url)
        await ws.send({"type": "auth", "token": a["access_token"], "ref": "late"})
        refusal = await ws.recv()
        assert refusal["type"] == "error" and refusal["code"] == "rate_limited", refusal
        assert refusal["ref"] == "late"
        assert await ws.closed_with() == CLOSE_FLOODING


# --- reaction caps ------------------------------------------------------------------------------


async def react(client: httpx.AsyncClient, who: Session, message_id: str, emoji: str) -> int:
    r = await client.put(f"/api/messages/{message_id}/reactions/{emoji}", headers=who["headers"])
    if r.status_code != 204:
        assert_problem(r, 409, "too_many_reactions")
    return r.status_code


async def test_reactions_are_capped_per_user_and_per_message(client: httpx.AsyncClient) -> None:
    users = [await register(client) for _ in range(4)]
    a, b, c, d = users
    chat = await group(client, a, b, c, d)
    r = await client.post(
        "/api/messages", json={"chat_id": chat, "content": "react!"}, headers=a["headers"]
    )
    message = r.json()["id"]

    # 20 different reactions per user; the 21st is refused, a repeat is not.
    assert [await react(client, a, message, f"a{i}") for i in range(20)] == [204] * 20
    assert await react(client, a, message, "a20") == 409
    assert await react(client, a, message, "a0") == 204
    removed = await client.delete(f"/api/messages/{message}/reactions/a19", headers=a["headers"])
    assert removed.status_code == 204
    assert await react(client, a, message, "a19") == 204

    # 50 different emoji per message; past that only emoji already there can be added.
    assert [await react(client, b, message, f"b{i}") for i in range(20)] == [204] * 20
    assert [await react(client, c, message, f"c{i}") for i in range(10)] == [204] * 10
    assert await react(client, d, message, "d0") == 409
    assert await react(client, d, message, "b0") == 204

    page = (await client.get(f"/api/messages/{chat}", headers=d["headers"])).json()
    reactions = page["items"][-1]["reactions"]
    assert len(reactions) == 50
    assert {x["emoji"]: x["count"] for x in reactions}["b0"] == 2
    log = [e for e in await events(client, a, chat) if e["type"] == "reaction.updated"]
    assert len(log) == 20 + 2 + 20 + 10 + 1  # one event per change, none for a refusal


# --- the shared store away ----------------------------------------------------------------------


async def test_with_redis_paused_sends_are_counted_in_process_not_refused(
    database_url: str, redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    redis_server.start()
    await redis_server.wait_ready()
    settings = make_settings(
        database_url, redis_url=redis_server.url, rate_limit_messages="3 per hour"
    )
    async with serve_in_process(settings) as client:
        a, b = await register(client), await register(client)
        chat = await group(client, a, b)
        assert (await rest_send(client, a, chat, 0)).status_code == 201
        redis_server.pause()  # a hung Redis: no answer at all
        try:
            started = time.monotonic()
            # Counted afresh in this process: three more, then the limit holds again.
            statuses = [(await rest_send(client, a, chat, i)).status_code for i in range(1, 5)]
            assert statuses == [201, 201, 201, 429], statuses
            # One store timeout at most (then the store is left alone for a while).
            assert time.monotonic() - started < 2.0
        finally:
            redis_server.resume()
    lines = [r for r in caplog.records if "shared store failed" in r.getMessage()]
    assert len(lines) == 1 and lines[0].exc_info is None
