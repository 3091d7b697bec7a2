"""The single-process bus: lossless, ordered, no set-up."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from reverb.domain.events import Envelope
from reverb.realtime.bus import Bus


class MemoryBus(Bus):
    def __init__(self) -> None:
        self._subscribers: set[asyncio.Queue[Envelope]] = set()

    async def publish_many(self, envelopes: Sequence[Envelope]) -> None:
        for queue in self._subscribers:
            for envelope in envelopes:
                queue.put_nowait(envelope)

    def subscribe(self) -> AbstractAsyncContextManager[AsyncIterator[Envelope]]:
        return self._subscribe()

    @asynccontextmanager
    async def _subscribe(self) -> AsyncIterator[AsyncIterator[Envelope]]:
        # Unbounded: the only subscriber is the hub, which drains at once into bounded
        # per-connection queues; backpressure is applied there, per connection.
        queue: asyncio.Queue[Envelope] = asyncio.Queue()
        self._subscribers.add(queue)

        async def stream() -> AsyncIterator[Envelope]:
            while True:
                yield await queue.get()

        try:
            yield stream()
        finally:
            self._subscribers.discard(queue)
