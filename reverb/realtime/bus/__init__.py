"""The event bus: services publish envelopes after commit; each process's hub subscribes once.

Two implementations behind one interface: `MemoryBus` (one process, the default, no set-up) and
`RedisBus` (`REDIS_URL` set: any number of processes). The database is the source of truth; the
bus may lose envelopes (Redis pub/sub does, during an outage), and the hub repairs gaps from the
chat event log, so clients still get every logged event once, in order.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager

from reverb.domain.events import Envelope

log = logging.getLogger(__name__)

# Yielded by a subscription after it lost and regained its connection: envelopes published in
# between may be gone, so the hub re-reads what it tracks from the database.
RECONNECTED = "bus.reconnected"
# Published by a relay once the bus answers again after it failed; its data is a JSON list of
# the chats whose logged events it could not publish. Every hub re-reads those chats' logs.
REPAIR = "bus.repair"


class BusUnavailable(Exception):
    """The bus did not take a publish (error or no answer in time): its envelopes may be lost."""


class Bus(ABC):
    @abstractmethod
    async def publish_many(self, envelopes: Sequence[Envelope]) -> None:
        """Hand envelopes to every subscriber, in any process, in the order given (one round
        trip for all of them where the bus allows). Raises `BusUnavailable` when the bus did
        not take them; it never retries: the caller (the relay) decides what happens next."""

    async def publish(self, envelope: Envelope) -> None:
        """`publish_many` of one envelope, for callers that cannot act on a failure: it is
        logged and counted (subscribers repair what they missed from the event log)."""
        try:
            await self.publish_many((envelope,))
        except BusUnavailable as exc:
            log.warning("bus: publish failed: %s", exc)

    @abstractmethod
    def subscribe(self) -> AbstractAsyncContextManager[AsyncIterator[Envelope]]:
        """An async context manager yielding the stream of envelopes published from now on."""

    async def close(self) -> None:  # noqa: B027 -- optional hook
        """Release connections."""
