"""Queries on mailed codes (e-mail verification, password reset)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from reverb.storage.tables import email_codes as c


@dataclass(frozen=True, slots=True)
class CodeRow:
    code_hash: str
    attempts: int
    created_at: datetime
    expires_at: datetime


async def get(
    conn: AsyncConnection, user_id: str, purpose: str, *, lock: bool = False
) -> CodeRow | None:
    stmt = select(c.c.code_hash, c.c.attempts, c.c.created_at, c.c.expires_at).where(
        c.c.user_id == user_id, c.c.purpose == purpose
    )
    if lock:
        stmt = stmt.with_for_update()
    row = (await conn.execute(stmt)).first()
    return CodeRow(row.code_hash, row.attempts, row.created_at, row.expires_at) if row else None


async def replace(
    conn: AsyncConnection,
    user_id: str,
    purpose: str,
    *,
    code_hash: str,
    now: datetime,
    expires_at: datetime,
) -> None:
    """The user's new code for `purpose`; any earlier one stops working."""
    await remove(conn, user_id, purpose)
    await conn.execute(
        insert(c).values(
            user_id=user_id,
            purpose=purpose,
            code_hash=code_hash,
            attempts=0,
            created_at=now,
            expires_at=expires_at,
        )
    )


async def count_attempt(conn: AsyncConnection, user_id: str, purpose: str) -> None:
    await conn.execute(
        update(c)
        .where(c.c.user_id == user_id, c.c.purpose == purpose)
        .values(attempts=c.c.attempts + 1)
    )


async def remove(conn: AsyncConnection, user_id: str, purpose: str) -> None:
    await conn.execute(delete(c).where(c.c.user_id == user_id, c.c.purpose == purpose))


async def remove_all(conn: AsyncConnection, user_id: str) -> None:
    await conn.execute(delete(c).where(c.c.user_id == user_id))
