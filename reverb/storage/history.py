"""A page of a chat's messages in one statement, shaped for the wire by the database.

The statement checks the reader's membership, joins each message's sender, aggregates its
reactions and attachments as JSON, and gives timestamps as the API writes them, so the rows
turn into the response without any per-message work beyond building its struct
(`services.views.message_page`). A page costs one statement whatever its length;
`PAGE_COLUMNS` names what each row holds, in order.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from sqlalchemy import TextualSelect, column, text
from sqlalchemy.ext.asyncio import AsyncConnection

PAGE_COLUMNS = (
    "id",
    "chat_id",
    "seq",
    "content",
    "client_id",
    "reply_to_id",
    "created_at",  # RFC 3339 in UTC with milliseconds, as `domain.wire.rfc3339` writes it
    "edited_at",  # the same, or NULL
    "deleted",  # 0/1 on SQLite
    "sender_id",
    "sender_username",
    "sender_display_name",
    "sender_bio",
    "sender_avatar_key",
    "sender_last_seen_at",  # as created_at, or NULL
    # JSON arrays, or NULL (or "[]" on SQLite) when there are none; each item carries its rank
    # last: SQLite does not promise the order in which an aggregate sees its rows.
    "reactions",  # [[emoji, count, mine, rank], ...]
    "attachments",  # [[id, filename, content_type, size, width, height, has_thumbnail, rank]]
)


@functools.cache
def page_statement(dialect: str, before: bool, after: bool) -> TextualSelect:
    if dialect == "sqlite":
        agg, array, any_, as_text = "json_group_array", "json_array", "max", ""

        def wire_time(column: str) -> str:
            # Stored as 'YYYY-MM-DD HH:MM:SS.ffffff' (SQLAlchemy's SQLite format, always with
            # microseconds): the milliseconds are cut, not rounded, as isoformat() cuts them.
            return f"(substr({column}, 1, 10) || 'T' || substr({column}, 12, 12) || 'Z')"

    else:
        # As text, as SQLite gives it: the driver would otherwise parse it with the stdlib.
        agg, array, any_, as_text = "json_agg", "json_build_array", "bool_or", "::text"

        def wire_time(column: str) -> str:
            # MS is the milliseconds cut, not rounded.
            return f"to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"

    where = ["m.chat_id = :chat_id"]
    if before:
        where.append("m.seq < :before")
    if after:
        where.append("m.seq > :after")
    # A non-member's page is empty, like a chat that does not exist; the caller tells the two
    # apart (with a second statement) only when a page comes back empty.
    where.append(
        "EXISTS (SELECT 1 FROM chat_members cm "
        "WHERE cm.chat_id = :chat_id AND cm.user_id = :viewer_id)"
    )
    # Only the constants above are interpolated; every value is a bound parameter.
    return text(
        f"""
SELECT m.id, m.chat_id, m.seq, m.content, m.client_id, m.reply_to_id,
       {wire_time("m.created_at")}, {wire_time("m.edited_at")}, m.deleted,
       u.id, u.username, u.display_name, u.bio, u.avatar_key, {wire_time("u.last_seen_at")},
       CASE WHEN EXISTS (SELECT 1 FROM reactions WHERE message_id = m.id) THEN
       (SELECT {agg}({array}(r.emoji, r.n, r.mine, r.rank))
          FROM (SELECT emoji, count(*) AS n, {any_}(user_id = :viewer_id) AS mine,
                       row_number() OVER (ORDER BY min(created_at), emoji) AS rank
                  FROM reactions WHERE message_id = m.id GROUP BY emoji) AS r){as_text} END,
       CASE WHEN NOT m.deleted AND EXISTS (SELECT 1 FROM media WHERE message_id = m.id) THEN
       (SELECT {agg}({array}(d.id, d.filename, d.content_type, d.size, d.width, d.height,
                             d.has_thumbnail, d.rank))
          FROM (SELECT id, filename, content_type, size, width, height, has_thumbnail,
                       row_number() OVER (ORDER BY created_at, id) AS rank
                  FROM media WHERE message_id = m.id) AS d){as_text} END
  FROM messages m JOIN users u ON u.id = m.sender_id
 WHERE {" AND ".join(where)}
 ORDER BY m.seq {"ASC" if after else "DESC"}
 LIMIT :limit
"""  # noqa: S608
    ).columns(*(column(name) for name in PAGE_COLUMNS))


async def page(
    conn: AsyncConnection,
    chat_id: str,
    viewer_id: str,
    *,
    before: int | None,
    after: int | None,
    limit: int,
) -> Sequence[Any]:
    """Up to `limit` rows (`PAGE_COLUMNS`) of the chat's messages, if `viewer_id` is a member:
    after `after` in ascending order of seq (catch-up), otherwise the newest before `before`
    (or the newest of all) in descending order."""
    params: dict[str, Any] = {"chat_id": chat_id, "viewer_id": viewer_id, "limit": limit}
    if before is not None:
        params["before"] = before
    if after is not None:
        params["after"] = after
    statement = page_statement(conn.dialect.name, before is not None, after is not None)
    return (await conn.execute(statement, params)).all()
