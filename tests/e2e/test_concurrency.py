"""Many concurrent senders across two real server processes sharing one database."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.server import reverb_serve, server_env
from tests.helpers import PASSWORD, events

pytestmark = pytest.mark.e2e

SENDERS = 20
PER_SENDER = 50


async def _register(http: httpx.AsyncClient, name: str) -> dict[str, Any]:
    r = await http.post(
        "/api/auth/register",
        json={"username": name, "email": f"{name}@example.com", "password": PASSWORD},
    )
    assert r.status_code == 201, r.text
    session: dict[str, Any] = r.json()
    session["headers"] = {"Authorization": f"Bearer {session['access_token']}"}
    return session


async def _world(urls: list[str]) -> tuple[list[httpx.AsyncClient], list[dict[str, Any]], str]:
    clients = [httpx.AsyncClient(base_url=u, timeout=60) for u in urls]
    users = [await _register(clients[i % len(clients)], f"sender{i:02d}") for i in range(SENDERS)]
    r = await clients[0].post(
        "/api/chats",
        json={"type": "group", "name": "busy", "member_ids": [u["user"]["id"] for u in users[1:]]},
        headers=users[0]["headers"],
    )
    assert r.status_code == 201, r.text
    return clients, users, str(r.json()["id"])


async def _concurrent_senders(urls: list[str]) -> None:
    clients, users, chat = await _world(urls)
    try:

        async def sender(i: int) -> list[int]:
            http = clients[i % len(clients)]
            seqs = []
            for n in range(PER_SENDER):
                r = await http.post(
                    "/api/messages",
                    json={"chat_id": chat, "content": f"{i}:{n}", "client_id": f"{i}-{n}"},
                    headers=users[i]["headers"],
                )
                assert r.status_code == 201, r.text
                seqs.append(r.json()["seq"])
            return seqs

        per_sender = await asyncio.gather(*(sender(i) for i in range(SENDERS)))
        total = SENDERS * PER_SENDER
        # Each sender's own messages are in the order it sent them.
        assert all(s == sorted(s) for s in per_sender)
        assert sorted(seq for s in per_sender for seq in s) == list(range(1, total + 1))
        log = await events(clients[1], users[1], chat)
        assert [e["seq"] for e in log] == list(range(1, total + 1))
        assert {e["message"]["content"] for e in log} == {
            f"{i}:{n}" for i in range(SENDERS) for n in range(PER_SENDER)
        }
        chat_view = (await clients[0].get(f"/api/chats/{chat}", headers=users[0]["headers"])).json()
        assert chat_view["last_seq"] == total
    finally:
        for c in clients:
            await c.aclose()


async def _same_client_id_at_once(urls: list[str]) -> None:
    clients, users, chat = await _world(urls)
    try:
        body = {"chat_id": chat, "content": "only once", "client_id": "retry-me"}
        answers = await asyncio.gather(
            *(
                clients[i % len(clients)].post(
                    "/api/messages", json=body, headers=users[0]["headers"]
                )
                for i in range(20)
            )
        )
        assert sorted(r.status_code for r in answers) == [200] * 19 + [201]
        assert len({r.json()["id"] for r in answers}) == 1
        log = await events(clients[0], users[0], chat)
        assert [e["type"] for e in log] == ["message.created"]
        page = (await clients[1].get(f"/api/messages/{chat}", headers=users[1]["headers"])).json()
        assert [m["content"] for m in page["items"]] == ["only once"]
    finally:
        for c in clients:
            await c.aclose()


def test_concurrent_senders_get_gap_free_seqs(tmp_path: Path, database_url: str) -> None:
    env = server_env(database_url)
    with reverb_serve(tmp_path, env) as (a, _), reverb_serve(tmp_path, env) as (b, _):
        asyncio.run(_concurrent_senders([a, b]))


def test_same_client_id_sent_at_once_is_stored_once(tmp_path: Path, database_url: str) -> None:
    env = server_env(database_url)
    with reverb_serve(tmp_path, env) as (a, _), reverb_serve(tmp_path, env) as (b, _):
        asyncio.run(_same_client_id_at_once([a, b]))
