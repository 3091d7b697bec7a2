"""One WebSocket connection's outgoing side: a bounded queue drained by a single writer task.

The writer is the only code that writes to the socket, so frames never interleave. It keeps the
last seq it sent of each chat: a logged event at or below it is a duplicate and skipped; one
beyond the next expected seq means something was missed (a lossy bus, the seam between a
replay and live delivery), and the missing events are read from the event log first. So each
connection gets every logged event of its chats once, in order, whatever the bus does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from reverb.domain.events import Envelope
from reverb.metrics import EVENTS_DELIVERED, GAP_FILLS, WS_CLOSES
from reverb.realtime.protocol import CLOSE_TOO_SLOW, CLOSE_UNAUTHORIZED
from reverb.realtime.transport import Transport

log = logging.getLogger(__name__)

# Dropped first when a connection's queue is full: losing one costs nothing lasting.
EPHEMERAL = frozenset({"typing", "presence", "read", "delivered"})
REPLAY_PAGE = 500
# Marks a connection whose socket failed under the writer: nothing more is queued for it.
CLOSE_GONE = 1006

# (chat_id, after, before) -> the logged events in between, oldest first
ReadLog = Callable[[str, int, int | None], Awaitable[list[Envelope]]]


@dataclass(frozen=True, slots=True)
class OwnFrame:
    """A frame for this connection only (ready, ack, error, pong)."""

    data: bytes


@dataclass(frozen=True, slots=True)
class CatchUp:
    """Send everything logged in this chat after what was sent last."""

    chat_id: str


Item = Envelope | OwnFrame | CatchUp


class Connection:
    def __init__(
        self,
        *,
        user_id: str,
        transport: Transport,
        read_log: ReadLog,
        max_queue: int,
        on_left: Callable[[Connection, str], None],
    ) -> None:
        self.user_id = user_id
        self.positions: dict[str, int] = {}  # chat -> last seq sent (or to start after)
        self._transport = transport
        self._read_log = read_log
        self._max_queue = max_queue
        self._on_left = on_left
        self._queue: deque[Item] = deque()
        # The writer task runs only while there is something queued (an idle socket holds no
        # task). Started: the connection is ready to write at all (`start`).
        self._writer: asyncio.Task[None] | None = None
        self._started = False
        self.closing: int | None = None

    @property
    def _idle(self) -> bool:
        """Nothing queued and no writer at work: only then may a producer write an event
        itself, since nothing can be ahead of it."""
        return self._started and self._writer is None and not self._queue

    def start(self) -> None:
        """Begin writing (what was queued so far goes first)."""
        self._started = True
        self._wake()

    async def stop(self, grace: float) -> bool:
        """Stop writing: when the server is closing the connection, give the writer up to
        `grace` seconds to get the close frame out first. True if no writer had to be cut
        short."""
        writer = self._writer
        if writer is None:
            return True
        if self.closing is not None:
            with contextlib.suppress(TimeoutError, Exception):
                await asyncio.wait_for(asyncio.shield(writer), grace)
        finished = writer.done()
        writer.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await writer
        return finished

    def _wake(self) -> None:
        if self._started and self._writer is None and (self._queue or self.closing is not None):
            self._writer = asyncio.create_task(self._run_writer(), name=f"ws-writer-{self.user_id}")

    # --- producers (hub and gateway; never block) ----------------------------------------------

    def push(self, item: Item) -> None:
        if self.closing is not None:
            return
        if self._idle and self._deliver_now(item):
            return
        if len(self._queue) >= self._max_queue:
            if isinstance(item, Envelope) and item.type in EPHEMERAL:
                return  # dropped: nothing lasting is lost
            if not self._evict_ephemeral():
                self.close_soon(CLOSE_TOO_SLOW, "too slow: resume with since")
                return
        self._queue.append(item)
        self._wake()

    def _deliver_now(self, item: Item) -> bool:
        """The writer's work for `item`, done here without waking it, when that needs no wait:
        a reply, or the next event of its chat (or one of no chat), written to a socket that
        takes it now. The big-chat fan-out path: one write per connection instead of one task
        switch. Whatever changes what this connection follows (a removal, a revocation) still
        goes through the writer."""
        if isinstance(item, CatchUp):
            return False
        write_now = self._transport.write_now
        if isinstance(item, OwnFrame):
            return write_now(item.data)
        env = item
        if env.type == "session.revoked" or env.left:
            return False
        if env.seq is None or env.chat_id is None:
            if not write_now(env.data):
                return False
            EVENTS_DELIVERED.inc()
            return True
        last = self._unsent(env)
        if last is None:
            return True  # not (or no longer) ours, or already sent: nothing to do
        if env.seq != last + 1 or not write_now(env.data):
            return False
        self._sent_logged(env)
        return True

    def _evict_ephemeral(self) -> bool:
        for i, queued in enumerate(self._queue):
            if isinstance(queued, Envelope) and queued.type in EPHEMERAL:
                del self._queue[i]
                return True
        return False

    def close_soon(self, code: int, reason: str, *, flush: bool = False) -> None:
        """Stop queueing and close. With `flush`, what is already queued (replies the client
        is owed) goes out first; otherwise the close follows the frame being written, if any.
        A client that has stopped reading gets the close frame after what is in flight, if it
        ever reads."""
        if self.closing is None:
            WS_CLOSES.labels(str(code)).inc()
            self.closing = code
            if not flush:
                self._queue.clear()
            self._close_reason = reason
            self._wake()

    # --- the writer -----------------------------------------------------------------------------

    async def _run_writer(self) -> None:
        try:
            await self._drain()
        except Exception as exc:
            # The peer went away mid-write (or the socket failed): the reading side sees the
            # same and ends the session; nothing more can be written here.
            log.debug("ws writer for %s stopped: %r", self.user_id, exc)
            self.closing = self.closing or CLOSE_GONE
            self._queue.clear()
        finally:
            self._writer = None

    async def _drain(self) -> None:
        while True:
            if not self._queue:
                if self.closing is not None:
                    await self._transport.close(self.closing, self._close_reason)
                return
            item = self._queue.popleft()
            if isinstance(item, OwnFrame):
                await self._send(item.data)
            elif isinstance(item, CatchUp):
                await self._catch_up(item.chat_id)
            else:
                await self._deliver(item)

    async def _deliver(self, env: Envelope) -> None:
        if env.seq is None or env.chat_id is None:
            await self._send(env.data)
            EVENTS_DELIVERED.inc()
            if env.type == "session.revoked":
                self.close_soon(CLOSE_UNAUTHORIZED, "session revoked")
            return
        last = self._unsent(env)
        if last is None:
            return  # not (or no longer) ours, or already sent
        if env.seq > last + 1:
            GAP_FILLS.labels("connection").inc()
            for missing in await self._read_log(env.chat_id, last, env.seq):
                await self._send_logged(missing)
            if self.positions.get(env.chat_id) is None:
                return
        await self._send_logged(env)

    async def _send_logged(self, env: Envelope) -> None:
        if self._unsent(env) is None:
            return
        await self._send(env.data)
        self._sent_logged(env)

    def _unsent(self, env: Envelope) -> int | None:
        """The last seq sent of the event's chat, if the event is of a chat this connection
        follows and not yet sent; else None."""
        assert env.chat_id is not None and env.seq is not None
        last = self.positions.get(env.chat_id)
        return last if last is not None and env.seq > last else None

    def _own_removal(self, env: Envelope) -> bool:
        return env.type == "member.removed" and self.user_id in env.left

    def _sent_logged(self, env: Envelope) -> None:
        assert env.chat_id is not None and env.seq is not None
        EVENTS_DELIVERED.inc()
        self.positions[env.chat_id] = env.seq
        if self._own_removal(env):
            # Its own removal is the last thing a member hears of a chat.
            del self.positions[env.chat_id]
            self._on_left(self, env.chat_id)

    async def _send(self, data: bytes) -> None:
        if not self._transport.write_now(data):
            await self._transport.send(data)

    async def _catch_up(self, chat_id: str) -> None:
        while (last := self.positions.get(chat_id)) is not None:
            page = await self._read_log(chat_id, last, None)
            if not self._replay_at_once(chat_id, page):
                for env in page:
                    await self._send_logged(env)
            if len(page) < REPLAY_PAGE:
                return

    def _replay_at_once(self, chat_id: str, page: list[Envelope]) -> bool:
        """A page of replay in one socket write (a resume far behind is thousands of events),
        when the server offers that and the page is plain: contiguous, and not this member's
        own removal (after which nothing more of the chat is sent)."""
        last = self.positions.get(chat_id)
        if last is None or not page:
            return False
        for expected, env in enumerate(page, start=last + 1):
            if env.seq != expected or self._own_removal(env):
                return False
        if not self._transport.write_many_now([env.data for env in page]):
            return False
        EVENTS_DELIVERED.inc(len(page))
        self.positions[chat_id] = last + len(page)
        return True
