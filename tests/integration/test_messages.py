"""Sending, idempotency, history paging, edits, deletions, reactions, search."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.helpers import assert_problem, direct, error_fields, events, group, register, send

MESSAGE_FIELDS = {
    "id",
    "chat_id",
    "seq",
    "sender",
    "content",
    "client_id",
    "reply_to_id",
    "attachments",
    "created_at",
    "edited_at",
    "deleted",
    "reactions",
}


async def test_send(client: httpx.AsyncClient) -> None:
    a, b = await register(client, "amy"), await register(client, "bob")
    chat = await direct(client, a, b)
    r = await client.post(
        "/api/messages", json={"chat_id": chat, "content": "hello"}, headers=a["headers"]
    )
    assert r.status_code == 201
    m = r.json()
    assert set(m) == MESSAGE_FIELDS
    assert (m["seq"], m["content"], m["deleted"], m["reactions"], m["attachments"]) == (
        1,
        "hello",
        False,
        [],
        [],
    )
    assert m["sender"]["username"] == "amy" and "email" not in m["sender"]
    assert m["client_id"] is None and m["reply_to_id"] is None and m["edited_at"] is None
    log = await events(client, b, chat)
    assert log == [{"type": "message.created", "chat_id": chat, "seq": 1, "message": m}]


TRICKY = [
    "emoji 👩🏽‍💻🇺🇦 and ZWJ",
    "RTL \u202eevil\u202c and mark \u200f שלום مرحبا",
    "CJK 中文 日本語 한국어",
    "quotes \" ' ` and \\ backslash",
    "'; DROP TABLE messages; --",
    "<script>alert(1)</script>",
    "x" * 4000,
    "line\nbreaks\r\n\tand tabs inside",
    "\U0001f600" * 4000,
]


@pytest.mark.parametrize("content", TRICKY, ids=range(len(TRICKY)))
async def test_any_unicode_round_trips(client: httpx.AsyncClient, content: str) -> None:
    a, b = await register(client), await register(client)
    chat = await direct(client, a, b)
    sent = await send(client, a, chat, content)
    assert sent["content"] == content
    page = (await client.get(f"/api/messages/{chat}", headers=b["headers"])).json()
    assert page["items"][0]["content"] == content
    assert page["items"][0]["content"].encode() == content.encode()


async def test_surrounding_whitespace_is_trimmed(client: httpx.AsyncClient) -> None:
    a, b = await register(client), await register(client)
    chat = await direct(client, a, b)
    assert (await send(client, a, chat, "  padded \n"))["content"] == "padded"
    # 4000 characters after trimming is within the limit.
    assert len((await send(client, a, chat, "  " + "y" * 4000 + "  "))["content"]) == 4000


@pytest.mark.parametrize(
    ("body", "code", "field"),
    [
        ({"content": "x" * 4001}, "content_too_long", "content"),
        ({"content": "\U0001f600" * 4001}, "content_too_long", "content"),
        ({"content": ""}, "validation_error", "content"),
        ({"content": " \n\t "}, "validation_error", "content"),
        ({"content": 42}, "validation_error", "content"),
        ({"content": None}, "validation_error", "content"),
        ({"content": ["a"]}, "validation_error", "content"),
        ({"content": "nul\x00"}, "validation_error", "content"),
        ({}, "validation_error", "content"),
        ({"content": "ok", "client_id": ""}, "validation_error", "client_id"),
        ({"content": "ok", "client_id": "c" * 129}, "validation_error", "client_id"),
        ({"content": "ok", "reply_to_id": "0" * 32}, "validation_error", "reply_to_id"),
        ({"content": "ok", "unknown": 1}, "validation_error", "unknown"),
    ],
)
async def test_bad_messages_are_422_and_store_nothing(
    client: httpx.AsyncClient, body: dict[str, Any], code: str, field: str
) -> None:
    a, b = await register(client), await register(client)
    chat = await direct(client, a, b)
    r = await client.post("/api/messages", json={"chat_id": chat, **body}, headers=a["headers"])
    assert field in error_fields(assert_problem(r, 422, code))
    assert await events(client, a, chat) == []


@pytest.mark.parametrize(
    ("chat_id", "status", "code"),
    [
        ("0" * 32, 404, "chat_not_found"),
        ("nope", 422, "validation_error"),
        ("'; --", 422, "validation_error"),
        ("x" * 64, 422, "validation_error"),
    ],
)
async def test_send_to_unknown_chat_is_refused(
    client: httpx.AsyncClient, chat_id: str, status: int, code: str
) -> None:
    a = await register(client)
    r = await client.post(
        "/api/messages", json={"chat_id": chat_id, "content": "hi"}, headers=a["headers"]
    )
    assert_problem(r, status, code)


async def test_client_id_makes_sends_idempotent(client: httpx.AsyncClient) -> None:
    a, b = await register(client), await register(client)
    chat = await group(client, a, b)
    other = await group(client, a, b)
    first = await client.post(
        "/api/messages",
        json={"chat_id": chat, "content": "once", "client_id": "c-1"},
        headers=a["headers"],
    )
    retry = await client.post(
        "/api/messages",
        json={"chat_id": chat, "content": "changed?", "client_id": "c-1"},
        headers=a["headers"],
    )
    assert (first.status_code, retry.status_code) == (201, 200)
    assert retry.json() == first.json()
    # The key is (chat, sender, client_id): other senders and other chats are independent.
    theirs = await client.post(
        "/api/messages",
        json={"chat_id": chat, "content": "b", "client_id": "c-1"},
        headers=b["headers"],
    )
    elsewhere = await client.post(
        "/api/messages",
        json={"chat_id": other, "content": "o", "client_id": "c-1"},
        headers=a["headers"],
    )
    assert theirs.status_code == elsewhere.status_code == 201
    assert [e["message"]["content"] for e in await events(client, a, chat)] == ["once", "b"]


async def test_replies(client: httpx.AsyncClient) -> None:
    a, b = await register(client), await register(client)
    chat = await group(client, a, b)
    elsewhere = await group(client, a, b)
    original = await send(client, a, chat, "question?")
    foreign = await send(client, a, elsewhere, "other chat")
    reply = await send(client, b, chat, "answer", reply_to_id=original["id"])
    assert reply["reply_to_id"] == original["id"]
    r = await client.post(
        "/api/messages",
        json={"chat_id": chat, "content": "x", "reply_to_id": foreign["id"]},
        headers=b["headers"],
    )
    assert "reply_to_id" in error_fields(assert_problem(r, 422, "validation_error"))


async def test_history_pages_every_message_once(client: httpx.AsyncClient) -> None:
    a, b = await register(client), await register(client)
    chat = await group(client, a, b)
    n = 2500
    app = client._transport.app  # type: ignore[attr-defined]
    messages = app.state.services.messages
    from reverb.storage import users as user_store

    async with app.state.services.db.read() as conn:
        me = await user_store.get(conn, a["user"]["id"])
    assert me is not None
    for i in range(n):  # through the service: the HTTP round trip adds nothing to this test
        await messages.send(me=me, chat_id=chat, content=f"m{i}")

    newest = (await client.get(f"/api/messages/{chat}", headers=b["headers"])).json()
    assert len(newest["items"]) == 50 and newest["has_more"]
    assert newest["items"][-1]["content"] == f"m{n - 1}"

    backwards: list[int] = []
    page = (
        await client.get(f"/api/messages/{chat}", params={"limit": 100}, headers=b["headers"])
    ).json()
    while True:
        seqs = [m["seq"] for m in page["items"]]
        assert seqs == sorted(seqs)
        backwards = seqs + backwards
        if not page["has_more"]:
            break
        page = (
            await client.get(
                f"/api/messages/{chat}",
                params={"limit": 100, "before": seqs[0]},
                headers=b["headers"],
            )
        ).json()
    assert backwards == list(range(1, n + 1))

    forwards: list[int] = []
    after = 0
    while True:
        page = (
            await client.get(
                f"/api/messages/{chat}", params={"limit": 100, "after": after}, headers=b["headers"]
            )
        ).json()
        forwards += [m["seq"] for m in page["items"]]
        if not page["has_more"]:
            break
        after = forwards[-1]
    assert forwards == list(range(1, n + 1))


@pytest.mark.parametrize(
    "params",
    [
        {"limit": 0},
        {"limit": 101},
        {"limit": "x"},
        {"before": -1},
        {"after": -5},
        {"after": 2**40},
        {"before": "abc"},
    ],
)
async def test_bad_history_params_are_422(
    client: httpx.AsyncClient, params: dict[str, Any]
) -> None:
    a, b = await register(client), await register(client)
    chat = await direct(client, a, b)
    r = await client.get(f"/api/messages/{chat}", params=params, headers=a["headers"])
    assert_problem(r, 422, "validation_error")


async def test_edit(client: httpx.AsyncClient) -> None:
    a, b = await register(client), await register(client)
    chat = await group(client, a, b)
    m = await send(client, a, chat, "typo")
    r = await client.patch(
        f"/api/messages/{m['id']}", json={"content": "fixed"}, headers=a["headers"]
    )
    assert r.status_code == 200
    edited = r.json()
    assert (edited["content"], edited["seq"], edited["id"]) == ("fixed", m["seq"], m["id"])
    assert edited["edited_at"] is not None
    last = (await events(client, b, chat))[-1]
    assert (last["type"], last["seq"], last["message"]["content"]) == (
        "message.updated",
        2,
        "fixed",
    )
    assert_problem(
        await client.patch(
            f"/api/messages/{m['id']}", json={"content": "mine now"}, headers=b["headers"]
        ),
        403,
        "forbidden",
    )
    assert_problem(
        await client.patch(
            f"/api/messages/{m['id']}", json={"content": "x" * 4001}, headers=a["headers"]
        ),
        422,
        "content_too_long",
    )
    assert_problem(
        await client.patch(
            f"/api/messages/{m['id']}", json={"content": "  "}, headers=a["headers"]
        ),
        422,
        "validation_error",
    )
    assert_problem(
        await client.patch(f"/api/messages/{m['id']}", json={}, headers=a["headers"]),
        422,
        "validation_error",
    )
    assert_problem(
        await client.patch(
            f"/api/messages/{'0' * 32}", json={"content": "x"}, headers=a["headers"]
        ),
        404,
        "message_not_found",
    )
    page = (await client.get(f"/api/messages/{chat}", headers=b["headers"])).json()
    assert page["items"][0]["content"] == "fixed"
    await client.delete(f"/api/messages/{m['id']}", headers=a["headers"])
    assert_problem(
        await client.patch(
            f"/api/messages/{m['id']}", json={"content": "revive"}, headers=a["headers"]
        ),
        409,
        "message_deleted",
    )


async def test_delete_leaves_a_tombstone(client: httpx.AsyncClient) -> None:
    o, adm, m1, m2 = [await register(client) for _ in range(4)]
    chat = await group(client, o, adm, m1, m2)
    await client.patch(
        f"/api/chats/{chat}/members/{adm['user']['id']}",
        json={"role": "admin"},
        headers=o["headers"],
    )
    own = await send(client, m1, chat, "mine")
    theirs = await send(client, m2, chat, "theirs")
    by_owner = await send(client, m2, chat, "moderated")
    await client.put(f"/api/messages/{own['id']}/reactions/👍", headers=m2["headers"])
    assert_problem(
        await client.delete(f"/api/messages/{theirs['id']}", headers=m1["headers"]),
        403,
        "forbidden",
    )
    assert (
        await client.delete(f"/api/messages/{own['id']}", headers=m1["headers"])
    ).status_code == 204
    assert (
        await client.delete(f"/api/messages/{theirs['id']}", headers=adm["headers"])
    ).status_code == 204
    assert (
        await client.delete(f"/api/messages/{by_owner['id']}", headers=o["headers"])
    ).status_code == 204
    # Deleting again changes nothing and logs nothing.
    before = len(await events(client, o, chat))
    assert (
        await client.delete(f"/api/messages/{own['id']}", headers=m1["headers"])
    ).status_code == 204
    assert len(await events(client, o, chat)) == before
    items = (await client.get(f"/api/messages/{chat}", headers=m2["headers"])).json()["items"]
    assert [(i["deleted"], i["content"], i["reactions"]) for i in items] == [(True, "", [])] * 3
    deletions = [e for e in await events(client, o, chat) if e["type"] == "message.deleted"]
    assert [e["message_id"] for e in deletions] == [own["id"], theirs["id"], by_owner["id"]]
    assert_problem(
        await client.put(f"/api/messages/{own['id']}/reactions/👍", headers=m2["headers"]),
        409,
        "message_deleted",
    )


async def test_in_a_direct_chat_only_the_sender_deletes(client: httpx.AsyncClient) -> None:
    a, b = await register(client), await register(client)
    chat = await direct(client, a, b)
    m = await send(client, a, chat)
    assert_problem(
        await client.delete(f"/api/messages/{m['id']}", headers=b["headers"]), 403, "forbidden"
    )


async def test_reactions(client: httpx.AsyncClient) -> None:
    a, b, c = await register(client), await register(client), await register(client)
    chat = await group(client, a, b, c)
    m = await send(client, a, chat)
    path = f"/api/messages/{m['id']}/reactions"
    for who, emoji in ((b, "👍"), (c, "👍"), (c, "🎉"), (b, "👍"), (a, ":shipit:")):
        assert (await client.put(f"{path}/{emoji}", headers=who["headers"])).status_code == 204
    assert (await client.delete(f"{path}/🎉", headers=c["headers"])).status_code == 204
    assert (await client.delete(f"{path}/🎉", headers=c["headers"])).status_code == 204  # no-op
    item = (await client.get(f"/api/messages/{chat}", headers=b["headers"])).json()["items"][0]
    assert item["reactions"] == [
        {"emoji": "👍", "count": 2, "me": True},
        {"emoji": ":shipit:", "count": 1, "me": False},
    ]
    log = [e for e in await events(client, a, chat) if e["type"] == "reaction.updated"]
    assert [(e["emoji"], e["user_id"], e["added"]) for e in log] == [
        ("👍", b["user"]["id"], True),
        ("👍", c["user"]["id"], True),
        ("🎉", c["user"]["id"], True),
        (":shipit:", a["user"]["id"], True),
        ("🎉", c["user"]["id"], False),
    ]


@pytest.mark.parametrize("emoji", ["%20", "%20%20", "x" * 33, "a%0Ab", "%00"])
async def test_bad_emoji_is_422(client: httpx.AsyncClient, emoji: str) -> None:
    a, b = await register(client), await register(client)
    chat = await direct(client, a, b)
    m = await send(client, a, chat)
    r = await client.put(f"/api/messages/{m['id']}/reactions/{emoji}", headers=b["headers"])
    assert_problem(r, 422, "validation_error")
    assert len(await events(client, a, chat)) == 1


async def test_search(client: httpx.AsyncClient) -> None:
    a, b, outsider = await register(client), await register(client), await register(client)
    chat = await group(client, a, b)
    other = await direct(client, a, b)
    private = await direct(client, b, outsider)
    await send(client, a, chat, "the quick brown fox")
    best = await send(client, b, chat, "fox fox fox jumps")
    await send(client, a, other, "a fox in another chat")
    await send(client, b, private, "secret fox")
    gone = await send(client, a, chat, "deleted fox")
    await client.delete(f"/api/messages/{gone['id']}", headers=a["headers"])
    await send(client, a, chat, "Éclair CAFÉ")

    async def found(q: str, **params: Any) -> list[str]:
        r = await client.get(
            "/api/messages/search", params={"q": q, **params}, headers=a["headers"]
        )
        assert r.status_code == 200, r.text
        return [m["content"] for m in r.json()["items"]]

    results = await found("fox")
    assert set(results) == {"the quick brown fox", "fox fox fox jumps", "a fox in another chat"}
    assert results[0] == best["content"]
    assert await found("fox", chat_id=other) == ["a fox in another chat"]
    assert await found("quick fox") == ["the quick brown fox"]
    assert await found("FOX JUMPS") == ["fox fox fox jumps"]
    assert await found("café") == ["Éclair CAFÉ"]
    assert await found("secret") == []
    for hostile in ('"', "fox*", "(fox", "fox AND", "NEAR(", "-fox", "fox:1", "' OR 1=1 --", "^"):
        r = await client.get("/api/messages/search", params={"q": hostile}, headers=a["headers"])
        assert r.status_code == 200, (hostile, r.text)
    assert_problem(
        await client.get(
            "/api/messages/search", params={"q": "fox", "chat_id": private}, headers=a["headers"]
        ),
        404,
        "chat_not_found",
    )
    bad_params: list[dict[str, Any]] = [
        {},
        {"q": ""},
        {"q": "  "},
        {"q": "x" * 201},
        {"q": "fox", "limit": 0},
        {"q": "fox", "cursor": "zz"},
    ]
    for bad in bad_params:
        assert_problem(
            await client.get("/api/messages/search", params=bad, headers=a["headers"]),
            422,
            "validation_error",
        )


async def test_search_pages(client: httpx.AsyncClient) -> None:
    a, b = await register(client), await register(client)
    chat = await direct(client, a, b)
    for i in range(7):
        await send(client, a, chat, f"needle {i}")
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {
            "q": "needle",
            "limit": 3,
            **({"cursor": cursor} if cursor else {}),
        }
        page = (
            await client.get("/api/messages/search", params=params, headers=b["headers"])
        ).json()
        seen += [m["id"] for m in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == 7


async def test_former_members_lose_the_chat(client: httpx.AsyncClient) -> None:
    a, b = await register(client), await register(client)
    chat = await group(client, a, b)
    m = await send(client, a, chat, "findable words")
    await client.delete(f"/api/chats/{chat}/members/{b['user']['id']}", headers=b["headers"])
    assert (
        await client.get("/api/messages/search", params={"q": "findable"}, headers=b["headers"])
    ).json()["items"] == []
    assert_problem(
        await client.get(f"/api/messages/{chat}", headers=b["headers"]), 404, "chat_not_found"
    )
    assert_problem(
        await client.put(f"/api/messages/{m['id']}/reactions/x", headers=b["headers"]),
        404,
        "message_not_found",
    )
    assert [
        c["id"] for c in (await client.get("/api/chats", headers=b["headers"])).json()["items"]
    ] == []
