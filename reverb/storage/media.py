"""Queries on uploaded media."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, case, delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from reverb.storage.tables import media


@dataclass(frozen=True, slots=True)
class MediaRow:
    id: str
    uploader_id: str
    message_id: str | None
    filename: str
    content_type: str
    size: int
    width: int | None
    height: int | None
    has_thumbnail: bool
    created_at: datetime


_COLUMNS = list(media.c)


def _row(row: Any) -> MediaRow:
    return MediaRow(**{c.name: row._mapping[c.name] for c in _COLUMNS})


async def insert_media(conn: AsyncConnection, row: MediaRow) -> None:
    await conn.execute(insert(media).values(**{c.name: getattr(row, c.name) for c in _COLUMNS}))


async def get(conn: AsyncConnection, media_id: str) -> MediaRow | None:
    found = (await conn.execute(select(*_COLUMNS).where(media.c.id == media_id))).first()
    return _row(found) if found else None


async def get_many(conn: AsyncConnection, media_ids: Sequence[str]) -> dict[str, MediaRow]:
    if not media_ids:
        return {}
    stmt = select(*_COLUMNS).where(media.c.id.in_(set(media_ids)))
    return {row.id: row for row in map(_row, await conn.execute(stmt))}


async def attach_many(conn: AsyncConnection, claims: Mapping[str, str]) -> int:
    """Attach each upload (key) to its message (value), in one statement, if it is attached to
    none yet; the number attached. The caller checked whose uploads they are."""
    if not claims:
        return 0
    result = await conn.execute(
        update(media)
        .where(media.c.id.in_(list(claims)), media.c.message_id.is_(None))
        .values(message_id=case(dict(claims), value=media.c.id))
    )
    return int(result.rowcount)


# Built once: every history page runs it, and building it per call (an IN of fifty values)
# cost more than running it.
_FOR_MESSAGES = (
    select(*_COLUMNS)
    .where(media.c.message_id.in_(bindparam("message_ids", expanding=True)))
    .order_by(media.c.created_at, media.c.id)
)


async def for_messages(
    conn: AsyncConnection, message_ids: Sequence[str]
) -> dict[str, list[MediaRow]]:
    if not message_ids:
        return {}
    out: dict[str, list[MediaRow]] = defaultdict(list)
    for r in await conn.execute(_FOR_MESSAGES, {"message_ids": list(set(message_ids))}):
        row = _row(r)
        assert row.message_id is not None
        out[row.message_id].append(row)
    return out


async def unattached_before(conn: AsyncConnection, before: datetime) -> list[MediaRow]:
    stmt = select(*_COLUMNS).where(media.c.message_id.is_(None), media.c.created_at < before)
    return [_row(r) for r in await conn.execute(stmt)]


async def unattached_of(conn: AsyncConnection, uploader_id: str) -> list[MediaRow]:
    stmt = select(*_COLUMNS).where(media.c.message_id.is_(None), media.c.uploader_id == uploader_id)
    return [_row(r) for r in await conn.execute(stmt)]


async def delete_ids(conn: AsyncConnection, media_ids: Sequence[str]) -> None:
    if media_ids:
        await conn.execute(delete(media).where(media.c.id.in_(set(media_ids))))
