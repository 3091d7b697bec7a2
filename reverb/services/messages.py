"""Messages: sending (idempotent by client id), history, edits, deletions, reactions, search."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from reverb import ids, text
from reverb.domain.events import MessageDeleted, MessageUpdated, ReactionUpdated
from reverb.domain.users import User
from reverb.domain.wire import MessageView
from reverb.errors import ErrorCode, ReverbError, conflict, forbidden, invalid, not_found
from reverb.services import views
from reverb.services.chats import MANAGERS, chat_not_found, membership
from reverb.services.eventlog import EventLog
from reverb.services.sendbatch import SendBatcher, SendRequest, Sent
from reverb.storage import chats as chat_store
from reverb.storage import history as history_store
from reverb.storage import messages as message_store
from reverb.storage.db import Database, Tx
from reverb.storage.messages import MessageRow
from reverb.storage.types import utcnow

MAX_CONTENT = 4000  # characters (code points), after trimming: the API contract
MAX_EMOJI = 32
# Reaction caps of the API contract: a message stays one screen of reactions, and one user
# cannot fill it alone.
MAX_REACTIONS_PER_USER = 20
MAX_EMOJI_PER_MESSAGE = 50


MAX_ATTACHMENTS = 10  # the API contract


def clean_content(content: str, *, may_be_empty: bool = False) -> str:
    """The content as stored: surrounding whitespace trimmed, 1-4000 characters (0 with
    attachments), no NUL."""
    trimmed = content.strip()
    if not trimmed and not may_be_empty:
        raise invalid("content must not be blank", field="content")
    if len(trimmed) > MAX_CONTENT:
        raise invalid(
            f"content is over {MAX_CONTENT} characters",
            field="content",
            code=ErrorCode.CONTENT_TOO_LONG,
        )
    if not text.is_text(trimmed):
        raise invalid(
            "content must not contain NUL characters or unpaired UTF-16 surrogates",
            field="content",
        )
    return trimmed


def clean_emoji(emoji: str) -> str:
    if not emoji.strip() or len(emoji) > MAX_EMOJI or not text.is_line(emoji):
        raise invalid(
            f"a reaction is a short non-blank string (at most {MAX_EMOJI} characters)",
            field="emoji",
        )
    return emoji


def _check_reaction_caps(counts: message_store.ReactionStanding) -> None:
    """The contract's caps (the chat is locked, so concurrent reactions cannot overshoot)."""
    if counts.already:
        return  # putting a reaction again changes nothing, at any count
    if counts.mine >= MAX_REACTIONS_PER_USER:
        raise conflict(
            ErrorCode.TOO_MANY_REACTIONS,
            f"you already hold {MAX_REACTIONS_PER_USER} different reactions on this message",
        )
    if not counts.present and counts.emoji >= MAX_EMOJI_PER_MESSAGE:
        raise conflict(
            ErrorCode.TOO_MANY_REACTIONS,
            f"this message already carries {MAX_EMOJI_PER_MESSAGE} different emoji",
        )


def message_not_found() -> ReverbError:
    return not_found(ErrorCode.MESSAGE_NOT_FOUND, "message")


