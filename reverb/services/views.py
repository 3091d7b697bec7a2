"""Build the wire views of chats and messages in batches: a page costs a fixed number of
queries, whatever its length (no query per item)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import msgspec
import orjson
from sqlalchemy.ext.asyncio import AsyncConnection

from reverb.domain.users import User
from reverb.domain.wire import (
    ChatInfo,
    ChatView,
    MediaView,
    MemberView,
    MessageView,
    ReactionView,
    Role,
    UserView,
    avatar_url,
    rfc3339,
    rfc3339_or_none,
)
from reverb.storage import chats as chat_store
from reverb.storage import media as media_store
from reverb.storage import messages as message_store
from reverb.storage import users as user_store
from reverb.storage.chats import ChatRow, MemberRow
from reverb.storage.media import MediaRow
from reverb.storage.messages import MessageRow

# Which of these users are online now (the presence service answers; tests may pass none).
OnlineLookup = Callable[[list[str]], Awaitable[set[str]]]


def _media(
    media_id: str,
    filename: str,
    content_type: str,
    size: int,
    width: int | None,
    height: int | None,
    has_thumbnail: bool,
) -> MediaView:
    """The one place a media item's URLs are made."""
    return MediaView(
        id=media_id,
        url=f"/media/{media_id}",
        filename=filename,
        content_type=content_type,
        size=size,
        width=width,
        height=height,
        thumbnail_url=f"/media/{media_id}/thumbnail" if has_thumbnail else None,
    )


def media_view(row: MediaRow) -> MediaView:
    return _media(
        row.id, row.filename, row.content_type, row.size, row.width, row.height, row.has_thumbnail
    )


def message_view(
    row: MessageRow,
    sender: User | UserView,
    reactions: Sequence[message_store.ReactionCount] = (),
    attachments: Sequence[MediaRow] = (),
) -> MessageView:
    return MessageView(
        id=row.id,
        chat_id=row.chat_id,
        seq=row.seq,
        sender=sender if isinstance(sender, UserView) else UserView.of(sender),
        content=row.content,
        client_id=row.client_id,
        reply_to_id=row.reply_to_id,
        attachments=[] if row.deleted else [media_view(m) for m in attachments],
        created_at=rfc3339(row.created_at),
        edited_at=rfc3339_or_none(row.edited_at),
        deleted=row.deleted,
        reactions=[ReactionView(emoji=r.emoji, count=r.count, me=r.me) for r in reactions],
    )


async def message_views(
    conn: AsyncConnection, rows: Sequence[MessageRow], viewer_id: str | None
) -> list[MessageView]:
    """`viewer_id` None: reactions' `me` is false for all (the view every member shares)."""
    senders = {
        user_id: UserView.of(user)
        for user_id, user in (await user_store.get_many(conn, [r.sender_id for r in rows])).items()
    }
    reactions = await message_store.reaction_counts(conn, [r.id for r in rows], viewer_id)
    files = await media_store.for_messages(conn, [r.id for r in rows])
    return [
        message_view(r, senders[r.sender_id], reactions.get(r.id, ()), files.get(r.id, ()))
        for r in rows
    ]


def message_page(rows: Sequence[Any]) -> list[MessageView]:
    """The messages of `storage.history` rows (in page order), which come shaped for the wire
    (timestamps already as the API writes them): the same views `message_views` gives for the
    same messages, without a query per part."""
    senders: dict[str, UserView] = {}
    items = []
    for (
        message_id,
        chat_id,
        seq,
        content,
        client_id,
        reply_to_id,
        created_at,
        edited_at,
        deleted,
        sender_id,
        username,
        display_name,
        bio,
        avatar_key,
        last_seen_at,
        reactions,
        attachments,
    ) in rows:
        sender = senders.get(sender_id)
        if sender is None:
            # As UserView.of gives it without presence.
            sender = senders[sender_id] = UserView(
                id=sender_id,
                username=username,
                display_name=display_name,
                bio=bio,
                avatar_url=avatar_url(avatar_key),
                status="offline",
                last_seen_at=last_seen_at,
            )
        items.append(
            MessageView(
                id=message_id,
                chat_id=chat_id,
                seq=seq,
                sender=sender,
                content=content,
                client_id=client_id,
                reply_to_id=reply_to_id,
                attachments=_attachments(attachments),
                created_at=created_at,
                edited_at=edited_at,
                deleted=bool(deleted),
                reactions=_reactions(reactions),
            )
        )
    return items


