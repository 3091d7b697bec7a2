"""Appending to a chat's event log, and publishing what was appended once it is committed."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from reverb.domain.events import Envelope, Event, LoggedEvent, encode
from reverb.services.publish import Publisher
from reverb.storage import chats as chat_store
from reverb.storage import events as event_store
from reverb.storage.db import Tx

E = TypeVar("E", bound=LoggedEvent)


@dataclass(slots=True)
class EventLog:
    publisher: Publisher

    async def append(
        self,
        tx: Tx,
        chat_id: str,
        build: Callable[[int], E],
        *,
        now: datetime,
        concerns: str | None = None,
        joined: tuple[str, ...] = (),
        left: tuple[str, ...] = (),
    ) -> E:
        """Take the chat's next seq, store the event built for it, publish it after commit.

        The caller must hold the chat's lock (`chats.lock`). `concerns` names the user a
        membership event is about: they get it even if no longer a member, and a resume can
        find their removal.
        """
        seq = await chat_store.next_seq(tx.conn, chat_id, now)
        event = build(seq)
        await self.record(tx, event, now=now, concerns=concerns, joined=joined, left=left)
        return event

    async def record(
        self,
        tx: Tx,
        event: LoggedEvent,
        *,
        now: datetime,
        concerns: str | None = None,
        joined: tuple[str, ...] = (),
        left: tuple[str, ...] = (),
    ) -> None:
        """Store an event whose seq the caller took with `chats.next_seq`; publish on commit."""
        row, envelope = _entry(event, now, concerns, joined, left)
        await event_store.append_many(tx.conn, [row])
        self.publisher.after_commit(tx, envelope)

    async def record_many(self, tx: Tx, events: Sequence[LoggedEvent], *, now: datetime) -> None:
        """`record` for many events (no membership changes among them) in one statement.

        They are published after commit in the order given, which must be seq order within
        each chat, as single appends publish them: an event published ahead of its predecessor
        is held back by the hub until the predecessor arrives or is read from the log.
        """
        entries = [_entry(event, now) for event in events]
        await event_store.append_many(tx.conn, [row for row, _ in entries])
        for _, envelope in entries:
            self.publisher.after_commit(tx, envelope)

    def notify_after_commit(
        self,
        tx: Tx,
        event: Event,
        *,
        chat_id: str | None = None,
        users: tuple[str, ...] = (),
        opens: str | None = None,
    ) -> None:
        """A live-only event (not logged): to a chat's members and/or to named users."""
        envelope = Envelope(
            type=event.type, data=encode(event), chat_id=chat_id, user_ids=users, opens=opens
        )
        self.publisher.after_commit(tx, envelope)


def _entry(
    event: LoggedEvent,
    now: datetime,
    concerns: str | None = None,
    joined: tuple[str, ...] = (),
    left: tuple[str, ...] = (),
) -> tuple[dict[str, Any], Envelope]:
    """The event's `chat_events` row and the envelope it is published in: one encoding for both
    (the log stores it as text, decoded once here)."""
    data = encode(event)
    row = {
        "chat_id": event.chat_id,
        "seq": event.seq,
        "type": event.type,
        "data": data.decode(),
        "user_id": concerns,
        "created_at": now,
    }
    envelope = Envelope(
        type=event.type,
        data=data,
        chat_id=event.chat_id,
        seq=event.seq,
        user_ids=(concerns,) if concerns else (),
        joined=joined,
        left=left,
    )
    return row, envelope
