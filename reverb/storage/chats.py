"""Queries on chats and their members."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Integer,
    Text,
    and_,
    bindparam,
    case,
    cast,
    delete,
    func,
    insert,
    null,
    or_,
    select,
    union_all,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql import Select

from reverb.storage.events import LoggedRow
from reverb.storage.keys import key_params, key_table
from reverb.storage.tables import chat_events, chat_members, chats, messages


@dataclass(frozen=True, slots=True)
class ChatRow:
    id: str
    type: str
    name: str | None
    description: str
    direct_key: str | None
    last_seq: int
    last_message_id: str | None
    created_at: datetime
    updated_at: datetime
    last_activity_at: datetime


@dataclass(frozen=True, slots=True)
class MemberRow:
    chat_id: str
    user_id: str
    role: str
    joined_at: datetime
    last_read_seq: int
    last_delivered_seq: int


_CHAT = list(chats.c)
_MEMBER = list(chat_members.c)


def _chat(row: Any) -> ChatRow:
    return ChatRow(**{c.name: row._mapping[c.name] for c in _CHAT})


def _member(row: Any) -> MemberRow:
    return MemberRow(**{c.name: row._mapping[c.name] for c in _MEMBER})


async def insert_chat(conn: AsyncConnection, **values: Any) -> None:
    await conn.execute(insert(chats).values(**values))


async def insert_members(conn: AsyncConnection, rows: Sequence[dict[str, Any]]) -> None:
    if rows:
        await conn.execute(insert(chat_members), list(rows))


async def get(conn: AsyncConnection, chat_id: str) -> ChatRow | None:
    row = (await conn.execute(select(*_CHAT).where(chats.c.id == chat_id))).first()
    return _chat(row) if row else None


async def lock(conn: AsyncConnection, chat_id: str) -> ChatRow | None:
    """Read the chat and hold its row lock to the end of the transaction (PostgreSQL; SQLite
    writers are serialised by BEGIN IMMEDIATE). Every writer of a chat takes this lock first,
    so they queue in one order and never deadlock."""
    stmt = select(*_CHAT).where(chats.c.id == chat_id).with_for_update()
    row = (await conn.execute(stmt)).first()
    return _chat(row) if row else None


async def lock_many(
    conn: AsyncConnection, chat_ids: Sequence[str], *, wait: bool = True
) -> set[str]:
    """`lock` for several chats at once, taken in id order so that two writers locking
    overlapping sets queue instead of deadlocking; the ids locked. With `wait` false, rows
    another transaction holds are skipped rather than waited for: missing from the answer like
    chats that do not exist (`existing` tells them apart).

    FOR NO KEY UPDATE: the lock the UPDATE of `last_seq` takes anyway. It queues every writer
    of the chat as `lock` does, without blocking the foreign-key checks of rows that merely
    refer to the chat."""
    if not chat_ids:
        return set()
    stmt = (
        select(chats.c.id)
        .where(chats.c.id.in_(set(chat_ids)))
        .order_by(chats.c.id)
        .with_for_update(key_share=True, skip_locked=not wait)
    )
    return set((await conn.execute(stmt)).scalars())


async def existing(conn: AsyncConnection, chat_ids: Sequence[str]) -> set[str]:
    """Which of these chats exist (no lock taken or waited for)."""
    if not chat_ids:
        return set()
    stmt = select(chats.c.id).where(chats.c.id.in_(set(chat_ids)))
    return set((await conn.execute(stmt)).scalars())


async def find_direct(conn: AsyncConnection, direct_key: str) -> ChatRow | None:
    row = (await conn.execute(select(*_CHAT).where(chats.c.direct_key == direct_key))).first()
    return _chat(row) if row else None


async def update_chat(conn: AsyncConnection, chat_id: str, **values: Any) -> None:
    await conn.execute(update(chats).where(chats.c.id == chat_id).values(**values))


async def next_seq(conn: AsyncConnection, chat_id: str, now: datetime) -> int:
    """Take the chat's next event seq: 1, 2, 3, ... with no gaps (a rollback returns it)."""
    result = await conn.execute(
        update(chats)
        .where(chats.c.id == chat_id)
        .values(last_seq=chats.c.last_seq + 1, last_activity_at=now)
        .returning(chats.c.last_seq)
    )
    return int(result.scalar_one())


async def take_seqs(
    conn: AsyncConnection, chat_id: str, count: int, *, last_message_id: str, now: datetime
) -> int:
    """`next_seq` for `count` new messages at once, the last of which becomes the chat's last
    message; returns the last seq taken (the first is that minus `count` plus one)."""
    result = await conn.execute(
        update(chats)
        .where(chats.c.id == chat_id)
        .values(
            last_seq=chats.c.last_seq + count,
            last_activity_at=now,
            last_message_id=last_message_id,
        )
        .returning(chats.c.last_seq)
    )
    return int(result.scalar_one())


