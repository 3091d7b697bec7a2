"""The lean read path: the access-token cache (revocations, profile changes, its hub hook) and
history pages (the number of statements, and the same JSON as the models give)."""

from __future__ import annotations

import io
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from PIL import Image
from sqlalchemy import event, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from reverb.api.deps import Services
from reverb.api.schemas import MessagePage
from reverb.app import create_app
from reverb.config import Settings
from reverb.domain.events import Envelope, SessionRevoked, encode
from reverb.logs import request_id
from reverb.realtime.bus import RECONNECTED
from reverb.realtime.bus.memory import MemoryBus
from reverb.realtime.hub import Hub
from reverb.services import views
from reverb.services.access_cache import AccessCache
from reverb.storage import messages as message_store
from reverb.storage.db import Database
from reverb.storage.tables import messages, users
from reverb.storage.types import utcnow
from tests.conftest import serve_in_process
from tests.helpers import PASSWORD, assert_problem, bearer, group, register, send

Session = dict[str, Any]


def services(client: httpx.AsyncClient) -> Services:
    app: FastAPI = client._transport.app  # type: ignore[attr-defined]
    found: Services = app.state.services
    return found


# --- the access cache -------------------------------------------------------------------------


async def test_a_revoked_token_is_refused_at_once_on_the_same_process(
    client: httpx.AsyncClient,
) -> None:
    a = await register(client)
    cache = services(client).auth.sessions
    assert (await client.get("/api/chats", headers=a["headers"])).status_code == 200
    assert cache.user(a["user"]["id"]) is not None  # served from the cache from now on
    assert (await client.post("/api/auth/logout-all", headers=a["headers"])).status_code == 204
    assert_problem(await client.get("/api/chats", headers=a["headers"]), 401, "invalid_token")

    b = await register(client)
    assert (await client.get("/api/chats", headers=b["headers"])).status_code == 200
    assert cache.user(b["user"]["id"]) is not None
    r = await client.post(
        "/api/users/me/password",
        json={"current_password": PASSWORD, "new_password": "another horse"},
        headers=b["headers"],
    )
    assert r.status_code == 204
    assert_problem(await client.get("/api/chats", headers=b["headers"]), 401, "invalid_token")


async def test_without_news_from_the_bus_a_newer_token_still_works_at_once(
    settings: Settings,
) -> None:
    """Two processes on one database whose bus does not connect them (each has its own
    in-memory bus): what a process with a silently broken subscription sees."""
    async with serve_in_process(settings) as one, serve_in_process(settings) as two:
        a = await register(one)
        # Time stands still for process two's cache: only news can make it forget.
        cache = services(two).auth.sessions = AccessCache(monotonic=lambda: 0.0)
        assert (await two.get("/api/chats", headers=a["headers"])).status_code == 200
        assert (await one.post("/api/auth/logout-all", headers=a["headers"])).status_code == 204
        # Process two never heard of it: its remembered row still says the token is good...
        assert (await two.get("/api/chats", headers=a["headers"])).status_code == 200
        assert cache.user(a["user"]["id"]) is not None
        # ...while a token issued after the revocation works there at once (newer than the
        # remembered row, so the row is read again).
        r = await one.post(
            "/api/auth/login", json={"username": a["user"]["username"], "password": PASSWORD}
        )
        again = bearer(r.json()["access_token"])
        assert (await two.get("/api/chats", headers=again)).status_code == 200
        # The row just read is the new one: the old token is refused from now on.
        assert_problem(await two.get("/api/chats", headers=a["headers"]), 401, "invalid_token")


async def test_without_news_a_remembered_row_expires(settings: Settings) -> None:
    async with serve_in_process(settings) as one, serve_in_process(settings) as two:
        a = await register(one)
        clock = [0.0]
        cache = services(two).auth.sessions = AccessCache(max_age_s=5.0, monotonic=lambda: clock[0])
        assert (await two.get("/api/chats", headers=a["headers"])).status_code == 200
        assert (await one.post("/api/auth/logout-all", headers=a["headers"])).status_code == 204
        clock[0] = 4.9
        assert (await two.get("/api/chats", headers=a["headers"])).status_code == 200
        clock[0] = 5.0
        assert_problem(await two.get("/api/chats", headers=a["headers"]), 401, "invalid_token")
        assert cache.user(a["user"]["id"]) is not None  # the row read again, remembered again


