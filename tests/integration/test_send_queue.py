"""The send queue keyed by chat: one transaction in flight per chat, sends of a chat in arrival
order, and on PostgreSQL chats committed in parallel, a held chat holding up only itself
(SQLite has one writer: one batch at a time, taking every chat that waits)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Sequence
from contextlib import asynccontextmanager
from datetime import datetime

import pytest
from sqlalchemy import select, text

from reverb.domain.events import LoggedEvent
from reverb.domain.wire import MessageView
from reverb.services.eventlog import EventLog
from reverb.services.sendbatch import SendBatcher, Sent
from reverb.storage.db import Database, Tx
from reverb.storage.tables import chats
from tests.helpers import group, register
from tests.integration.test_send_batches import (
    WAIT_S,
    App,
    Batches,
    blocked_by,
    until,
)
from tests.integration.test_send_batches import app as app


async def viewed(sending: Awaitable[Sent]) -> tuple[MessageView, bool]:
    message, new = await sending
    return message.view, new


def batch_tasks() -> int:
    return len([t for t in asyncio.all_tasks() if t.get_name() == "send batches"])


async def handed_in(batches: SendBatcher, count: int) -> None:
    """Until `count` sends wait in the queue (each caller hands its send in synchronously)."""
    async with asyncio.timeout(WAIT_S):
        while batches.queued < count:
            await asyncio.sleep(0)


async def waiting_for_locks(db: Database) -> int:
    """PostgreSQL backends of this database waiting for any lock."""
    async with db.read() as conn:
        found = await conn.execute(
            text(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
        )
        return int(found.scalar_one())


class Pause:
    """Holds the first batch that stores a message of `chat_id` inside its transaction (chat
    row locked, SQLite write lock held) until released."""

    def __init__(self, chat_id: str) -> None:
        self.chat_id = chat_id
        self.entered = asyncio.Event()
        self.go = asyncio.Event()


@asynccontextmanager
async def pausing(monkeypatch: pytest.MonkeyPatch, chat_id: str) -> AsyncIterator[Pause]:
    pause = Pause(chat_id)
    record_many = EventLog.record_many

    async def held(self: EventLog, tx: Tx, events: Sequence[LoggedEvent], *, now: datetime) -> None:
        if not pause.go.is_set() and any(e.chat_id == chat_id for e in events):
            pause.entered.set()
            await pause.go.wait()
        await record_many(self, tx, events, now=now)

    monkeypatch.setattr(EventLog, "record_many", held)
    try:
        yield pause
    finally:
        pause.go.set()


async def test_a_chat_has_one_transaction_in_flight_and_other_chats_do_not_wait_for_it(
    app: App, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = await register(app.client), await register(app.client)
    me = await app.user(a)
    busy, free = await group(app.client, a, b), await group(app.client, a, b)

    def start(chat_id: str, content: str) -> asyncio.Task[tuple[MessageView, bool]]:
        return asyncio.create_task(
            viewed(app.messages.send(me=me, chat_id=chat_id, content=content))
        )

    batches = app.messages.batches

    before = Batches.now()
    async with pausing(monkeypatch, busy) as pause:
        first = start(busy, "b1")
        await asyncio.wait_for(pause.entered.wait(), WAIT_S)  # its batch is in its transaction
        more = [start(busy, "b2"), start(busy, "b3")]
        other = start(free, "f1")  # handed in after them (tasks start in order)
        if db.is_sqlite:
            # One writer: nothing else may start while a batch is in flight.
            await handed_in(batches, 3)
            assert (batch_tasks(), batches.in_flight) == (1, 1)
        else:
            # Another chat commits meanwhile, in a batch of its own...
            view, new = await asyncio.wait_for(other, WAIT_S)
            assert (view.chat_id, view.seq, new) == (free, 1, True)
            # ...while the busy chat's later sends wait for its batch, not in a second
            # transaction (which would wait for the first one's row lock).
            assert (batches.in_flight, batches.queued) == (1, 2)
            assert await waiting_for_locks(db) == 0
            assert not first.done() and not any(t.done() for t in more)
    results = [await asyncio.wait_for(t, WAIT_S) for t in (first, *more, other)]
    # Arrival order within the chat, each send committed once.
    assert [(v.chat_id, v.seq, v.content, new) for v, new in results] == [
        (busy, 1, "b1", True),
        (busy, 2, "b2", True),
        (busy, 3, "b3", True),
        (free, 1, "f1", True),
    ]
    done = Batches.now() - before
    if db.is_sqlite:
        # The waiting chats, busy and free alike, went together in the next batch.
        assert (done.count, done.sends, batches.peak_in_flight) == (2, 4, 1)
    else:
        assert (done.count, done.sends, batches.peak_in_flight) == (3, 4, 2)
    assert batch_tasks() == 0


async def test_a_chat_locked_by_another_transaction_holds_up_only_its_own_sends(
    app: App, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = await register(app.client), await register(app.client)
    me = await app.user(a)
    locked, free = await group(app.client, a, b), await group(app.client, a, b)

    def start(chat_id: str, content: str) -> asyncio.Task[tuple[MessageView, bool]]:
        return asyncio.create_task(
            viewed(app.messages.send(me=me, chat_id=chat_id, content=content))
        )

    batches = app.messages.batches

    before = Batches.now()
    if db.is_sqlite:
        # SQLite locks the whole database, not a chat: a writer holding it holds up every
        # send, and they all go in one batch once it lets go. (The writer here is one of the
        # app's own batches: SQLite statements run on the event loop, so another connection
        # of this process waiting for the lock would hold up the loop itself.)
        async with pausing(monkeypatch, locked) as pause:
            first = start(locked, "l1")
            await asyncio.wait_for(pause.entered.wait(), WAIT_S)
            others = [start(locked, "l2"), start(free, "f1"), start(locked, "l3")]
            await handed_in(batches, 3)
            assert (batch_tasks(), batches.in_flight) == (1, 1)
        results = [await asyncio.wait_for(t, WAIT_S) for t in (first, *others)]
        assert [(v.chat_id, v.seq, v.content) for v, _ in results] == [
            (locked, 1, "l1"),
            (locked, 2, "l2"),
            (free, 1, "f1"),
            (locked, 3, "l3"),
        ]
        done = Batches.now() - before
        assert (done.count, done.sends, done.fallbacks, batches.peak_in_flight) == (2, 4, 0, 1)
        return

    async with db.engine.connect() as conn:
        tx = await conn.begin()
        pid = (await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one()
        await conn.execute(select(chats.c.id).where(chats.c.id == locked).with_for_update())
        # Handed in together, so taken into one batch: the free chat is committed, and the
        # locked one is left to a batch that waits for it.
        first, free_1 = start(locked, "l1"), start(free, "f1")
        view, _ = await asyncio.wait_for(free_1, WAIT_S)
        assert (view.chat_id, view.seq) == (free, 1)
        await until(lambda: blocked_by(db, pid), 1)  # l1's transaction waits for the lock
        more = [start(locked, "l2"), start(locked, "l3")]
        await handed_in(batches, 2)
        view, _ = await asyncio.wait_for(start(free, "f2"), WAIT_S)
        assert (view.chat_id, view.seq) == (free, 2)
        # Still one transaction of the locked chat, and its later sends queued behind it.
        assert await blocked_by(db, pid) == 1
        assert (batches.in_flight, batches.queued) == (1, 2)
        assert not first.done() and not any(t.done() for t in more)
        await tx.rollback()
    results = [await asyncio.wait_for(t, WAIT_S) for t in (first, *more)]
    assert [(v.seq, v.content, new) for v, new in results] == [
        (1, "l1", True),
        (2, "l2", True),
        (3, "l3", True),
    ]
    done = Batches.now() - before
    # [l1, f1], l1 again (waiting), [f2], [l2, l3]
    assert (done.count, done.sends, done.fallbacks) == (4, 6, 0)
    assert batches.peak_in_flight == 2
