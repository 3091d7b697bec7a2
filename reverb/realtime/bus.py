"""The event bus: services publish envelopes after commit; each process's hub subscribes once.

`MemoryBus` is the single-process implementation (the default, no set-up). It is lossless
within the process; the Redis implementation is treated as lossy, and clients cover gaps by
resuming from their last `seq`, which the database answers.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from reverb.domain.events import Envelope


class Bus(ABC):
    @abstractmethod
    async def publish(self, envelope: Envelope) -> None:
        """Hand an envelope to every subscriber, in any process. Never raises for delivery."""

    @abstractmethod
    def subscribe(self) -> AbstractAsyncContextManager[AsyncIterator[Envelope]]:
        """An async context manager yielding the stream of envelopes published from now on."""

    async def close(self) -> None:  # noqa: B027 -- optional hook
        """Release connections."""


class MemoryBus(Bus):
    def __init__(self) -> None:
        self._subscribers: set[asyncio.Queue[Envelope]] = set()

    async def publish(self, envelope: Envelope) -> None:
        for queue in self._subscribers:
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
