"""The chat event log: one row per logged event, stored as the JSON that was delivered."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from reverb.storage.tables import chat_events


async def append_many(conn: AsyncConnection, rows: Sequence[dict[str, Any]]) -> None:
    """Store events: one statement executed for every row (executemany); each row has the
    columns of `chat_events`."""
    if rows:
        await conn.execute(insert(chat_events), list(rows))


@dataclass(frozen=True, slots=True)
class LoggedRow:
    seq: int
    type: str
    user_id: str | None
    data: str


async def after(
    conn: AsyncConnection, chat_id: str, after_seq: int, limit: int, *, before: int | None = None
) -> list[LoggedRow]:
    """Up to `limit` events with after_seq < seq (< before), in order."""
    e = chat_events.c
    stmt = (
        select(e.seq, e.type, e.user_id, e.data)
        .where(e.chat_id == chat_id, e.seq > after_seq)
        .order_by(e.seq)
        .limit(limit)
    )
    if before is not None:
        stmt = stmt.where(e.seq < before)
    # Positional: a resume builds thousands of these.
    return [LoggedRow(*r) for r in await conn.execute(stmt)]
