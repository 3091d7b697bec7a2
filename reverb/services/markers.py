"""Read and delivered markers, written in batches and announced at most once per interval.

A client marks as it reads: in a busy group that is a frame per message per member, and
written one at a time each would be a write transaction and an event to every member. Here a
mark only records the wanted value for its (chat, member), the highest winning; a task writes
all of them in one transaction at most once per `MARKER_INTERVAL_S`, and announces only the
markers that moved, each once, with its latest value. A REST call waits for the write that
includes its mark (what it changed is there when it returns); a WebSocket frame need not.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from dataclasses import dataclass, field

from reverb import ids
from reverb.domain.events import DeliveredMarker, Envelope, ReadMarker, encode
from reverb.domain.users import User
from reverb.metrics import MARKER_BATCH_SIZE
from reverb.services.chats import chat_not_found
from reverb.services.publish import Publisher
from reverb.storage import chats as chat_store
from reverb.storage.chats import Raise
from reverb.storage.db import Database
from reverb.storage.outage import DatabaseUnavailable

log = logging.getLogger(__name__)

# Writes (and so announcements) of markers happen at most this often. Short enough that a
# receipt feels immediate to a person; long enough that a group reading a burst of messages
# costs one transaction per interval instead of one per member and message.
MARKER_INTERVAL_S = 0.05
# Members' markers per transaction: bounds its statement size and locks; more wait one round.
MAX_BATCH = 2_000

Pair = tuple[str, str]  # (chat id, user id)


@dataclass(slots=True)
class _Wanted:
    read: int = -1
    delivered: int = -1
    waiters: list[asyncio.Future[None]] = field(default_factory=list)

    def answer(self, error: BaseException | None = None) -> None:
        """Tell the callers waiting for this mark (those still waiting) how it went."""
        for waiter in self.waiters:
            if waiter.done():
                continue
            if error is None:
                waiter.set_result(None)
            else:
                waiter.set_exception(error)


class Markers:
    def __init__(
        self, db: Database, publisher: Publisher, *, interval: float = MARKER_INTERVAL_S
    ) -> None:
        self._db = db
        self._publisher = publisher
        self._interval = interval
        self._wanted: dict[Pair, _Wanted] = {}
        self._task: asyncio.Task[None] | None = None
        self._last_flush = -interval

    async def mark(self, *, me: User, chat_id: str, seq: int, read: bool) -> None:
        """Raise the caller's read (and with it delivered) or delivered marker to
        min(seq, last_seq), and return once that is written. 404 for a chat the caller is
        not a member of."""
        if not ids.is_id(chat_id):
            raise chat_not_found()
        future = asyncio.get_running_loop().create_future()
        self._want(me.id, chat_id, seq, read).waiters.append(future)
        await future

    def mark_soon(self, *, user_id: str, chat_id: str, seq: int, read: bool) -> None:
        """As `mark`, without waiting: for a member known to be one (its socket follows the
        chat). A membership that ended meanwhile makes the mark a no-op."""
        self._want(user_id, chat_id, seq, read)

    async def close(self) -> None:
        """Write what is wanted so far."""
        while self._task is not None:
            await asyncio.shield(self._task)

    def _want(self, user_id: str, chat_id: str, seq: int, read: bool) -> _Wanted:
        wanted = self._wanted.get((chat_id, user_id))
        if wanted is None:
            wanted = self._wanted[(chat_id, user_id)] = _Wanted()
        if read:
            wanted.read = max(wanted.read, seq)
        else:
            wanted.delivered = max(wanted.delivered, seq)
        if self._task is None:
            # A context of its own: the task writes for every caller, not the one that woke it.
            self._task = asyncio.create_task(
                self._run(), name="reverb-markers", context=contextvars.Context()
            )
        return wanted

    async def _run(self) -> None:
        try:
            while self._wanted:
                wait = self._last_flush + self._interval - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                self._last_flush = time.monotonic()
                pairs = sorted(self._wanted)[:MAX_BATCH]  # one lock order in every process
                batch = {pair: self._wanted.pop(pair) for pair in pairs}
                try:
                    await self._write(batch)
                except Exception as exc:
                    if not isinstance(exc, DatabaseUnavailable):  # that one is logged already
                        log.warning("markers: a batch of %d failed: %r", len(batch), exc)
                    for wanted in batch.values():
                        wanted.answer(exc)
        finally:
            self._task = None

    async def _write(self, batch: dict[Pair, _Wanted]) -> None:
        MARKER_BATCH_SIZE.observe(len(batch))
        raises: list[Raise] = []
        async with self._db.transaction() as tx:
            current = await chat_store.markers(tx.conn, list(batch))
            for pair, wanted in batch.items():
                now = current.get(pair)
                if now is None:
                    wanted.answer(chat_not_found())
                    continue
                chat_id, user_id = pair
                read = min(wanted.read, now.last_seq)
                delivered = min(max(wanted.delivered, read), now.last_seq)
                read_moved = read > now.last_read_seq
                delivered_moved = delivered > now.last_delivered_seq
                if not (read_moved or delivered_moved):
                    continue
                raises.append(Raise(chat_id, user_id, read, delivered))
                # Reading implies delivery: a `read` says both, a `delivered` only the latter.
                if read_moved:
                    event: ReadMarker | DeliveredMarker = ReadMarker(
                        chat_id=chat_id, user_id=user_id, seq=read
                    )
                else:
                    event = DeliveredMarker(chat_id=chat_id, user_id=user_id, seq=delivered)
                self._publisher.after_commit(
                    tx, Envelope(type=event.type, data=encode(event), chat_id=chat_id)
                )
            await chat_store.raise_markers(tx.conn, raises)
        for wanted in batch.values():
            wanted.answer()
