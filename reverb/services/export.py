"""A user's data, as one JSON document: profile, chats and the messages they sent.

Written as it is read, a batch at a time, so an account with a million messages costs the
server one batch of memory, not the whole document."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

from msgspec import Struct

from reverb.domain.users import User
from reverb.domain.wire import ChatView, MessageView, MeView, encode, rfc3339
from reverb.services import views
from reverb.services.chats import ChatService
from reverb.storage import messages as message_store
from reverb.storage import users as user_store
from reverb.storage.db import Database
from reverb.storage.types import utcnow

# Items per read: a few hundred kilobytes of JSON at most, and few round trips.
BATCH = 500


class Export(Struct, kw_only=True):
    """The document's shape (for the API's schema; the document itself is streamed)."""

    exported_at: str
    profile: MeView
    chats: list[ChatView]
    messages: list[MessageView]


@dataclass(slots=True)
class DataExport:
    db: Database
    chats: ChatService

    async def document(self, user: User) -> AsyncIterator[bytes]:
        async with self.db.read() as conn:
            fresh = await user_store.get(conn, user.id)
        assert fresh is not None
        yield b'{"exported_at":' + encode(rfc3339(utcnow())) + b',"profile":'
        yield encode(MeView.of(fresh)) + b',"chats":['
        before = None
        first = True
        while True:
            page, before = await self.chats.list_chats(me=user, before=before, limit=BATCH)
            for chat in page:
                yield (b"" if first else b",") + encode(chat)
                first = False
            if before is None:
                break
        yield b'],"messages":['
        after: str | None = None
        first = True
        while True:
            async with self.db.read() as conn:
                rows = await message_store.by_sender(conn, user.id, after=after, limit=BATCH)
                page_views = await views.message_views(conn, rows, user.id)
            for message in page_views:
                yield (b"" if first else b",") + encode(message)
                first = False
            if len(rows) < BATCH:
                break
            after = rows[-1].id
        yield b"]}"
