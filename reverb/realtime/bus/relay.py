"""The outbox and its relay: what is committed is answered at once, and published from here.

`put` never waits: envelopes go into a bounded in-memory outbox, and one task drains it to the
bus, a batch per round trip, each under a short timeout. A bus that fails or does not answer
opens a circuit breaker: for a while nothing is tried, and what would have been published is
reduced to what a later repair needs:

- a logged event (it has a seq) marks its chat for repair: the log in the database has it,
  so once the bus answers again one `bus.repair` envelope naming those chats makes every
  process's hub re-read their logs (duplicates are dropped by seq there);
- a live-only signal that only matters now (typing, presence, markers) is dropped;
- any other live-only envelope (a revoked session, a chat created) is held, bounded, and sent
  once the bus is back.

So a hung Redis costs a send nothing, and nothing committed is lost to a socket that stays
open: it arrives, late, once the bus answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import time
from collections import deque

import orjson

from reverb.domain.events import Envelope
from reverb.metrics import BUS_ERRORS, OUTBOX_DROPPED
from reverb.realtime.bus import REPAIR, Bus, BusUnavailable

log = logging.getLogger(__name__)

# A publish that takes longer than this is treated as a failure. Redis answers a pipeline of
# hundreds of PUBLISHes in about a millisecond on a LAN; far beyond that it is stopped or
# swamped, and waiting longer only delays the repair.
PUBLISH_TIMEOUT_S = 0.5
# Breaker: how long to wait before trying again after 1, 2, 3... failures in a row. The last
# one is the "short periodic check" while the bus stays away: a committed event reaches the
# sockets at most about this long after the bus answers again.
BACKOFF_S = (0.1, 0.25, 0.5, 1.0)
# Envelopes per round trip: big enough to amortise it under a burst, small enough that one
# batch is a few hundred KB at most.
MAX_BATCH = 500
# Envelopes waiting for the bus. At a few hundred bytes each this is tens of MB at worst; past
# it, logged events still become repair marks (one per chat), so nothing lasting is lost.
OUTBOX_CAPACITY = 100_000
# Live-only envelopes worth sending late (revocations, new chats), kept while the bus is away.
HELD_CAPACITY = 10_000
# Dropped, not held, while the bus is away: they only matter now.
EPHEMERAL = frozenset({"typing", "presence", "read", "delivered"})


def repair_envelope(chat_ids: set[str]) -> Envelope:
    return Envelope(type=REPAIR, data=orjson.dumps(sorted(chat_ids)))


def repaired_chats(envelope: Envelope) -> list[str]:
    chats = orjson.loads(envelope.data)
    return [c for c in chats if isinstance(c, str)] if isinstance(chats, list) else []


class Relay:
    def __init__(
        self,
        bus: Bus,
        *,
        timeout: float = PUBLISH_TIMEOUT_S,
        capacity: int = OUTBOX_CAPACITY,
        held_capacity: int = HELD_CAPACITY,
    ) -> None:
        self._bus = bus
        self._timeout = timeout
        self._capacity = capacity
        self._held_capacity = held_capacity
        self._outbox: deque[Envelope] = deque()
        self._repair: set[str] = set()
        self._held: deque[Envelope] = deque()
        self._failures = 0
        self._retry_at = 0.0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def healthy(self) -> bool:
        """The last attempt reached the bus (or none has failed yet)."""
        return self._failures == 0

    @property
    def pending(self) -> int:
        """Envelopes, repair marks and held envelopes not yet handed to the bus."""
        return len(self._outbox) + len(self._repair) + len(self._held)

    def start(self) -> None:
        # A context of its own: the relay serves every request, not the one that started it.
        self._task = asyncio.create_task(
            self._run(), name="reverb-relay", context=contextvars.Context()
        )

    def put(self, envelope: Envelope) -> None:
        """Queue an envelope for the bus. Never waits, never raises."""
        if self._closed:
            OUTBOX_DROPPED.inc()
            return
        if len(self._outbox) >= self._capacity:
            self._set_aside(envelope)
        else:
            self._outbox.append(envelope)
        self._wake.set()

    async def close(self, flush_timeout: float) -> None:
        """Refuse new envelopes; give those queued up to `flush_timeout` to reach the bus."""
        self._closed = True
        self._wake.set()
        if self._task is None:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(flush_timeout):
                await asyncio.shield(self._task)
        if not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.pending:
            log.warning("relay: %d envelopes not published at shutdown", self.pending)

    async def _run(self) -> None:
        while True:
            if not self.pending:
                if self._closed:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            wait = self._retry_at - time.monotonic()
            if wait > 0:
                # The breaker is open: what arrives meanwhile waits in the outbox (bounded),
                # so a burst during an outage costs no attempts.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        self._wake.clear()
                        await self._wake.wait()
                if self._closed and self._failures:
                    return  # shutting down with the bus away: don't wait out the backoff
                continue
            await self._attempt()

    async def _attempt(self) -> None:
        # What the bus owes first (the repair, the held envelopes), then a batch of the outbox.
        repair = set(self._repair)
        held = len(self._held)
        owed = [repair_envelope(repair)] if repair else []
        owed.extend(self._held)
        taken = [self._outbox.popleft() for _ in range(min(MAX_BATCH, len(self._outbox)))]
        batch = owed + taken
        try:
            async with asyncio.timeout(self._timeout):
                await self._bus.publish_many(batch)
        except (BusUnavailable, TimeoutError) as exc:
            if isinstance(exc, TimeoutError):
                BUS_ERRORS.labels("publish").inc()
            if self._failures == 0:
                log.warning("relay: the bus did not take a publish (%s); repairing later", exc)
            self._failures += 1
            self._retry_at = time.monotonic() + BACKOFF_S[min(self._failures, len(BACKOFF_S)) - 1]
            for envelope in taken:
                self._set_aside(envelope)
            return
        if self._failures:
            log.info("relay: the bus answers again; %d chats repaired", len(repair))
        self._failures = 0
        self._repair -= repair
        for _ in range(held):
            self._held.popleft()

    def _set_aside(self, envelope: Envelope) -> None:
        """What a publish that could not happen leaves for later."""
        if envelope.chat_id is not None and envelope.seq is not None:
            self._repair.add(envelope.chat_id)
        elif envelope.type in EPHEMERAL:
            pass  # only mattered now
        elif len(self._held) < self._held_capacity:
            self._held.append(envelope)
        else:
            OUTBOX_DROPPED.inc()
            log.warning("relay: dropped a %s envelope: too many held", envelope.type)