def _reactions(aggregated: str | None) -> list[ReactionView]:
    # Most messages have neither reactions nor attachments: their aggregate is NULL or "[]".
    if aggregated is None or aggregated == "[]":
        return []
    return [
        ReactionView(emoji=emoji, count=count, me=bool(mine))
        for emoji, count, mine, _ in sorted(orjson.loads(aggregated), key=_rank)
    ]


def _attachments(aggregated: str | None) -> list[MediaView]:
    if aggregated is None or aggregated == "[]":
        return []
    return [
        _media(media_id, filename, content_type, size, width, height, bool(thumbnail))
        for media_id, filename, content_type, size, width, height, thumbnail, _ in sorted(
            orjson.loads(aggregated), key=_rank
        )
    ]


def _rank(item: list[Any]) -> Any:
    return item[-1]


def chat_info(chat: ChatRow, member_count: int) -> ChatInfo:
    return ChatInfo(
        id=chat.id,
        type="direct" if chat.type == "direct" else "group",
        name=chat.name,
        description=chat.description,
        member_count=member_count,
        last_seq=chat.last_seq,
        created_at=rfc3339(chat.created_at),
        updated_at=rfc3339(chat.updated_at),
    )


async def nobody_online(user_ids: list[str]) -> set[str]:
    return set()


async def chat_views(
    conn: AsyncConnection,
    pairs: Sequence[tuple[ChatRow, MemberRow]],
    viewer_id: str,
    online: OnlineLookup = nobody_online,
) -> list[ChatView]:
    chat_ids = [c.id for c, _ in pairs]
    counts = await chat_store.member_counts(conn, chat_ids)
    unread = await chat_store.unread_counts(conn, chat_ids, viewer_id)
    peer_ids = await chat_store.peers(
        conn, [c.id for c, _ in pairs if c.type == "direct"], viewer_id
    )
    peers = await user_store.get_many(conn, list(peer_ids.values()))
    peers_online = await online(list(peers))
    last_rows = await message_store.get_many(
        conn, [c.last_message_id for c, _ in pairs if c.last_message_id]
    )
    last = {v.id: v for v in await message_views(conn, list(last_rows.values()), viewer_id)}
    views = []
    for chat, member in pairs:
        peer = peers.get(peer_ids.get(chat.id, ""))
        info = chat_info(chat, counts.get(chat.id, 0))
        views.append(
            ChatView(
                **msgspec.structs.asdict(info),
                peer=UserView.of(peer, online=peer.id in peers_online) if peer else None,
                my_role=role(member.role),
                last_read_seq=member.last_read_seq,
                unread_count=unread.get(chat.id, 0),
                last_message=last.get(chat.last_message_id or ""),
            )
        )
    return views


def role(value: str) -> Role:
    if value == "owner":
        return "owner"
    return "admin" if value == "admin" else "member"


async def member_views(
    conn: AsyncConnection, rows: Sequence[MemberRow], online: OnlineLookup = nobody_online
) -> list[MemberView]:
    users = await user_store.get_many(conn, [m.user_id for m in rows])
    here = await online(list(users))
    return [
        MemberView(
            user=UserView.of(users[m.user_id], online=m.user_id in here),
            role=role(m.role),
            joined_at=rfc3339(m.joined_at),
            last_read_seq=m.last_read_seq,
            last_delivered_seq=m.last_delivered_seq,
        )
        for m in rows
    ]
