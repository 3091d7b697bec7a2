"""The chat event log: one row per logged event, stored as the JSON that was delivered."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from reverb.storage.tables import chat_events


async def append(
    conn: AsyncConnection,
    *,
    chat_id: str,
    seq: int,
    type: str,
    data: bytes,
    user_id: str | None,
    now: datetime,
) -> None:
    await conn.execute(
        insert(chat_events).values(
            chat_id=chat_id,
            seq=seq,
            type=type,
            data=data.decode(),
            user_id=user_id,
            created_at=now,
        )
    )


async def after(
    conn: AsyncConnection, chat_id: str, after_seq: int, limit: int
) -> list[tuple[int, str]]:
    """Up to `limit` events with seq > after_seq, in order, as (seq, json)."""
    e = chat_events.c
    stmt = (
        select(e.seq, e.data)
        .where(e.chat_id == chat_id, e.seq > after_seq)
        .order_by(e.seq)
        .limit(limit)
    )
    return [(int(seq), data) for seq, data in await conn.execute(stmt)]


async def last_removal(conn: AsyncConnection, chat_id: str, user_id: str) -> tuple[int, str] | None:
    """The event that last removed `user_id` from the chat, if any."""
    e = chat_events.c
    stmt = (
        select(e.seq, e.data)
        .where(e.chat_id == chat_id, e.user_id == user_id, e.type == "member.removed")
        .order_by(e.seq.desc())
        .limit(1)
    )
    row = (await conn.execute(stmt)).first()
    return (int(row[0]), row[1]) if row else None
