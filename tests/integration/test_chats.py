"""Direct and group chats, membership and roles, read markers, the chat list."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import event

from tests.helpers import assert_problem, direct, events, group, register, send

CHAT_FIELDS = {
    "id",
    "type",
    "name",
    "description",
    "member_count",
    "peer",
    "my_role",
    "last_seq",
    "last_read_seq",
    "unread_count",
    "last_message",
    "created_at",
    "updated_at",
}


async def test_direct_chat_is_access_or_create(client: httpx.AsyncClient) -> None:
    a, b = await register(client, "ann"), await register(client, "ben")
    first = await client.post(
        "/api/chats", json={"type": "direct", "user_id": b["user"]["id"]}, headers=a["headers"]
    )
    assert first.status_code == 201
    chat = first.json()
    assert set(chat) == CHAT_FIELDS
    assert chat["type"] == "direct" and chat["member_count"] == 2 and chat["last_seq"] == 0
    assert chat["peer"]["id"] == b["user"]["id"] and chat["my_role"] == "member"
    again = await client.post(
        "/api/chats", json={"type": "direct", "user_id": b["user"]["id"]}, headers=a["headers"]
    )
    other_way = await client.post(
        "/api/chats", json={"type": "direct", "user_id": a["user"]["id"]}, headers=b["headers"]
    )
    assert again.status_code == other_way.status_code == 200
    assert again.json()["id"] == other_way.json()["id"] == chat["id"]
    assert other_way.json()["peer"]["id"] == a["user"]["id"]


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"type": "direct", "user_id": "SELF"}, 422, "validation_error"),
        ({"type": "direct", "user_id": "0" * 32}, 404, "user_not_found"),
        ({"type": "direct", "user_id": "not-an-id"}, 422, "validation_error"),
        ({"type": "direct"}, 422, "validation_error"),
        ({"type": "direct", "user_id": 7}, 422, "validation_error"),
        ({"type": "channel", "name": "x"}, 422, "validation_error"),
        ({"name": "no type"}, 422, "validation_error"),
        ({"type": "group"}, 422, "validation_error"),
        ({"type": "group", "name": "   "}, 422, "validation_error"),
        ({"type": "group", "name": "x" * 101}, 422, "validation_error"),
        ({"type": "group", "name": "two\nlines"}, 422, "validation_error"),
        ({"type": "group", "name": "ok", "description": "d" * 1001}, 422, "validation_error"),
        ({"type": "group", "name": "ok", "member_ids": ["0" * 32]}, 422, "validation_error"),
        ({"type": "group", "name": "ok", "member_ids": "notalist"}, 422, "validation_error"),
        ({"type": "group", "name": "ok", "extra": 1}, 422, "validation_error"),
    ],
)
async def test_bad_chat_creation(
    client: httpx.AsyncClient, body: dict[str, Any], status: int, code: str
) -> None:
    me = await register(client)
    if body.get("user_id") == "SELF":
        body = {**body, "user_id": me["user"]["id"]}
    assert_problem(await client.post("/api/chats", json=body, headers=me["headers"]), status, code)
    assert (await client.get("/api/chats", headers=me["headers"])).json()["items"] == []


async def test_group_creation(client: httpx.AsyncClient) -> None:
    o, m1, m2 = (
        await register(client, "own"),
        await register(client, "mem1"),
        await register(client, "mem2"),
    )
    r = await client.post(
        "/api/chats",
        json={
            "type": "group",
            "name": " Ops 🚀 ",
            "description": "on call",
            "member_ids": [m1["user"]["id"], m2["user"]["id"], m1["user"]["id"], o["user"]["id"]],
        },
        headers=o["headers"],
    )
    assert r.status_code == 201
    chat = r.json()
    assert chat["name"] == "Ops 🚀" and chat["description"] == "on call"
    assert chat["member_count"] == 3 and chat["my_role"] == "owner" and chat["peer"] is None
    assert chat["last_seq"] == 0 and await events(client, o, chat["id"]) == []
    seen = (await client.get(f"/api/chats/{chat['id']}", headers=m1["headers"])).json()
    assert seen["my_role"] == "member"
    members = (await client.get(f"/api/chats/{chat['id']}/members", headers=m2["headers"])).json()
    roles = {m["user"]["username"]: m["role"] for m in members["items"]}
    assert roles == {"own": "owner", "mem1": "member", "mem2": "member"}
    assert all(
        {"last_read_seq", "last_delivered_seq", "joined_at"} <= set(m) for m in members["items"]
    )
    assert all("email" not in m["user"] for m in members["items"])


async def test_rename_and_describe(client: httpx.AsyncClient) -> None:
    o, a, m = await register(client), await register(client), await register(client)
    chat = await group(client, o, a, m)
    await client.patch(
        f"/api/chats/{chat}/members/{a['user']['id']}", json={"role": "admin"}, headers=o["headers"]
    )
    r = await client.patch(f"/api/chats/{chat}", json={"name": "New"}, headers=a["headers"])
    assert r.status_code == 200 and r.json()["name"] == "New"
    r = await client.patch(
        f"/api/chats/{chat}", json={"description": "about"}, headers=o["headers"]
    )
    assert r.json()["description"] == "about" and r.json()["name"] == "New"
    assert_problem(
        await client.patch(f"/api/chats/{chat}", json={"name": "Mine"}, headers=m["headers"]),
        403,
        "forbidden",
    )
    assert_problem(
        await client.patch(f"/api/chats/{chat}", json={"name": ""}, headers=o["headers"]),
        422,
        "validation_error",
    )
    log = await events(client, o, chat)
    updates = [e for e in log if e["type"] == "chat.updated"]
    assert [e["chat"]["name"] for e in updates] == ["New", "New"]
    assert (
        updates[1]["chat"]["description"] == "about"
        and updates[1]["chat"]["last_seq"] == updates[1]["seq"]
    )
    # An unchanged name is no change: nothing is logged.
    await client.patch(f"/api/chats/{chat}", json={"name": "New"}, headers=o["headers"])
    assert len(await events(client, o, chat)) == len(log)


async def test_direct_chats_cannot_change(client: httpx.AsyncClient) -> None:
    a, b, c = await register(client), await register(client), await register(client)
    chat = await direct(client, a, b)
    for r in (
        await client.patch(f"/api/chats/{chat}", json={"name": "x"}, headers=a["headers"]),
        await client.post(
            f"/api/chats/{chat}/members", json={"user_id": c["user"]["id"]}, headers=a["headers"]
        ),
        await client.delete(f"/api/chats/{chat}/members/{b['user']['id']}", headers=a["headers"]),
        await client.delete(f"/api/chats/{chat}/members/{a['user']['id']}", headers=a["headers"]),
        await client.patch(
            f"/api/chats/{chat}/members/{b['user']['id']}",
            json={"role": "admin"},
            headers=a["headers"],
        ),
    ):
        assert_problem(r, 409, "not_a_group")
    assert (await client.get(f"/api/chats/{chat}", headers=b["headers"])).json()[
        "member_count"
    ] == 2


async def test_add_member(client: httpx.AsyncClient) -> None:
    o, m, new = await register(client), await register(client), await register(client)
    chat = await group(client, o, m)
    await send(client, o, chat, "before you came")
    r = await client.post(
        f"/api/chats/{chat}/members", json={"user_id": new["user"]["id"]}, headers=o["headers"]
    )
    assert r.status_code == 201
    assert r.json()["user"]["id"] == new["user"]["id"] and r.json()["role"] == "member"
    view = (await client.get(f"/api/chats/{chat}", headers=new["headers"])).json()
    assert view["member_count"] == 3 and view["last_seq"] == 2
    added = (await events(client, new, chat))[-1]
    assert added == {
        "type": "member.added",
        "chat_id": chat,
        "seq": 2,
        "user": added["user"],
        "role": "member",
    }
    assert added["user"]["id"] == new["user"]["id"]
    again = await client.post(
        f"/api/chats/{chat}/members", json={"user_id": new["user"]["id"]}, headers=o["headers"]
    )
    assert_problem(again, 409, "already_member")
    unknown = await client.post(
        f"/api/chats/{chat}/members", json={"user_id": "0" * 32}, headers=o["headers"]
    )
    assert_problem(unknown, 404, "user_not_found")
    assert_problem(
        await client.post(f"/api/chats/{chat}/members", json={}, headers=o["headers"]),
        422,
        "validation_error",
    )


async def test_roles(client: httpx.AsyncClient) -> None:
    o, a, m = await register(client), await register(client), await register(client)
    chat = await group(client, o, a, m)
    path = f"/api/chats/{chat}/members/{a['user']['id']}"
    r = await client.patch(path, json={"role": "admin"}, headers=o["headers"])
    assert r.status_code == 200 and r.json()["role"] == "admin"
    assert_problem(
        await client.patch(
            f"/api/chats/{chat}/members/{m['user']['id']}",
            json={"role": "admin"},
            headers=a["headers"],
        ),
        403,
        "forbidden",
    )
    assert_problem(
        await client.patch(
            f"/api/chats/{chat}/members/{o['user']['id']}",
            json={"role": "member"},
            headers=o["headers"],
        ),
        409,
        "conflict",
    )
    for bad in ({"role": "owner"}, {"role": "god"}, {}, {"role": None}):
        assert_problem(
            await client.patch(path, json=bad, headers=o["headers"]), 422, "validation_error"
        )
    assert_problem(
        await client.patch(
            f"/api/chats/{chat}/members/{'0' * 32}", json={"role": "admin"}, headers=o["headers"]
        ),
        404,
        "member_not_found",
    )
    log = await events(client, o, chat)
    assert [(e["type"], e["user_id"], e["role"]) for e in log] == [
        ("member.updated", a["user"]["id"], "admin")
    ]


async def test_remove_and_leave(client: httpx.AsyncClient) -> None:
    o, a1, a2, m1, m2 = [await register(client) for _ in range(5)]
    chat = await group(client, o, a1, a2, m1, m2)
    for a in (a1, a2):
        await client.patch(
            f"/api/chats/{chat}/members/{a['user']['id']}",
            json={"role": "admin"},
            headers=o["headers"],
        )

    def rm(actor: dict[str, Any], target: dict[str, Any]) -> Any:
        return client.delete(
            f"/api/chats/{chat}/members/{target['user']['id']}", headers=actor["headers"]
        )

    assert_problem(await rm(m1, m2), 403, "forbidden")  # members cannot remove others
    assert_problem(await rm(a1, a2), 403, "forbidden")  # admins remove members only
    assert_problem(await rm(a1, o), 403, "forbidden")
    assert (await rm(a1, m2)).status_code == 204
    assert_problem(await rm(a1, m2), 404, "member_not_found")
    assert_problem(
        await client.get(f"/api/chats/{chat}", headers=m2["headers"]), 404, "chat_not_found"
    )
    assert (await rm(m1, m1)).status_code == 204  # leaving
    assert (await rm(o, a2)).status_code == 204
    # The owner leaves: the longest-standing admin becomes owner.
    assert (await rm(o, o)).status_code == 204
    members = (await client.get(f"/api/chats/{chat}/members", headers=a1["headers"])).json()[
        "items"
    ]
    assert [(x["user"]["id"], x["role"]) for x in members] == [(a1["user"]["id"], "owner")]
    tail = (await events(client, a1, chat))[-2:]
    assert [(e["type"], e["user_id"]) for e in tail] == [
        ("member.removed", o["user"]["id"]),
        ("member.updated", a1["user"]["id"]),
    ]
    assert tail[1]["role"] == "owner"


async def test_owner_leaving_without_admins_hands_to_longest_member(
    client: httpx.AsyncClient,
) -> None:
    o, m1, m2 = [await register(client) for _ in range(3)]
    chat = await group(client, o, m1)
    await client.post(
        f"/api/chats/{chat}/members", json={"user_id": m2["user"]["id"]}, headers=o["headers"]
    )
    assert (
        await client.delete(f"/api/chats/{chat}/members/{o['user']['id']}", headers=o["headers"])
    ).status_code == 204
    roles = {
        x["user"]["id"]: x["role"]
        for x in (await client.get(f"/api/chats/{chat}/members", headers=m2["headers"])).json()[
            "items"
        ]
    }
    assert roles == {m1["user"]["id"]: "owner", m2["user"]["id"]: "member"}


async def test_read_markers_never_move_backwards(client: httpx.AsyncClient) -> None:
    a, b = await register(client), await register(client)
    chat = await group(client, a, b)
    for i in range(3):
        await send(client, a, chat, f"m{i}")

    async def state() -> tuple[int, int]:
        c = (await client.get(f"/api/chats/{chat}", headers=b["headers"])).json()
        return c["last_read_seq"], c["unread_count"]

    assert await state() == (0, 3)
    assert (
        await client.post(f"/api/chats/{chat}/read", json={"seq": 2}, headers=b["headers"])
    ).status_code == 204
    assert await state() == (2, 1)
    await client.post(f"/api/chats/{chat}/read", json={"seq": 1}, headers=b["headers"])
    assert await state() == (2, 1)
    await client.post(f"/api/chats/{chat}/read", json={"seq": 999}, headers=b["headers"])
    assert await state() == (3, 0)  # clamped to last_seq
    members = (await client.get(f"/api/chats/{chat}/members", headers=a["headers"])).json()["items"]
    mine = next(m for m in members if m["user"]["id"] == b["user"]["id"])
    assert mine["last_read_seq"] == 3 and mine["last_delivered_seq"] == 3
    # The sender's own messages are never unread for them.
    assert (await client.get(f"/api/chats/{chat}", headers=a["headers"])).json()[
        "unread_count"
    ] == 0
    for bad in ({"seq": -1}, {"seq": "x"}, {}, {"seq": 2**40}, {"seq": 1.5}):
        assert_problem(
            await client.post(f"/api/chats/{chat}/read", json=bad, headers=b["headers"]),
            422,
            "validation_error",
        )


async def test_delivered_markers(client: httpx.AsyncClient) -> None:
    a, b = await register(client), await register(client)
    chat = await group(client, a, b)
    await send(client, a, chat)
    await send(client, a, chat)
    await client.post(f"/api/chats/{chat}/delivered", json={"seq": 2}, headers=b["headers"])
    await client.post(f"/api/chats/{chat}/delivered", json={"seq": 1}, headers=b["headers"])
    members = (await client.get(f"/api/chats/{chat}/members", headers=a["headers"])).json()["items"]
    mine = next(m for m in members if m["user"]["id"] == b["user"]["id"])
    assert (mine["last_delivered_seq"], mine["last_read_seq"]) == (2, 0)


async def test_chat_list_order_and_paging(client: httpx.AsyncClient) -> None:
    me, other = await register(client), await register(client)
    chats = [await group(client, me, other, name=f"g{i}") for i in range(5)]
    await send(client, other, chats[1], "bump")
    listed = (await client.get("/api/chats", headers=me["headers"])).json()
    ids = [c["id"] for c in listed["items"]]
    assert ids[0] == chats[1]
    assert set(ids) == set(chats) and listed["next_cursor"] is None
    first = listed["items"][0]
    assert first["unread_count"] == 1 and first["last_message"]["content"] == "bump"
    paged: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await client.get("/api/chats", params=params, headers=me["headers"])).json()
        paged += [c["id"] for c in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert paged == ids
    for bad in (
        {"limit": 0},
        {"limit": 101},
        {"cursor": "!!"},
        {"cursor": "bm9wZQ"},
        {"cursor": "WzEsMl0"},
    ):
        assert_problem(
            await client.get("/api/chats", params=bad, headers=me["headers"]),
            422,
            "validation_error",
        )


async def test_chat_list_has_no_query_per_chat(client: httpx.AsyncClient) -> None:
    me = await register(client)
    peers = [await register(client) for _ in range(12)]
    app = client._transport.app  # type: ignore[attr-defined]
    engine = app.state.services.db.engine.sync_engine
    statements: list[str] = []

    def count(*args: Any) -> None:
        statements.append(str(args[2]))

    async def statements_for_list() -> int:
        statements.clear()
        event.listen(engine, "before_cursor_execute", count)
        try:
            assert (await client.get("/api/chats", headers=me["headers"])).status_code == 200
        finally:
            event.remove(engine, "before_cursor_execute", count)
        return len(statements)

    await direct(client, me, peers[0])
    chat = await group(client, me, peers[1])
    await send(client, peers[1], chat)
    few = await statements_for_list()
    for p in peers[2:]:
        c = await direct(client, me, p)
        await send(client, p, c, "hello")
        g = await group(client, p, me)
        await send(client, p, g, "hey")
    many = await statements_for_list()
    assert many == few, (few, many)
