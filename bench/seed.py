"""Setting a Reverb server up for a run: users and chats through its API, bulk history
straight into its database (a million messages through the API would take longer than the
run itself)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import update

from reverb import ids
from reverb.config import async_database_url
from reverb.storage.db import Database
from reverb.storage.tables import chats, messages
from reverb.storage.types import utcnow

PASSWORD = "bench-password-1"
CHUNK = 5000


@dataclass(slots=True)
class Users:
    ids: list[str] = field(default_factory=list)
    tokens: list[str] = field(default_factory=list)


def register(client: httpx.Client, count: int, prefix: str) -> Users:
    users = Users()
    for i in range(count):
        name = f"{prefix}{i}"
        r = client.post(
            "/api/auth/register",
            json={"username": name, "email": f"{name}@bench.example", "password": PASSWORD},
        )
        r.raise_for_status()
        body = r.json()
        users.ids.append(body["user"]["id"])
        users.tokens.append(body["access_token"])
    return users


def group(client: httpx.Client, token: str, name: str, member_ids: list[str]) -> str:
    r = client.post(
        "/api/chats",
        json={"type": "group", "name": name, "member_ids": member_ids},
        headers={"Authorization": f"Bearer {token}"},
    )
    r.raise_for_status()
    return str(r.json()["id"])


def direct(client: httpx.Client, token: str, other: str) -> str:
    r = client.post(
        "/api/chats",
        json={"type": "direct", "user_id": other},
        headers={"Authorization": f"Bearer {token}"},
    )
    r.raise_for_status()
    return str(r.json()["id"])


def bulk_history(database_url: str, chat_id: str, sender_id: str, count: int) -> None:
    """`count` messages in the chat (seq 1..count), written in large batches."""
    asyncio.run(_bulk_history(database_url, chat_id, sender_id, count))


async def _bulk_history(database_url: str, chat_id: str, sender_id: str, count: int) -> None:
    db = Database(async_database_url(database_url))
    start = utcnow() - timedelta(days=30)
    last_id = ""
    try:
        for first in range(1, count + 1, CHUNK):
            rows: list[dict[str, Any]] = []
            for seq in range(first, min(count, first + CHUNK - 1) + 1):
                last_id = ids.new_id()
                rows.append(
                    {
                        "id": last_id,
                        "chat_id": chat_id,
                        "seq": seq,
                        "sender_id": sender_id,
                        "content": f"message {seq} of a long conversation about benchmarks",
                        "client_id": None,
                        "reply_to_id": None,
                        "created_at": start + timedelta(milliseconds=seq),
                        "edited_at": None,
                        "deleted": False,
                    }
                )
            async with db.transaction() as tx:
                await tx.conn.execute(messages.insert(), rows)
        async with db.transaction() as tx:
            await tx.conn.execute(
                update(chats)
                .where(chats.c.id == chat_id)
                .values(last_seq=count, last_message_id=last_id)
            )
    finally:
        await db.close()
