"""Queries on users."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import RowMapping, bindparam, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from reverb.domain.users import User
from reverb.storage.tables import users

_USER_COLUMNS = [c for c in users.c if c.name != "password_hash"]


def _user(m: RowMapping) -> User:
    return User(**{c.name: m[c.name] for c in _USER_COLUMNS})


async def insert_user(conn: AsyncConnection, **values: Any) -> None:
    await conn.execute(insert(users).values(**values))


async def get(conn: AsyncConnection, user_id: str, *, lock: bool = False) -> User | None:
    stmt = select(*_USER_COLUMNS).where(users.c.id == user_id)
    if lock:
        stmt = stmt.with_for_update()
    row = (await conn.execute(stmt)).first()
    return _user(row._mapping) if row else None


# Built once: every history page runs it.
_GET_MANY = select(*_USER_COLUMNS).where(users.c.id.in_(bindparam("ids", expanding=True)))


async def get_many(conn: AsyncConnection, user_ids: Sequence[str]) -> dict[str, User]:
    if not user_ids:
        return {}
    rows = await conn.execute(_GET_MANY, {"ids": list(set(user_ids))})
    return {u.id: u for u in (_user(r._mapping) for r in rows)}


async def find(conn: AsyncConnection, who: str, *, lock: bool = False) -> User | None:
    """The user whose id, username or e-mail is `who` (for administrators, who may give any)."""
    login = who.strip().lower()
    stmt = select(*_USER_COLUMNS).where(
        or_(users.c.id == who, users.c.username == login, users.c.email == login)
    )
    if lock:
        stmt = stmt.with_for_update()
    row = (await conn.execute(stmt)).first()
    return _user(row._mapping) if row else None


async def find_by_email(conn: AsyncConnection, email: str) -> User | None:
    row = (await conn.execute(select(*_USER_COLUMNS).where(users.c.email == email))).first()
    return _user(row._mapping) if row else None


async def list_users(conn: AsyncConnection, *, search: str | None, limit: int) -> list[User]:
    """Every account by username (disabled ones too), optionally those whose username or
    e-mail contains `search`."""
    stmt = select(*_USER_COLUMNS).order_by(users.c.username).limit(limit)
    if search:
        needle = search.strip().lower()
        stmt = stmt.where(
            or_(
                users.c.username.contains(needle, autoescape=True),
                users.c.email.contains(needle, autoescape=True),
            )
        )
    return [_user(r._mapping) for r in await conn.execute(stmt)]


async def get_with_hash_by_login(conn: AsyncConnection, login: str) -> tuple[User, str] | None:
    """The user whose username or email is `login` (already lower-cased), with the hash."""
    column = users.c.email if "@" in login else users.c.username
    row = (
        await conn.execute(select(*_USER_COLUMNS, users.c.password_hash).where(column == login))
    ).first()
    return (_user(row._mapping), row.password_hash) if row else None


async def get_hash(conn: AsyncConnection, user_id: str) -> str | None:
    row = (await conn.execute(select(users.c.password_hash).where(users.c.id == user_id))).first()
    return row.password_hash if row else None


async def taken(conn: AsyncConnection, *, username: str, email: str) -> tuple[bool, bool]:
    rows = (
        await conn.execute(
            select(users.c.username, users.c.email).where(
                or_(users.c.username == username, users.c.email == email)
            )
        )
    ).all()
    return any(r.username == username for r in rows), any(r.email == email for r in rows)


async def update_user(conn: AsyncConnection, user_id: str, **values: Any) -> None:
    await conn.execute(update(users).where(users.c.id == user_id).values(**values))


async def bump_session_version(conn: AsyncConnection, user_id: str, **values: Any) -> None:
    await conn.execute(
        update(users)
        .where(users.c.id == user_id)
        .values(session_version=users.c.session_version + 1, **values)
    )


async def search(
    conn: AsyncConnection, *, query: str, exclude_id: str, after: str | None, limit: int
) -> list[User]:
    """Username or display name containing `query` (case-folded), or email equal to it.

    Ordered by username, which is unique, so the last username of a page is the next cursor.
    """
    needle = query.lower()
    stmt = (
        select(*_USER_COLUMNS)
        .where(
            users.c.id != exclude_id,
            # Disabled and deleted accounts are not offered to start a chat with.
            users.c.disabled_at.is_(None),
            or_(
                users.c.username.contains(needle, autoescape=True),
                func.lower(users.c.display_name).contains(needle, autoescape=True),
                users.c.email == needle,
            ),
        )
        .order_by(users.c.username)
        .limit(limit)
    )
    if after is not None:
        stmt = stmt.where(users.c.username > after)
    return [_user(r._mapping) for r in await conn.execute(stmt)]
