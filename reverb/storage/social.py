"""Queries on provider identities, pending provider logins and one-time login codes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from reverb.storage.tables import identities, login_codes, oauth_states


@dataclass(frozen=True, slots=True)
class PendingLogin:
    provider: str
    code_verifier: str
    nonce: str
    redirect_uri: str
    expires_at: datetime


async def add_pending(conn: AsyncConnection, state: str, pending: PendingLogin) -> None:
    await conn.execute(
        insert(oauth_states).values(
            state=state,
            provider=pending.provider,
            code_verifier=pending.code_verifier,
            nonce=pending.nonce,
            redirect_uri=pending.redirect_uri,
            expires_at=pending.expires_at,
        )
    )


async def take_pending(conn: AsyncConnection, state: str) -> PendingLogin | None:
    """The pending login of `state`, removed: a state is good for one callback."""
    s = oauth_states.c
    row = (
        await conn.execute(
            select(s.provider, s.code_verifier, s.nonce, s.redirect_uri, s.expires_at)
            .where(s.state == state)
            .with_for_update()
        )
    ).first()
    if row is None:
        return None
    await conn.execute(delete(oauth_states).where(s.state == state))
    return PendingLogin(
        row.provider, row.code_verifier, row.nonce, row.redirect_uri, row.expires_at
    )


async def prune_pending(conn: AsyncConnection, now: datetime) -> None:
    await conn.execute(delete(oauth_states).where(oauth_states.c.expires_at < now))
    await conn.execute(delete(login_codes).where(login_codes.c.expires_at < now))


async def identity_owner(conn: AsyncConnection, provider: str, subject: str) -> str | None:
    i = identities.c
    row = (
        await conn.execute(select(i.user_id).where(i.provider == provider, i.subject == subject))
    ).first()
    return str(row.user_id) if row else None


async def add_identity(
    conn: AsyncConnection, provider: str, subject: str, user_id: str, now: datetime
) -> None:
    await conn.execute(
        insert(identities).values(
            provider=provider, subject=subject, user_id=user_id, created_at=now
        )
    )


async def add_login_code(
    conn: AsyncConnection, code_hash: str, user_id: str, expires_at: datetime
) -> None:
    await conn.execute(
        insert(login_codes).values(code_hash=code_hash, user_id=user_id, expires_at=expires_at)
    )


async def take_login_code(conn: AsyncConnection, code_hash: str, now: datetime) -> str | None:
    """The user a live login code belongs to; the code is used up either way."""
    c = login_codes.c
    row = (
        await conn.execute(
            select(c.user_id, c.expires_at).where(c.code_hash == code_hash).with_for_update()
        )
    ).first()
    if row is None:
        return None
    await conn.execute(delete(login_codes).where(c.code_hash == code_hash))
    return str(row.user_id) if row.expires_at > now else None
