"""The event bus: services publish envelopes after commit; each process's hub subscribes once.

Two implementations behind one interface: `MemoryBus` (one process, the default, no set-up) and
`RedisBus` (`REDIS_URL` set: any number of processes). The database is the source of truth; the
bus may lose envelopes (Redis pub/sub does, during an outage), and the hub repairs gaps from the
chat event log, so clients still get every logged event once, in order.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager

from reverb.domain.events import Envelope

# Yielded by a subscription after it lost and regained its connection: envelopes published in
# between may be gone, so the hub re-reads what it tracks from the database.
RECONNECTED = "bus.reconnected"


class Bus(ABC):
    @abstractmethod
    async def publish(self, envelope: Envelope) -> None:
        """Hand an envelope to every subscriber, in any process. Never raises for delivery."""

    @abstractmethod
    def subscribe(self) -> AbstractAsyncContextManager[AsyncIterator[Envelope]]:
        """An async context manager yielding the stream of envelopes published from now on."""

    async def close(self) -> None:  # noqa: B027 -- optional hook
        """Release connections."""
