"""Queries on messages and reactions."""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    and_,
    bindparam,
    case,
    delete,
    func,
    insert,
    literal_column,
    select,
    text,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql import Select

from reverb.storage.keys import key_params, key_table
from reverb.storage.tables import chat_members, messages, reactions


@dataclass(frozen=True, slots=True)
class MessageRow:
    id: str
    chat_id: str
    seq: int
    sender_id: str
    content: str
    client_id: str | None
    reply_to_id: str | None
    created_at: datetime
    edited_at: datetime | None
    deleted: bool


@dataclass(frozen=True, slots=True)
class ReactionCount:
    emoji: str
    count: int
    me: bool


_MESSAGE = [c for c in messages.c if c.name != "pk"]
# Rows are built by position (a history page builds thousands): the columns must stay in the
# dataclass's order.
assert [c.name for c in _MESSAGE] == list(MessageRow.__dataclass_fields__)


def _message(row: Any) -> MessageRow:
    return MessageRow(*row)


def values_of(row: MessageRow) -> dict[str, Any]:
    """The row's column values; unlike `dataclasses.asdict`, without deep-copying each one
    (which was a tenth of a send's cost)."""
    return {name: getattr(row, name) for name in _FIELDS}


_FIELDS = tuple(MessageRow.__dataclass_fields__)


async def insert_messages(conn: AsyncConnection, rows: Sequence[dict[str, Any]]) -> None:
    """One statement executed for every row (executemany)."""
    if rows:
        await conn.execute(insert(messages), list(rows))


async def get(conn: AsyncConnection, message_id: str) -> MessageRow | None:
    row = (await conn.execute(select(*_MESSAGE).where(messages.c.id == message_id))).first()
    return _message(row) if row else None


_GET_MANY = select(*_MESSAGE).where(messages.c.id.in_(bindparam("ids", expanding=True)))


async def get_many(conn: AsyncConnection, message_ids: Sequence[str]) -> dict[str, MessageRow]:
    if not message_ids:
        return {}
    rows = await conn.execute(_GET_MANY, {"ids": list(set(message_ids))})
    return {m.id: m for m in map(_message, rows)}


async def by_client_id(
    conn: AsyncConnection, chat_id: str, sender_id: str, client_id: str
) -> MessageRow | None:
    m = messages.c
    row = (
        await conn.execute(
            select(*_MESSAGE).where(
                m.chat_id == chat_id, m.sender_id == sender_id, m.client_id == client_id
            )
        )
    ).first()
    return _message(row) if row else None


ClientKey = tuple[str, str, str]  # (chat id, sender id, client id)


async def by_client_ids(
    conn: AsyncConnection, keys: Sequence[ClientKey]
) -> dict[ClientKey, MessageRow]:
    """`by_client_id` for many keys at once, in one query."""
    if not keys:
        return {}
    dialect = conn.dialect.name
    found: dict[ClientKey, MessageRow] = {}
    for row in map(
        _message, await conn.execute(_by_client_ids(dialect), key_params(dialect, keys, 3))
    ):
        assert row.client_id is not None
        found[(row.chat_id, row.sender_id, row.client_id)] = row
    return found


@functools.cache
def _by_client_ids(dialect: str) -> Select[Any]:
    m = messages.c
    keys, columns = key_table(dialect, 3)
    chat_id, sender_id, client_id = columns
    return (
        select(*_MESSAGE)
        .select_from(keys)
        .join(
            messages,
            and_(m.chat_id == chat_id, m.sender_id == sender_id, m.client_id == client_id),
        )
    )


async def by_sender(
    conn: AsyncConnection, sender_id: str, *, after: str | None, limit: int
) -> list[MessageRow]:
    """A user's messages in id order (the order they were sent), those after `after`."""
    stmt = select(*_MESSAGE).where(messages.c.sender_id == sender_id)
    if after is not None:
        stmt = stmt.where(messages.c.id > after)
    rows = await conn.execute(stmt.order_by(messages.c.id).limit(limit))
    return [_message(r) for r in rows]


async def update_message(conn: AsyncConnection, message_id: str, **values: Any) -> None:
    await conn.execute(update(messages).where(messages.c.id == message_id).values(**values))


@dataclass(frozen=True, slots=True)
class ReactionStanding:
    already: bool  # the user has reacted with this emoji
    mine: int  # distinct emoji the user has put on the message
    emoji: int  # distinct emoji on the message
    present: bool  # someone has reacted with this emoji


