"""Build the wire views of chats and messages in batches: a page costs a fixed number of
queries, whatever its length (no query per item)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

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


def media_view(row: MediaRow) -> MediaView:
    return MediaView(
        id=row.id,
        url=f"/media/{row.id}",
        filename=row.filename,
        content_type=row.content_type,
        size=row.size,
        width=row.width,
        height=row.height,
        thumbnail_url=f"/media/{row.id}/thumbnail" if row.has_thumbnail else None,
    )


def message_view(
    row: MessageRow,
    sender: User | UserView,
    reactions: Sequence[message_store.ReactionCount] = (),
    attachments: Sequence[MediaRow] = (),
) -> MessageView:
    # Built from stored rows and views already made, so not validated again: a history page
    # makes fifty of these, and validating them cost more than reading them.
    return MessageView.model_construct(
        id=row.id,
        chat_id=row.chat_id,
        seq=row.seq,
        sender=sender if isinstance(sender, UserView) else UserView.of(sender),
        content=row.content,
        client_id=row.client_id,
        reply_to_id=row.reply_to_id,
        attachments=[] if row.deleted else [media_view(m) for m in attachments],
        created_at=row.created_at,
        edited_at=row.edited_at,
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


def chat_info(chat: ChatRow, member_count: int) -> ChatInfo:
    return ChatInfo(
        id=chat.id,
        type="direct" if chat.type == "direct" else "group",
        name=chat.name,
        description=chat.description,
        member_count=member_count,
        last_seq=chat.last_seq,
        created_at=chat.created_at,
        updated_at=chat.updated_at,
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
                **info.model_dump(),
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
            joined_at=m.joined_at,
            last_read_seq=m.last_read_seq,
            last_delivered_seq=m.last_delivered_seq,
        )
        for m in rows
    ]