async def test_the_hub_tells_the_cache_of_revocations_and_reconnects(
    client: httpx.AsyncClient,
) -> None:
    a, b = await register(client), await register(client)
    cache = AccessCache()
    hub = Hub(MemoryBus(), services(client).chats.log_between, sessions=cache)
    for s in (a, b):
        cache.remember_user(await services(client).auth.authenticate(s["access_token"]), 0)
    hub.dispatch(
        Envelope(type="session.revoked", data=encode(SessionRevoked()), user_ids=(a["user"]["id"],))
    )
    assert cache.user(a["user"]["id"]) is None
    assert cache.user(b["user"]["id"]) is not None
    hub.dispatch(Envelope(type=RECONNECTED, data=b""))
    assert cache.user(b["user"]["id"]) is None


async def test_profile_changes_are_never_served_stale(client: httpx.AsyncClient) -> None:
    a, b = await register(client), await register(client)
    chat = await group(client, a, b)
    assert (await client.get("/api/users/me", headers=a["headers"])).status_code == 200
    r = await client.patch("/api/users/me", json={"display_name": "Renamed"}, headers=a["headers"])
    assert r.json()["display_name"] == "Renamed"
    assert (await client.get("/api/users/me", headers=a["headers"])).json()[
        "display_name"
    ] == "Renamed"
    assert (await send(client, a, chat, "after"))["sender"]["display_name"] == "Renamed"
    # An empty patch answers with the profile as stored, not as remembered.
    r = await client.patch("/api/users/me", json={}, headers=a["headers"])
    assert r.json()["display_name"] == "Renamed"
    # The avatar too.
    r = await client.put(
        "/api/users/me/avatar", files={"file": ("a.png", png(), "image/png")}, headers=a["headers"]
    )
    assert r.status_code == 200, r.text
    avatar = r.json()["avatar_url"]
    assert avatar
    assert (await send(client, a, chat, "with avatar"))["sender"]["avatar_url"] == avatar


def png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (200, 120, 40)).save(buf, "PNG")
    return buf.getvalue()


# --- history: statements ----------------------------------------------------------------------


@contextmanager
def statements_of(engine: AsyncEngine, rid: str) -> Iterator[list[str]]:
    """The statements run on behalf of the request with id `rid` (background tasks of the
    app run statements of their own, under no request id)."""
    seen: list[str] = []

    def count(conn: Connection, cursor: Any, statement: str, *_: Any) -> None:
        if request_id.get() == rid:
            seen.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", count)


async def history(
    client: httpx.AsyncClient, who: Session, chat: str, **params: Any
) -> tuple[httpx.Response, list[str]]:
    rid = uuid.uuid4().hex
    with statements_of(services(client).db.engine, rid) as seen:
        r = await client.get(
            f"/api/messages/{chat}", params=params, headers={**who["headers"], "X-Request-ID": rid}
        )
    return r, seen


async def test_a_history_page_takes_one_statement_and_two_when_empty(
    client: httpx.AsyncClient,
) -> None:
    a, b, outsider = await register(client), await register(client), await register(client)
    chat = await rich_chat(client, a, b)
    for who in (a, b, outsider):  # the access cache is warm: no statement for the token
        assert (await client.get("/api/chats", headers=who["headers"])).status_code == 200

    r, seen = await history(client, b, chat)
    assert r.status_code == 200 and len(r.json()["items"]) == 8
    assert len(seen) == 1, seen
    for params in ({"limit": 3}, {"before": 5, "limit": 2}, {"after": 2, "limit": 3}):
        r, seen = await history(client, b, chat, **params)
        assert r.status_code == 200 and r.json()["has_more"] is True
        assert len(seen) == 1, seen

    r, seen = await history(client, b, chat, before=1)  # a member's empty page
    assert r.status_code == 200 and r.json() == {"items": [], "has_more": False}
    assert len(seen) == 2, seen
    r, seen = await history(client, outsider, chat)  # not a member
    assert_problem(r, 404, "chat_not_found")
    assert len(seen) == 2, seen
    r, seen = await history(client, b, "not-an-id")
    assert_problem(r, 422, "validation_error")
    assert seen == []


# --- history: the same JSON as the models -----------------------------------------------------