async def get_member(conn: AsyncConnection, chat_id: str, user_id: str) -> MemberRow | None:
    row = (
        await conn.execute(
            select(*_MEMBER).where(
                chat_members.c.chat_id == chat_id, chat_members.c.user_id == user_id
            )
        )
    ).first()
    return _member(row) if row else None


async def member_pairs(
    conn: AsyncConnection, pairs: Sequence[tuple[str, str]]
) -> set[tuple[str, str]]:
    """Which of these (chat id, user id) pairs are memberships."""
    if not pairs:
        return set()
    dialect = conn.dialect.name
    rows = await conn.execute(_member_pairs(dialect), key_params(dialect, pairs, 2))
    return {(chat_id, user_id) for chat_id, user_id in rows}


@functools.cache
def _member_pairs(dialect: str) -> Select[str, str]:
    cm = chat_members.c
    keys, columns = key_table(dialect, 2)
    chat_id, user_id = columns
    return (
        select(cm.chat_id, cm.user_id)
        .select_from(keys)
        .join(chat_members, and_(cm.chat_id == chat_id, cm.user_id == user_id))
    )


async def members(conn: AsyncConnection, chat_id: str) -> list[MemberRow]:
    """Longest-standing first (the order ownership is handed on in)."""
    stmt = (
        select(*_MEMBER)
        .where(chat_members.c.chat_id == chat_id)
        .order_by(chat_members.c.joined_at, chat_members.c.user_id)
    )
    return [_member(r) for r in await conn.execute(stmt)]


async def member_counts(conn: AsyncConnection, chat_ids: Sequence[str]) -> dict[str, int]:
    if not chat_ids:
        return {}
    stmt = (
        select(chat_members.c.chat_id, func.count())
        .where(chat_members.c.chat_id.in_(chat_ids))
        .group_by(chat_members.c.chat_id)
    )
    return {chat_id: int(n) for chat_id, n in await conn.execute(stmt)}


async def peers(conn: AsyncConnection, chat_ids: Sequence[str], viewer_id: str) -> dict[str, str]:
    """The other member of each direct chat."""
    if not chat_ids:
        return {}
    stmt = select(chat_members.c.chat_id, chat_members.c.user_id).where(
        chat_members.c.chat_id.in_(chat_ids), chat_members.c.user_id != viewer_id
    )
    return {chat_id: user_id for chat_id, user_id in await conn.execute(stmt)}


async def unread_counts(
    conn: AsyncConnection, chat_ids: Sequence[str], viewer_id: str
) -> dict[str, int]:
    """Messages from others, not deleted, above the viewer's read marker; one query for all."""
    if not chat_ids:
        return {}
    m, cm = messages.c, chat_members.c
    stmt = (
        select(m.chat_id, func.count())
        .select_from(
            messages.join(chat_members, and_(cm.chat_id == m.chat_id, cm.user_id == viewer_id))
        )
        .where(
            m.chat_id.in_(chat_ids),
            m.seq > cm.last_read_seq,
            m.sender_id != viewer_id,
            m.deleted.is_(False),
        )
        .group_by(m.chat_id)
    )
    return {chat_id: int(n) for chat_id, n in await conn.execute(stmt)}


async def memberships_page(
    conn: AsyncConnection,
    user_id: str,
    *,
    before: tuple[datetime, str] | None,
    limit: int,
    chat_ids: Sequence[str] | None = None,
) -> list[tuple[ChatRow, MemberRow]]:
    """The user's chats, most recent activity first, keyset-paged on (activity, id)."""
    stmt = (
        select(*_CHAT, *[c.label(f"m_{c.name}") for c in _MEMBER])
        .select_from(chats.join(chat_members, chat_members.c.chat_id == chats.c.id))
        .where(chat_members.c.user_id == user_id)
        .order_by(chats.c.last_activity_at.desc(), chats.c.id.desc())
        .limit(limit)
    )
    if chat_ids is not None:
        stmt = stmt.where(chats.c.id.in_(chat_ids))
    if before is not None:
        at, chat_id = before
        stmt = stmt.where(
            or_(
                chats.c.last_activity_at < at,
                and_(chats.c.last_activity_at == at, chats.c.id < chat_id),
            )
        )
    out = []
    for row in await conn.execute(stmt):
        mapping = row._mapping
        member = MemberRow(**{c.name: mapping[f"m_{c.name}"] for c in _MEMBER})
        out.append((_chat(row), member))
    return out


async def set_role(conn: AsyncConnection, chat_id: str, user_id: str, role: str) -> None:
    await conn.execute(
        update(chat_members)
        .where(chat_members.c.chat_id == chat_id, chat_members.c.user_id == user_id)
        .values(role=role)
    )


async def delete_member(conn: AsyncConnection, chat_id: str, user_id: str) -> None:
    await conn.execute(
        delete(chat_members).where(
            chat_members.c.chat_id == chat_id, chat_members.c.user_id == user_id
        )
    )


