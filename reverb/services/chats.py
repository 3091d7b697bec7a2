"""Chats and membership: who may create, see, change, join and leave them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import msgspec
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from reverb import ids
from reverb.domain.events import (
    ChatCreated,
    ChatUpdated,
    Envelope,
    MemberAdded,
    MemberRemoved,
    MemberUpdated,
)
from reverb.domain.users import User
from reverb.domain.wire import ChatView, MemberView, Role, UserView
from reverb.errors import ErrorCode, ReverbError, conflict, forbidden, invalid, not_found
from reverb.services import views
from reverb.services.eventlog import EventLog
from reverb.storage import chats as chat_store
from reverb.storage import events as event_store
from reverb.storage import users as user_store
from reverb.storage.chats import ChatRow, MemberRow
from reverb.storage.db import Database, Tx
from reverb.storage.events import LoggedRow
from reverb.storage.types import utcnow

MANAGERS = ("owner", "admin")


def envelope_of(chat_id: str, row: LoggedRow) -> Envelope:
    """A stored event as the envelope it was published in."""
    concerns = (row.user_id,) if row.user_id else ()
    return Envelope(
        type=row.type,
        data=row.data.encode(),  # stored as text: encoded once per row read
        chat_id=chat_id,
        seq=row.seq,
        user_ids=concerns,
        joined=concerns if row.type == "member.added" else (),
        left=concerns if row.type == "member.removed" else (),
    )


def chat_not_found() -> ReverbError:
    return not_found(ErrorCode.CHAT_NOT_FOUND, "chat")


def _not_a_group() -> ReverbError:
    return conflict(ErrorCode.NOT_A_GROUP, "direct chats have exactly two members and no changes")


async def membership(
    conn: AsyncConnection, chat_id: str, user_id: str, *, lock: bool = False
) -> tuple[ChatRow, MemberRow]:
    """The chat and the caller's membership, or 404: a chat the caller is not in does not exist
    for them, exactly like one that never existed."""
    if not ids.is_id(chat_id):
        raise chat_not_found()
    chat = await (chat_store.lock if lock else chat_store.get)(conn, chat_id)
    member = await chat_store.get_member(conn, chat_id, user_id) if chat else None
    if chat is None or member is None:
        raise chat_not_found()
    return chat, member


@dataclass(slots=True)
class ChatService:
    db: Database
    log: EventLog
    online: views.OnlineLookup = views.nobody_online

    # --- creating and reading -------------------------------------------------------------

    async def create_direct(self, *, me: User, user_id: str) -> tuple[ChatView, bool]:
        """Access-or-create: (the chat of the two users, whether it was created now)."""
        if user_id == me.id:
            raise invalid("a direct chat needs another user", field="user_id")
        key = ":".join(sorted((me.id, user_id)))
        async with self.db.read() as conn:
            existing = await chat_store.find_direct(conn, key)
            if existing is not None:
                return await self._view(conn, existing.id, me.id), False
            if not ids.is_id(user_id) or await user_store.get(conn, user_id) is None:
                raise not_found(ErrorCode.USER_NOT_FOUND, "user")
        try:
            async with self.db.transaction() as tx:
                chat_id = await self._create(
                    tx,
                    me=me,
                    type="direct",
                    name=None,
                    description="",
                    direct_key=key,
                    others=[user_id],
                )
                view = await self._view(tx.conn, chat_id, me.id)
        except IntegrityError:
            # The other user asked at the same moment and won; theirs is the chat.
            async with self.db.read() as conn:
                existing = await chat_store.find_direct(conn, key)
                if existing is None:
                    raise
                return await self._view(conn, existing.id, me.id), False
        return view, True

    async def create_group(
        self, *, me: User, name: str, description: str, member_ids: list[str]
    ) -> ChatView:
        others = list(dict.fromkeys(u for u in member_ids if u != me.id))
        async with self.db.transaction() as tx:
            valid = [u for u in others if ids.is_id(u)]
            found = await user_store.get_many(tx.conn, valid)
            missing = [u for u in others if u not in found]
            if missing:
                raise invalid(f"no such user: {missing[0][:64]}", field="member_ids")
            chat_id = await self._create(
                tx,
                me=me,
                type="group",
                name=name,
                description=description,
                direct_key=None,
                others=others,
            )
            return await self._view(tx.conn, chat_id, me.id)

    async def _create(
        self,
        tx: Tx,
        *,
        me: User,
        type: str,
        name: str | None,
        description: str,
        direct_key: str | None,
        others: list[str],
    ) -> str:
        now = utcnow()
        chat_id = ids.new_id()
        await chat_store.insert_chat(
            tx.conn,
            id=chat_id,
            type=type,
            name=name,
            description=description,
            direct_key=direct_key,
            last_seq=0,
            created_at=now,
            updated_at=now,
            last_activity_at=now,
        )
        creator_role = "owner" if type == "group" else "member"
        await chat_store.insert_members(
            tx.conn,
            [
                {"chat_id": chat_id, "user_id": u, "role": r, "joined_at": now}
                for u, r in [(me.id, creator_role), *((o, "member") for o in others)]
            ],
        )
        # A new chat starts at seq 0 with these members: nothing is logged, each member's
        # connections hear of it live, each with their own view.
        for user_id in (me.id, *others):
            view = await self._view(tx.conn, chat_id, user_id)
            self.log.notify_after_commit(
                tx, ChatCreated(chat=view), users=(user_id,), opens=chat_id
            )
        return chat_id

    async def _view(self, conn: AsyncConnection, chat_id: str, user_id: str) -> ChatView:
        pairs = await chat_store.memberships_page(
            conn, user_id, before=None, limit=1, chat_ids=[chat_id]
        )
        if not pairs:
            raise chat_not_found()
        return (await views.chat_views(conn, pairs, user_id, self.online))[0]

    async def get(self, *, me: User, chat_id: str) -> ChatView:
        async with self.db.read() as conn:
            await membership(conn, chat_id, me.id)
            return await self._view(conn, chat_id, me.id)

    async def list_chats(
        self, *, me: User, before: tuple[datetime, str] | None, limit: int
    ) -> tuple[list[ChatView], tuple[datetime, str] | None]:
        """A page of the caller's chats, most recent activity first, and the next page's key."""
        async with self.db.read() as conn:
            pairs = await chat_store.memberships_page(conn, me.id, before=before, limit=limit + 1)
            more = len(pairs) > limit
            pairs = pairs[:limit]
            page = await views.chat_views(conn, pairs, me.id, self.online)
        last = pairs[-1][0] if pairs and more else None
        return page, ((last.last_activity_at, last.id) if last else None)

    async def members(self, *, me: User, chat_id: str) -> list[MemberView]:
        async with self.db.read() as conn:
            await membership(conn, chat_id, me.id)
            rows = await chat_store.members(conn, chat_id)
            return await views.member_views(conn, rows, self.online)

    async def events(
        self, *, me: User, chat_id: str, after: int, limit: int
    ) -> tuple[list[str], bool]:
        """The chat's logged events after `after`, as the JSON they were delivered as."""
        async with self.db.read() as conn:
            await membership(conn, chat_id, me.id)
            rows = await event_store.after(conn, chat_id, after, limit + 1)
        return [r.data for r in rows[:limit]], len(rows) > limit

    # --- changing ---------------------------------------------------------------------------

    async def update(
        self, *, me: User, chat_id: str, name: str | None, description: str | None
    ) -> ChatView:
        async with self.db.transaction() as tx:
            chat, mine = await membership(tx.conn, chat_id, me.id, lock=True)
            if chat.type != "group":
                raise _not_a_group()
            if mine.role not in MANAGERS:
                raise forbidden("only the owner or an admin can change the chat")
            values = {
                k: v
                for k, v in (("name", name), ("description", description))
                if v is not None and v != getattr(chat, k)
            }
            if values:
                now = utcnow()
                await chat_store.update_chat(tx.conn, chat_id, updated_at=now, **values)
                count = (await chat_store.member_counts(tx.conn, [chat_id]))[chat_id]

                changed = await chat_store.get(tx.conn, chat_id)
                assert changed is not None
                await self.log.append(
                    tx,
                    chat_id,
                    lambda seq: ChatUpdated(
                        chat_id=chat_id,
                        seq=seq,
                        chat=msgspec.structs.replace(views.chat_info(changed, count), last_seq=seq),
                    ),
                    now=now,
                )
            return await self._view(tx.conn, chat_id, me.id)

    async def add_member(self, *, me: User, chat_id: str, user_id: str) -> MemberView:
        async with self.db.transaction() as tx:
            chat, mine = await membership(tx.conn, chat_id, me.id, lock=True)
            if chat.type != "group":
                raise _not_a_group()
            if mine.role not in MANAGERS:
                raise forbidden("only the owner or an admin can add members")
            user = await user_store.get(tx.conn, user_id) if ids.is_id(user_id) else None
            if user is None:
                raise not_found(ErrorCode.USER_NOT_FOUND, "user")
            if await chat_store.get_member(tx.conn, chat_id, user_id) is not None:
                raise conflict(ErrorCode.ALREADY_MEMBER, "the user is already a member")
            now = utcnow()
            await chat_store.insert_members(
                tx.conn,
                [{"chat_id": chat_id, "user_id": user_id, "role": "member", "joined_at": now}],
            )
            # The newcomer hears of the chat first (as it stands before this event), then of
            # their own arrival, so their view and the log line up.
            their_view = await self._view(tx.conn, chat_id, user_id)
            self.log.notify_after_commit(tx, ChatCreated(chat=their_view), users=(user_id,))
            await self.log.append(
                tx,
                chat_id,
                lambda seq: MemberAdded(
                    chat_id=chat_id, seq=seq, user=UserView.of(user), role="member"
                ),
                now=now,
                concerns=user_id,
                joined=(user_id,),
            )
            member = await chat_store.get_member(tx.conn, chat_id, user_id)
            assert member is not None
            return (await views.member_views(tx.conn, [member], self.online))[0]

    async def set_role(self, *, me: User, chat_id: str, user_id: str, role: Role) -> MemberView:
        async with self.db.transaction() as tx:
            chat, mine = await membership(tx.conn, chat_id, me.id, lock=True)
            if chat.type != "group":
                raise _not_a_group()
            if mine.role != "owner":
                raise forbidden("only the owner can change roles")
            target = await self._member(tx.conn, chat_id, user_id)
            if target.role == "owner":
                raise conflict(ErrorCode.CONFLICT, "the owner's role cannot be changed")
            if target.role != role:
                await chat_store.set_role(tx.conn, chat_id, user_id, role)
                await self.log.append(
                    tx,
                    chat_id,
                    lambda seq: MemberUpdated(chat_id=chat_id, seq=seq, user_id=user_id, role=role),
                    now=utcnow(),
                    concerns=user_id,
                )
            updated = await self._member(tx.conn, chat_id, user_id)
            return (await views.member_views(tx.conn, [updated], self.online))[0]

    async def remove_member(self, *, me: User, chat_id: str, user_id: str) -> None:
        async with self.db.transaction() as tx:
            chat, mine = await membership(tx.conn, chat_id, me.id, lock=True)
            if chat.type != "group":
                raise _not_a_group()
            if user_id != me.id:
                if mine.role not in MANAGERS:
                    raise forbidden("only the owner or an admin can remove members")
                target = await self._member(tx.conn, chat_id, user_id)
                if mine.role == "admin" and target.role != "member":
                    raise forbidden("an admin can remove members only")
            now = utcnow()
            successor = None
            if user_id == me.id and mine.role == "owner":
                rest = [m for m in await chat_store.members(tx.conn, chat_id) if m.user_id != me.id]
                admins = [m for m in rest if m.role == "admin"]
                heirs = admins or rest
                successor = heirs[0] if heirs else None
            await chat_store.delete_member(tx.conn, chat_id, user_id)
            await self.log.append(
                tx,
                chat_id,
                lambda seq: MemberRemoved(chat_id=chat_id, seq=seq, user_id=user_id),
                now=now,
                concerns=user_id,
                left=(user_id,),
            )
            if successor is not None:
                heir = successor.user_id
                await chat_store.set_role(tx.conn, chat_id, heir, "owner")
                await self.log.append(
                    tx,
                    chat_id,
                    lambda seq: MemberUpdated(chat_id=chat_id, seq=seq, user_id=heir, role="owner"),
                    now=now,
                    concerns=heir,
                )

    async def _member(self, conn: AsyncConnection, chat_id: str, user_id: str) -> MemberRow:
        member = await chat_store.get_member(conn, chat_id, user_id) if ids.is_id(user_id) else None
        if member is None:
            raise not_found(ErrorCode.MEMBER_NOT_FOUND, "member")
        return member

    # --- for the real-time gateway ---------------------------------------------------------

    async def positions(self, *, user_id: str) -> dict[str, int]:
        """Each chat the user is in, with its current last seq."""
        async with self.db.read() as conn:
            return await chat_store.positions(conn, user_id)

    async def log_between(
        self, chat_id: str, after: int, before: int | None = None, limit: int = 500
    ) -> list[Envelope]:
        """Logged events of a chat with after < seq (< before), as envelopes, for replay and
        gap repair. No membership check: callers deliver only to members."""
        async with self.db.read() as conn:
            rows = await event_store.after(conn, chat_id, after, limit, before=before)
        return [envelope_of(chat_id, row) for row in rows]

    async def standing(self, *, user_id: str) -> chat_store.Standing:
        """The user's chats with their last seqs, and the events that removed them from others."""
        async with self.db.read() as conn:
            return await chat_store.standing(conn, user_id)
