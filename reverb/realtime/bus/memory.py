"""The single-process bus: lossless, ordered, no set-up. Sharded like the Redis bus (the same
`route`), so what a subscription receives does not depend on which bus runs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Collection, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from reverb.domain.events import Envelope
from reverb.realtime.bus import BROADCAST, Bus, Subscription, route


class _MemorySubscription(Subscription):
    def __init__(self) -> None:
        # Unbounded: the only subscriber is the hub, which drains at once into bounded
        # per-connection queues; backpressure is applied there, per connection.
        self.queue: asyncio.Queue[Envelope] = asyncio.Queue()
        self.topics: set[str] = {BROADCAST}

    async def __anext__(self) -> Envelope:
        return await self.queue.get()

    async def follow(self, topics: Collection[str]) -> None:
        self.topics.update(topics)

    def following(self, topic: str) -> bool:
        return topic in self.topics

    def unfollow(self, topics: Collection[str]) -> None:
        self.topics.difference_update(topics)
        self.topics.add(BROADCAST)


class MemoryBus(Bus):
    def __init__(self) -> None:
        self._subscribers: set[_MemorySubscription] = set()

    async def publish_many(self, envelopes: Sequence[Envelope]) -> None:
        copies = [copy for envelope in envelopes for copy in route(envelope)]
        for sub in self._subscribers:
            for topic, envelope in copies:
                if topic in sub.topics:
                    sub.queue.put_nowait(envelope)

    def subscribe(self) -> AbstractAsyncContextManager[Subscription]:
        return self._subscribe()

    @asynccontextmanager
    async def _subscribe(self) -> AsyncIterator[Subscription]:
        sub = _MemorySubscription()
        self._subscribers.add(sub)
        try:
            yield sub
        finally:
            self._subscribers.discard(sub)