@dataclass(frozen=True, slots=True)
class MarkerRow:
    """A member's read and delivered markers, and the chat's last seq they may not pass."""

    last_read_seq: int
    last_delivered_seq: int
    last_seq: int


async def markers(
    conn: AsyncConnection, pairs: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], MarkerRow]:
    """The markers of these (chat id, user id) pairs that are memberships, in one statement."""
    if not pairs:
        return {}
    dialect = conn.dialect.name
    rows = await conn.execute(_markers(dialect), key_params(dialect, pairs, 2))
    return {(r[0], r[1]): MarkerRow(r[2], r[3], r[4]) for r in rows}


@functools.cache
def _markers(dialect: str) -> Select[str, str, int, int, int]:
    cm = chat_members.c
    keys, columns = key_table(dialect, 2)
    chat_id, user_id = columns
    return (
        select(cm.chat_id, cm.user_id, cm.last_read_seq, cm.last_delivered_seq, chats.c.last_seq)
        .select_from(keys)
        .join(chat_members, and_(cm.chat_id == chat_id, cm.user_id == user_id))
        .join(chats, chats.c.id == cm.chat_id)
    )


@dataclass(frozen=True, slots=True)
class Raise:
    """Markers to raise for one member; -1 leaves one as it is."""

    chat_id: str
    user_id: str
    read: int
    delivered: int


async def raise_markers(conn: AsyncConnection, raises: Sequence[Raise]) -> None:
    """Move markers forwards only, never backwards (another process may have moved them
    further meanwhile), in one statement for all members."""
    if raises:
        await conn.execute(
            _RAISE,
            [
                {"b_chat": r.chat_id, "b_user": r.user_id, "b_read": r.read, "b_del": r.delivered}
                for r in raises
            ],
        )


def _forwards(column: Any, name: str) -> Any:
    value = bindparam(name, type_=Integer)
    return case((column < value, value), else_=column)


_RAISE = (
    update(chat_members)
    .where(
        chat_members.c.chat_id == bindparam("b_chat"), chat_members.c.user_id == bindparam("b_user")
    )
    .values(
        last_read_seq=_forwards(chat_members.c.last_read_seq, "b_read"),
        last_delivered_seq=_forwards(chat_members.c.last_delivered_seq, "b_del"),
    )
)


async def positions(conn: AsyncConnection, user_id: str) -> dict[str, int]:
    stmt = (
        select(chats.c.id, chats.c.last_seq)
        .select_from(chats.join(chat_members, chat_members.c.chat_id == chats.c.id))
        .where(chat_members.c.user_id == user_id)
    )
    return {chat_id: int(seq) for chat_id, seq in await conn.execute(stmt)}


async def group_ids(conn: AsyncConnection, user_id: str) -> list[str]:
    """The groups the user is a member of."""
    stmt = (
        select(chats.c.id)
        .select_from(chats.join(chat_members, chat_members.c.chat_id == chats.c.id))
        .where(chat_members.c.user_id == user_id, chats.c.type == "group")
    )
    return list((await conn.execute(stmt)).scalars())


@dataclass(frozen=True, slots=True)
class Standing:
    """Where a user stands in every chat they belong or belonged to."""

    positions: dict[str, int]  # chat id -> its last seq, for each chat the user is in
    removals: dict[str, LoggedRow]  # chat id -> the event that last removed the user


async def standing(conn: AsyncConnection, user_id: str) -> Standing:
    """One statement, bounded by the user's own memberships past and present: what a resume
    needs whatever chat ids a client names (ids of other chats are simply not in the answer)."""
    e = chat_events.c
    member = (
        select(chats.c.id, chats.c.last_seq, cast(null(), Text).label("data"))
        .select_from(chats.join(chat_members, chat_members.c.chat_id == chats.c.id))
        .where(chat_members.c.user_id == user_id)
    )
    removed = select(e.chat_id, e.seq, e.data).where(
        e.user_id == user_id, e.type == "member.removed"
    )
    positions: dict[str, int] = {}
    removals: dict[str, LoggedRow] = {}
    for chat_id, seq, data in await conn.execute(union_all(member, removed)):
        if data is None:
            positions[chat_id] = int(seq)
        elif chat_id not in removals or removals[chat_id].seq < seq:
            removals[chat_id] = LoggedRow(int(seq), "member.removed", user_id, data)
    return Standing(positions, removals)


async def sharing_users(conn: AsyncConnection, user_id: str) -> list[str]:
    """Everyone who shares at least one chat with the user (the user excluded)."""
    mine = select(chat_members.c.chat_id).where(chat_members.c.user_id == user_id)
    stmt = (
        select(chat_members.c.user_id)
        .where(chat_members.c.chat_id.in_(mine), chat_members.c.user_id != user_id)
        .distinct()
    )
    return list((await conn.execute(stmt)).scalars())
