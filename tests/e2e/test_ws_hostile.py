"""Strict input on the WebSocket (issue 11, part 3): the hostile corpus (tests/hostile.py) in
every field of every client frame, against a real `reverb serve` process. Each bad frame gets one
`error` `invalid_frame` (with its `ref` where the frame could be read at all) and nothing else;
the connection stays usable and nothing stored changes. A bad auth frame is refused (4401) or
answered `invalid_frame`, never with anything worse."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed

from reverb.storage.db import Database
from tests.e2e.server import reverb_serve, server_env
from tests.e2e.wsclient import Json, WsClient
from tests.helpers import group, register, send
from tests.hostile import ANY, BY_KIND, HUGE, encode, label, not_text, snapshot
from tests.hostile import values as all_values

pytestmark = pytest.mark.e2e

# A socket's open and close set the user's last_seen_at: presence, not a client's write.
PRESENCE = frozenset({"users.last_seen_at"})
WAIT_S = 10.0  # bound on any single answer
REFUSALS = {"invalid_frame", "content_too_long"}
# Frames over 64 KiB are closed with 1009 (a test of their own); this is still longer than any
# field of a frame may be.
LONG = "x" * 20_000


def fitted(value: Any) -> Any:
    if isinstance(value, list):
        return [fitted(v) for v in value]
    return LONG if value is HUGE else value


def values(kind: str) -> list[Any]:
    return [fitted(v) for v in (ANY if kind == "any" else all_values(kind))]


def frame_cases(chat: str, message: str) -> list[tuple[Json, dict[str, str]]]:
    """Each client frame type with good values, and the kind of hostile values each field gets."""
    return [
        (
            {
                "type": "message.send",
                "chat_id": chat,
                "content": "hi",
                "client_id": "k-1",
                "reply_to_id": message,
                "attachment_ids": [],
            },
            {
                "chat_id": "id",
                "content": "text",
                "client_id": "text",
                "reply_to_id": "id",
                "attachment_ids": "ids",
            },
        ),
        ({"type": "typing", "chat_id": chat}, {"chat_id": "id"}),
        ({"type": "read", "chat_id": chat, "seq": 1}, {"chat_id": "id", "seq": "int"}),
        ({"type": "delivered", "chat_id": chat, "seq": 1}, {"chat_id": "id", "seq": "int"}),
        ({"type": "ping"}, {"type": "text"}),
    ]


async def answers_until_pong(ws: WsClient, ref: str) -> list[Json]:
    """Everything the server sends before the pong to the ping with `ref`."""
    await ws.send({"type": "ping", "ref": ref})
    out: list[Json] = []
    while (frame := await ws.recv(WAIT_S)).get("ref") != ref:
        out.append(frame)
    assert frame["type"] == "pong", frame
    return out


@dataclass
class Served:
    url: str
    a: Json  # a's session; a and b share `chat`, where a said `message`
    chat: str
    message: str


@contextlib.asynccontextmanager
async def served(tmp_path: Path, database_url: str) -> AsyncIterator[Served]:
    with reverb_serve(tmp_path, server_env(database_url)) as (url, _):
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            a, b = await register(http), await register(http)
            chat = await group(http, a, b)
            yield Served(url, a, chat, (await send(http, a, chat, "first"))["id"])


async def test_hostile_values_in_every_frame_field_are_invalid_frames(
    tmp_path: Path, database_url: str, db: Database
) -> None:
    async with served(tmp_path, database_url) as srv:
        ws = await WsClient.ready(srv.url, srv.a["access_token"])
        try:
            before = await snapshot(db, PRESENCE)
            n = 0
            for good, kinds in frame_cases(srv.chat, srv.message):
                for field, kind in {**kinds, "ref": "ref"}.items():
                    for value in values("any" if kind == "ref" else kind):
                        n += 1
                        ref = f"r{n}"
                        await ws.conn.send(encode({**good, "ref": ref, field: value}).decode())
                        got = await answers_until_pong(ws, f"p{n}")
                        what = (good["type"], field, label(value))
                        assert len(got) == 1, (what, got)
                        assert got[0]["type"] == "error", (what, got)
                        # Over-long content has a code of its own, as on REST.
                        codes = {"invalid_frame"} if not_text(value) else REFUSALS
                        assert got[0]["code"] in codes, (what, got)
                        assert got[0].get("ref") in (ref, None), (what, got)
            assert n > 300
            assert await snapshot(db, PRESENCE) == before
            # The same socket still sends: the refusals were the hostile values' doing.
            await ws.send({**frame_cases(srv.chat, srv.message)[0][0], "ref": "good"})
            ack = await ws.until(lambda f: f.get("ref") == "good", WAIT_S)
            assert ack["type"] == "ack" and ack["message"]["content"] == "hi", ack
        finally:
            await ws.close()


def auth_frames(token: str, chat: str) -> list[tuple[str, Any]]:
    """Auth frames with one hostile part each: the token, a key of `since`, a value of it."""
    keys = [fitted(v) for v in [*ANY, *BY_KIND["id"]] if isinstance(v, str)]
    return [
        *((f"token={label(v)}", {"type": "auth", "token": v}) for v in values("any")),
        *((f"key={label(v)}", {"type": "auth", "token": token, "since": {v: 1}}) for v in keys),
        *(
            (f"seq={label(v)}", {"type": "auth", "token": token, "since": {chat: v}})
            for v in values("int")
        ),
        *(
            (f"since={label(v)}", {"type": "auth", "token": token, "since": v})
            for v in values("any")
            if not isinstance(v, dict)
        ),
    ]


async def answer(ws: WsClient) -> Json | int | None:
    """The first frame the server sends, or the code it closes with."""
    try:
        return await ws.recv(WAIT_S)
    except ConnectionClosed as exc:
        return exc.rcvd.code if exc.rcvd else None


async def test_hostile_auth_frames_are_refused(
    tmp_path: Path, database_url: str, db: Database
) -> None:
    async with served(tmp_path, database_url) as srv:
        token = srv.a["access_token"]
        before = await snapshot(db, PRESENCE)
        cases = auth_frames(token, srv.chat)
        for what, frame in cases:
            ws = await WsClient.open(srv.url)
            try:
                await ws.conn.send(encode(frame).decode())
                first = await answer(ws)
                if not isinstance(first, dict):
                    assert first == 4401, what  # the close code
                    continue
                assert first["type"] == "error", (what, first)
                assert first["code"] == "invalid_frame", (what, first)
                # Still waiting for an auth frame: a good one is taken.
                await ws.send({"type": "auth", "token": token})
                assert (await ws.recv(WAIT_S))["type"] == "ready", what
            finally:
                await ws.close()
        assert len(cases) > 60
        assert await snapshot(db, PRESENCE) == before