async def rich_chat(client: httpx.AsyncClient, a: Session, b: Session) -> str:
    """A chat with one of everything a page can show: replies, edits, a tombstone, reactions
    by several users in a set order, attachments, awkward text, an avatar, last_seen_at."""
    r = await client.put(
        "/api/users/me/avatar", files={"file": ("a.png", png(), "image/png")}, headers=a["headers"]
    )
    assert r.status_code == 200, r.text
    chat = await group(client, a, b)
    first = await send(client, a, chat, "first")
    await send(client, b, chat, 'awkward \x01 \x1f \x7f \u2028 "quoted" \\ é 😀 \n\t end')
    await send(client, b, chat, "a reply", reply_to_id=first["id"])
    edited = await send(client, a, chat, "to be edited")
    await client.patch(
        f"/api/messages/{edited['id']}", json={"content": "edited"}, headers=a["headers"]
    )
    files = []
    for name, data, kind in (
        ("notes.txt", b"plain text", "text/plain"),
        ("pic.png", png(), "image/png"),
    ):
        up = await client.post(
            "/api/media", files={"file": (name, data, kind)}, headers=a["headers"]
        )
        assert up.status_code == 201, up.text
        files.append(up.json()["id"])
    await send(client, a, chat, "", attachment_ids=files)
    up = await client.post(
        "/api/media", files={"file": ("x.bin", b"x", "application/zip")}, headers=a["headers"]
    )
    doomed = await send(client, a, chat, "doomed", attachment_ids=[up.json()["id"]])
    await client.delete(f"/api/messages/{doomed['id']}", headers=a["headers"])
    popular = await send(client, a, chat, "popular")
    for who, emoji in ((b, "👍"), (a, "🎉"), (a, "👍"), (b, "z"), (b, "a")):
        r = await client.put(
            f"/api/messages/{popular['id']}/reactions/{emoji}", headers=who["headers"]
        )
        assert r.status_code == 204
    await send(client, b, chat, "last")
    return chat


async def expected_page(
    db: Database, chat: str, viewer_id: str, seqs: list[int], has_more: bool
) -> bytes:
    """The page as the models give it: MessageView built by `views.message_views`."""
    async with db.read() as conn:
        ids = [
            row.id
            for row in await conn.execute(
                select(messages.c.id).where(messages.c.chat_id == chat, messages.c.seq.in_(seqs))
            )
        ]
        rows = sorted((await message_store.get_many(conn, ids)).values(), key=lambda m: m.seq)
        items = await views.message_views(conn, rows, viewer_id)
    return encode(MessagePage(items=items, has_more=has_more))


Seqs = list[int]


# Message seqs have gaps (edits, deletions and reactions are events of the chat too): pages are
# given by position in the list of the chat's message seqs.
@pytest.mark.parametrize(
    ("page_of", "has_more"),
    [
        (lambda s: ({}, s), False),
        (lambda s: ({"limit": 3}, s[-3:]), True),
        (lambda s: ({"before": s[5], "limit": 2}, s[3:5]), True),
        (lambda s: ({"before": s[2]}, s[:2]), False),
        (lambda s: ({"after": s[1], "limit": 4}, s[2:6]), True),
        (lambda s: ({"after": s[4]}, s[5:]), False),
    ],
    ids=["newest", "newest-3", "before", "before-to-start", "after", "after-to-end"],
)
async def test_history_json_is_byte_for_byte_what_the_models_give(
    client: httpx.AsyncClient,
    db: Database,
    page_of: Callable[[Seqs], tuple[dict[str, int], Seqs]],
    has_more: bool,
) -> None:
    a, b = await register(client), await register(client)
    chat = await rich_chat(client, a, b)
    async with db.transaction() as tx:
        await tx.conn.execute(
            update(users).where(users.c.id == b["user"]["id"]).values(last_seen_at=utcnow())
        )
    everything = (await history(client, b, chat))[0].json()["items"]
    params, seqs = page_of([m["seq"] for m in everything])
    for viewer in (a, b):  # `me` differs per viewer
        r, _ = await history(client, viewer, chat, **params)
        assert r.status_code == 200
        assert r.headers["content-type"] == "application/json"
        page = r.json()
        assert [m["seq"] for m in page["items"]] == seqs  # the chat has the seqs assumed
        assert r.content == await expected_page(db, chat, viewer["user"]["id"], seqs, has_more)
    # The fixture has what it claims, so the comparison above covers it.
    items = everything
    assert len(items) == 8
    assert items[0]["sender"]["avatar_url"] and items[1]["sender"]["last_seen_at"]
    assert items[2]["reply_to_id"] == items[0]["id"]
    assert items[3]["edited_at"] and items[3]["content"] == "edited"
    assert [m["filename"] for m in items[4]["attachments"]] == ["notes.txt", "pic.png"]
    assert items[4]["attachments"][1]["thumbnail_url"]
    assert items[5]["deleted"] and items[5]["attachments"] == [] and items[5]["content"] == ""
    reactions = [(x["emoji"], x["count"], x["me"]) for x in items[6]["reactions"]]
    assert reactions == [("👍", 2, True), ("🎉", 1, False), ("z", 1, True), ("a", 1, True)]


def test_the_page_shape_is_documented(settings: Settings) -> None:
    schema = create_app(settings).openapi()
    get = schema["paths"]["/api/messages/{chat_id}"]["get"]
    ref = get["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    assert ref.endswith("/MessagePage")