@dataclass(slots=True)
class MessageService:
    db: Database
    log: EventLog
    pool_size: int  # the database's: bounds the send batches in flight (`sendbatch`)
    batches: SendBatcher = field(init=False)

    def __post_init__(self) -> None:
        self.batches = SendBatcher(self.db, self.log, pool_size=self.pool_size)

    async def close(self) -> None:
        """Answer the sends already handed in; refuse new ones."""
        await self.batches.close()

    async def send(
        self,
        *,
        me: User,
        chat_id: str,
        content: str,
        client_id: str | None = None,
        reply_to_id: str | None = None,
        attachment_ids: Sequence[str] = (),
    ) -> Sent:
        """Store and announce a message: (the message, whether it is new). A repeated
        `client_id` from the same sender in the same chat returns the original, unchanged.

        Every send goes through the chat's queue (`sendbatch`): sends made at the same moment
        share one transaction, and each still gets exactly the answer it would get alone."""
        attachments = tuple(dict.fromkeys(attachment_ids))
        if len(attachments) > MAX_ATTACHMENTS:
            raise invalid(f"at most {MAX_ATTACHMENTS} attachments", field="attachment_ids")
        content = clean_content(content, may_be_empty=bool(attachments))
        if not ids.is_id(chat_id):
            raise chat_not_found()
        return await self.batches.send(
            SendRequest(
                me=me,
                chat_id=chat_id,
                content=content,
                client_id=client_id,
                reply_to_id=reply_to_id,
                attachments=attachments,
            )
        )

    async def history(
        self, *, me: User, chat_id: str, before: int | None, after: int | None, limit: int
    ) -> tuple[list[MessageView], bool]:
        """Messages ascending by seq, and whether more lie beyond the page in the paging
        direction (`after` pages forwards, otherwise the page ends at
        `before`, or is the newest). One statement; two when the page is empty."""
        if not ids.is_id(chat_id):
            raise chat_not_found()
        async with self.db.read() as conn:
            rows = list(
                await history_store.page(
                    conn, chat_id, me.id, before=before, after=after, limit=limit + 1
                )
            )
            if not rows and await chat_store.get_member(conn, chat_id, me.id) is None:
                raise chat_not_found()
        more = len(rows) > limit
        del rows[limit:]
        if after is None:
            rows.reverse()
        return views.message_page(rows), more

    async def _locked(self, tx: Tx, me: User, message_id: str) -> tuple[MessageRow, str]:
        """The message and the caller's role in its chat, with the chat locked; 404 for a
        message the caller cannot see."""
        row = await message_store.get(tx.conn, message_id) if ids.is_id(message_id) else None
        if row is None:
            raise message_not_found()
        try:
            chat, mine = await membership(tx.conn, row.chat_id, me.id, lock=True)
        except ReverbError:
            raise message_not_found() from None
        return row, mine.role if chat.type == "group" else "member"

    async def edit(self, *, me: User, message_id: str, content: str) -> MessageView:
        content = clean_content(content)
        async with self.db.transaction() as tx:
            row, _ = await self._locked(tx, me, message_id)
            if row.sender_id != me.id:
                raise forbidden("only the sender can edit a message")
            if row.deleted:
                raise conflict(ErrorCode.MESSAGE_DELETED, "the message was deleted")
            if content != row.content:
                now = utcnow()
                await message_store.update_message(
                    tx.conn, message_id, content=content, edited_at=now
                )
                edited = await message_store.get(tx.conn, message_id)
                assert edited is not None
                shared = (await views.message_views(tx.conn, [edited], None))[0]
                await self.log.append(
                    tx,
                    row.chat_id,
                    lambda seq: MessageUpdated(chat_id=row.chat_id, seq=seq, message=shared),
                    now=now,
                )
            current = await message_store.get(tx.conn, message_id)
            assert current is not None
            return (await views.message_views(tx.conn, [current], me.id))[0]

    async def delete(self, *, me: User, message_id: str) -> None:
        async with self.db.transaction() as tx:
            row, role = await self._locked(tx, me, message_id)
            if row.sender_id != me.id and role not in MANAGERS:
                raise forbidden("only the sender or a group owner or admin can delete a message")
            if row.deleted:
                return
            await message_store.update_message(tx.conn, message_id, deleted=True, content="")
            await message_store.clear_reactions(tx.conn, message_id)
            await self.log.append(
                tx,
                row.chat_id,
                lambda seq: MessageDeleted(chat_id=row.chat_id, seq=seq, message_id=message_id),
                now=utcnow(),
            )

    async def react(self, *, me: User, message_id: str, emoji: str, add: bool) -> None:
        emoji = clean_emoji(emoji)
        async with self.db.transaction() as tx:
            row, _ = await self._locked(tx, me, message_id)
            now = utcnow()
            if add:
                if row.deleted:
                    raise conflict(ErrorCode.MESSAGE_DELETED, "the message was deleted")
                counts = await message_store.reaction_standing(tx.conn, message_id, me.id, emoji)
                _check_reaction_caps(counts)
                changed = not counts.already
                if changed:
                    await message_store.add_reaction(tx.conn, message_id, me.id, emoji, now)
            else:
                changed = await message_store.remove_reaction(tx.conn, message_id, me.id, emoji)
            if changed:
                await self.log.append(
                    tx,
                    row.chat_id,
                    lambda seq: ReactionUpdated(
                        chat_id=row.chat_id,
                        seq=seq,
                        message_id=message_id,
                        emoji=emoji,
                        user_id=me.id,
                        added=add,
                    ),
                    now=now,
                )

    async def search(
        self, *, me: User, query: str, chat_id: str | None, offset: int, limit: int
    ) -> tuple[list[MessageView], bool]:
        async with self.db.read() as conn:
            if chat_id is not None:
                await membership(conn, chat_id, me.id)
            rows = await message_store.search(
                conn, viewer_id=me.id, query=query, chat_id=chat_id, offset=offset, limit=limit + 1
            )
            return await views.message_views(conn, rows[:limit], me.id), len(rows) > limit
