"""DELETE /api/users/me: the person goes, their messages stay, shown from "Deleted user"."""

from __future__ import annotations

import io

import httpx
from PIL import Image

from tests.helpers import PASSWORD, assert_problem, direct, events, group, register, send


def png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), "red").save(out, "PNG")
    return out.getvalue()


async def delete_me(client: httpx.AsyncClient, who: dict, password: str) -> httpx.Response:  # type: ignore[type-arg]
    return await client.request(
        "DELETE", "/api/users/me", json={"password": password}, headers=who["headers"]
    )


async def test_a_wrong_password_changes_nothing(client: httpx.AsyncClient) -> None:
    ann = await register(client, "ann")
    assert_problem(await delete_me(client, ann, "not the password"), 403, "invalid_credentials")
    me = await client.get("/api/users/me", headers=ann["headers"])
    assert me.status_code == 200 and me.json()["username"] == "ann"
    assert_problem(
        await client.request("DELETE", "/api/users/me", json={}, headers=ann["headers"]),
        422,
        "validation_error",
    )


async def test_deleting_an_owner_of_groups(client: httpx.AsyncClient) -> None:
    ann, ben, cat = [await register(client, n) for n in ("ann", "ben", "cat")]
    team = await group(client, ann, ben, cat)
    r = await client.patch(
        f"/api/chats/{team}/members/{ben['user']['id']}",
        json={"role": "admin"},
        headers=ann["headers"],
    )
    assert r.status_code == 200, r.text
    pair = await direct(client, ann, cat)
    said = await send(client, ann, team, "hello team")
    await send(client, ann, pair, "hello cat")
    avatar = await client.put(
        "/api/users/me/avatar",
        files={"file": ("a.png", png(), "image/png")},
        headers=ann["headers"],
    )
    avatar_url = avatar.json()["avatar_url"]
    attached = (
        await client.post(
            "/api/media", files={"file": ("k.txt", b"kept", "text/plain")}, headers=ann["headers"]
        )
    ).json()
    await send(client, ann, team, "with a file", attachment_ids=[attached["id"]])
    loose = (
        await client.post(
            "/api/media", files={"file": ("l.txt", b"loose", "text/plain")}, headers=ann["headers"]
        )
    ).json()

    r = await delete_me(client, ann, PASSWORD)
    assert r.status_code == 204

    assert_problem(await client.get("/api/users/me", headers=ann["headers"]), 401, "invalid_token")
    refresh = await client.post("/api/auth/refresh", json={"refresh_token": ann["refresh_token"]})
    assert_problem(refresh, 401, "invalid_token")
    login = await client.post("/api/auth/login", json={"username": "ann", "password": PASSWORD})
    assert_problem(login, 401, "invalid_credentials")

    # The group goes on: Ben (the admin) owns it now, and the log says so in order.
    log = await events(client, ben, team)
    removed = [e for e in log if e["type"] == "member.removed"]
    handed = [e for e in log if e["type"] == "member.updated" and e["role"] == "owner"]
    assert removed[-1]["user_id"] == ann["user"]["id"]
    assert handed[-1]["user_id"] == ben["user"]["id"] and handed[-1]["seq"] > removed[-1]["seq"]
    members = (await client.get(f"/api/chats/{team}/members", headers=ben["headers"])).json()
    assert {m["user"]["username"]: m["role"] for m in members["items"]} == {
        "ben": "owner",
        "cat": "member",
    }

    # Messages stay, from "Deleted user"; the direct chat stays for Cat.
    history = (await client.get(f"/api/messages/{team}", headers=cat["headers"])).json()["items"]
    first = next(m for m in history if m["id"] == said["id"])
    assert first["content"] == "hello team"
    assert first["sender"]["display_name"] == "Deleted user"
    assert (
        first["sender"]["username"].startswith("deleted-") and first["sender"]["avatar_url"] is None
    )
    chats = (await client.get("/api/chats", headers=cat["headers"])).json()["items"]
    assert pair in {c["id"] for c in chats}

    # Files: the avatar and the loose upload are gone, the attached one stays.
    assert (await client.get(avatar_url)).status_code == 404
    assert (await client.get(loose["url"])).status_code == 404
    kept = await client.get(attached["url"])
    assert kept.status_code == 200 and kept.content == b"kept"

    # Not offered in search; the name and address are free again.
    found = (
        await client.get("/api/users", params={"search": "deleted"}, headers=cat["headers"])
    ).json()
    assert found["items"] == []
    again = await register(client, "ann")
    assert again["user"]["id"] != ann["user"]["id"]