async def reaction_standing(
    conn: AsyncConnection, message_id: str, user_id: str, emoji: str
) -> ReactionStanding:
    """What the reaction caps need, in one statement."""
    r = reactions.c
    mine = r.user_id == user_id
    same = r.emoji == emoji
    row = (
        await conn.execute(
            select(
                func.count(case((and_(mine, same), 1))),
                func.count(case((mine, 1))),
                func.count(r.emoji.distinct()),
                func.count(case((same, 1))),
            ).where(r.message_id == message_id)
        )
    ).one()
    return ReactionStanding(bool(row[0]), int(row[1]), int(row[2]), bool(row[3]))


async def add_reaction(
    conn: AsyncConnection, message_id: str, user_id: str, emoji: str, now: datetime
) -> None:
    await conn.execute(
        insert(reactions).values(
            message_id=message_id, user_id=user_id, emoji=emoji, created_at=now
        )
    )


async def remove_reaction(conn: AsyncConnection, message_id: str, user_id: str, emoji: str) -> bool:
    r = reactions.c
    result = await conn.execute(
        delete(reactions).where(r.message_id == message_id, r.user_id == user_id, r.emoji == emoji)
    )
    return bool(result.rowcount)


async def clear_reactions(conn: AsyncConnection, message_id: str) -> None:
    await conn.execute(delete(reactions).where(reactions.c.message_id == message_id))


# Built once (see media.for_messages): every history page runs it.
_REACTION_COUNTS = (
    select(
        reactions.c.message_id,
        reactions.c.emoji,
        func.count(),
        func.max(case((reactions.c.user_id == bindparam("viewer_id"), 1), else_=0)),
        func.min(reactions.c.created_at),
    )
    .where(reactions.c.message_id.in_(bindparam("message_ids", expanding=True)))
    .group_by(reactions.c.message_id, reactions.c.emoji)
    .order_by(reactions.c.message_id, func.min(reactions.c.created_at), reactions.c.emoji)
)


async def reaction_counts(
    conn: AsyncConnection, message_ids: Sequence[str], viewer_id: str | None
) -> dict[str, list[ReactionCount]]:
    """Per message: each emoji with its count and whether the viewer is among its reactors,
    in the order the emoji first appeared. One query for the whole page."""
    if not message_ids:
        return {}
    params = {"message_ids": list(set(message_ids)), "viewer_id": viewer_id or ""}
    out: dict[str, list[ReactionCount]] = defaultdict(list)
    for message_id, emoji, count, me, _ in await conn.execute(_REACTION_COUNTS, params):
        out[message_id].append(ReactionCount(emoji=emoji, count=int(count), me=bool(me)))
    return out


def _fts5_query(query: str) -> str:
    """Each word as a quoted FTS5 string: user text can never be read as query syntax."""
    return " ".join('"' + word.replace('"', '""') + '"' for word in query.split())


async def search(
    conn: AsyncConnection,
    *,
    viewer_id: str,
    query: str,
    chat_id: str | None,
    offset: int,
    limit: int,
) -> list[MessageRow]:
    """Messages of the viewer's chats matching every word of `query`, best match first."""
    m = messages.c
    my_chats = select(chat_members.c.chat_id).where(chat_members.c.user_id == viewer_id)
    stmt = select(*_MESSAGE).where(m.chat_id.in_(my_chats), m.deleted.is_(False))
    if chat_id is not None:
        stmt = stmt.where(m.chat_id == chat_id)
    if conn.dialect.name == "sqlite":
        hits = (
            text(
                "SELECT rowid AS pk, bm25(messages_fts) AS rank FROM messages_fts "
                "WHERE messages_fts MATCH :q"
            )
            .bindparams(q=_fts5_query(query))
            .columns(literal_column("pk"), literal_column("rank"))
            .subquery("hits")
        )
        stmt = stmt.join_from(messages, hits, hits.c.pk == m.pk).order_by(hits.c.rank, m.seq.desc())
    else:
        document = func.to_tsvector(literal_column("'simple'::regconfig"), m.content)
        wanted = func.plainto_tsquery(literal_column("'simple'::regconfig"), query)
        stmt = stmt.where(document.op("@@")(wanted)).order_by(
            func.ts_rank(document, wanted).desc(), m.created_at.desc()
        )
    stmt = stmt.offset(offset).limit(limit)
    return [_message(r) for r in await conn.execute(stmt)]
