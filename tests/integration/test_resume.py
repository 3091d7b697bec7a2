"""Resuming with `since`: the app on a real uvicorn server in the test's process (so the
statements it runs can be counted) and a real WebSocket client."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import orjson
from sqlalchemy import event
from sqlalchemy.engine import Connection

from reverb.config import Settings
from reverb.realtime.protocol import MAX_SINCE
from tests.e2e.wsclient import WsClient
from tests.helpers import group, register, send
from tests.live_server import Live, live


@contextmanager
def chat_statements(live: Live) -> Iterator[list[str]]:
    """Statements that read chat positions or the event log (the token check and presence
    read other things, and presence may still be busy with an earlier socket)."""
    seen: list[str] = []

    def count(conn: Connection, cursor: Any, statement: str, *_: Any) -> None:
        if "chat_events" in statement or "chats.last_seq" in statement:
            seen.append(statement)

    engine = live.services.db.engine.sync_engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", count)


async def resume(live: Live, token: str, since: dict[str, int], expect: int) -> list[Any]:
    """Authenticate with `since` and read `ready` and the `expect` frames after it, then a
    pong (so nothing replayed is still on its way)."""
    ws = await WsClient.open(live.url)
    try:
        await ws.send({"type": "auth", "token": token, "since": since})
        try:
            frames = [await ws.recv(2) for _ in range(1 + expect)]
        except TimeoutError:
            raise AssertionError(ws.received) from None
        await ws.send({"type": "ping", "ref": "end"})
        frames.append(await ws.until(lambda f: f.get("ref") == "end"))
        return frames
    finally:
        await ws.conn.close()


async def test_since_takes_the_same_statements_however_many_foreign_chats_it_names(
    settings: Settings,
) -> None:
    async with live(settings) as srv:
        a, b = await register(srv.http), await register(srv.http)
        kept = await group(srv.http, a, b)
        for i in range(3):
            await send(srv.http, a, kept, f"m{i}")
        left = await group(srv.http, a, b, name="Left")
        await send(srv.http, a, left, "before")
        r = await srv.http.delete(
            f"/api/chats/{left}/members/{b['user']['id']}", headers=a["headers"]
        )
        assert r.status_code == 204, r.text
        await send(srv.http, a, left, "after the removal")
        since = {kept: 1, left: 1}  # kept: m1 and m2 are new; left: the removal is
        expect = 3

        with chat_statements(srv) as plain:
            frames = await resume(srv, b["access_token"], since, expect)
        foreign = {uuid.uuid4().hex: 0 for _ in range(1500)}
        foreign[a["user"]["id"]] = 0  # an id of another kind, and chats of other users:
        other = await group(srv.http, a, await register(srv.http), name="Not bob's")
        foreign[other] = 0
        with chat_statements(srv) as crowded:
            frames_crowded = await resume(srv, b["access_token"], {**foreign, **since}, expect)

    assert frames_crowded[1:] == frames[1:]  # (`ready` shows when the user was last seen)
    assert frames[0]["type"] == "ready"
    replay = frames[1:-1]
    assert [(f["type"], f["chat_id"], f["seq"]) for f in replay if f["chat_id"] == kept] == [
        ("message.created", kept, 2),
        ("message.created", kept, 3),
    ]
    removal = [f for f in replay if f["chat_id"] == left]
    assert [f["type"] for f in removal] == ["member.removed"]
    assert removal[0]["user_id"] == b["user"]["id"]
    # Two reads of the user's chats and one page of the kept chat's log, whatever `since` names.
    assert len(crowded) == len(plain) == 3, (plain, crowded)


async def test_an_auth_frame_naming_more_than_max_since_chats_is_an_invalid_frame(
    settings: Settings,
) -> None:
    async with live(settings) as srv:
        a = await register(srv.http)
        ws = await WsClient.open(srv.url)
        try:
            # Ids as the server makes them (what is not one is refused before counting).
            since = {f"{i:032x}": 0 for i in range(MAX_SINCE + 1)}
            await ws.conn.send(
                orjson.dumps(
                    {"type": "auth", "token": a["access_token"], "since": since, "ref": 1}
                ).decode()
            )
            error = await ws.recv()
            assert error["type"] == "error" and error["code"] == "invalid_frame", error
            assert error["ref"] == 1 and "since" in error["detail"]
            # Still open and still waiting for a good auth frame.
            since.popitem()
            await ws.send({"type": "auth", "token": a["access_token"], "since": since})
            assert (await ws.recv())["type"] == "ready"
        finally:
            await ws.conn.close()
