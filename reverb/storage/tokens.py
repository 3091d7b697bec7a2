"""Queries on refresh tokens and on recorded login failures."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from reverb.storage.tables import login_failures, refresh_tokens


@dataclass(frozen=True, slots=True)
class RefreshTokenRow:
    id: str
    user_id: str
    family_id: str
    expires_at: datetime
    rotated_at: datetime | None
    revoked_at: datetime | None


async def insert_refresh(
    conn: AsyncConnection,
    *,
    id: str,
    user_id: str,
    family_id: str,
    token_hash: str,
    now: datetime,
    expires_at: datetime,
) -> None:
    await conn.execute(
        insert(refresh_tokens).values(
            id=id,
            user_id=user_id,
            family_id=family_id,
            token_hash=token_hash,
            created_at=now,
            expires_at=expires_at,
        )
    )


async def find_refresh(conn: AsyncConnection, token_hash: str) -> RefreshTokenRow | None:
    t = refresh_tokens.c
    row = (
        await conn.execute(
            select(t.id, t.user_id, t.family_id, t.expires_at, t.rotated_at, t.revoked_at).where(
                t.token_hash == token_hash
            )
        )
    ).first()
    return RefreshTokenRow(*row) if row else None


async def mark_rotated(conn: AsyncConnection, token_id: str, now: datetime) -> bool:
    """Claim a live token for rotation; False when a concurrent request claimed it first."""
    t = refresh_tokens.c
    result = await conn.execute(
        update(refresh_tokens)
        .where(t.id == token_id, t.rotated_at.is_(None), t.revoked_at.is_(None))
        .values(rotated_at=now)
    )
    return result.rowcount == 1


async def revoke_family(conn: AsyncConnection, family_id: str, now: datetime) -> None:
    t = refresh_tokens.c
    await conn.execute(
        update(refresh_tokens)
        .where(t.family_id == family_id, t.revoked_at.is_(None))
        .values(revoked_at=now)
    )


async def revoke_user(conn: AsyncConnection, user_id: str, now: datetime) -> None:
    t = refresh_tokens.c
    await conn.execute(
        update(refresh_tokens)
        .where(t.user_id == user_id, t.revoked_at.is_(None))
        .values(revoked_at=now)
    )


async def record_failure(
    conn: AsyncConnection, *, account_key: str, address: str, now: datetime
) -> None:
    await conn.execute(
        insert(login_failures).values(account_key=account_key, address=address, created_at=now)
    )


async def failures_since(
    conn: AsyncConnection, *, account_key: str, address: str, since: datetime
) -> tuple[int, datetime | None, int, datetime | None]:
    """(count, oldest) of failures for the account and for the address since `since`."""
    f = login_failures.c
    by_account = (
        await conn.execute(
            select(func.count(), func.min(f.created_at)).where(
                f.account_key == account_key, f.created_at > since
            )
        )
    ).one()
    by_address = (
        await conn.execute(
            select(func.count(), func.min(f.created_at)).where(
                f.address == address, f.created_at > since
            )
        )
    ).one()
    return by_account[0], by_account[1], by_address[0], by_address[1]


async def clear_account_failures(conn: AsyncConnection, account_key: str) -> None:
    await conn.execute(delete(login_failures).where(login_failures.c.account_key == account_key))


async def prune_failures(conn: AsyncConnection, before: datetime) -> None:
    await conn.execute(delete(login_failures).where(login_failures.c.created_at <= before))
