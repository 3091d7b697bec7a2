"""The Redis pub/sub bus: every process publishes to and subscribes to one channel.

Pub/sub is lossy by design (nothing is kept for a subscriber that is away), so publishing
never fails a request, and a subscription that reconnects says so (`RECONNECTED`): the hub then
re-reads the event log for what it tracks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import orjson
from redis.asyncio import Redis
from redis.exceptions import ConnectionError, RedisError

from reverb.domain.events import Envelope
from reverb.metrics import BUS_ERRORS
from reverb.realtime.bus import RECONNECTED, Bus, BusUnavailable

log = logging.getLogger(__name__)

CHANNEL = "reverb:events"
# Waits between reconnection attempts: quick at first, then no busier than once a second.
BACKOFF_S = (0.05, 0.1, 0.25, 0.5, 1.0)


def to_wire(e: Envelope) -> bytes:
    header = orjson.dumps(
        {
            "t": e.type,
            "c": e.chat_id,
            "s": e.seq,
            "u": e.user_ids,
            "j": e.joined,
            "l": e.left,
            "x": e.exclude,
            "o": e.opens,
        }
    )
    return header + b"\n" + e.data.encode()


def from_wire(raw: bytes) -> Envelope:
    header, _, data = raw.partition(b"\n")
    h = orjson.loads(header)
    return Envelope(
        type=h["t"],
        data=data.decode(),
        chat_id=h["c"],
        seq=h["s"],
        user_ids=tuple(h["u"]),
        joined=tuple(h["j"]),
        left=tuple(h["l"]),
        exclude=h.get("x"),
        opens=h.get("o"),
    )


class RedisBus(Bus):
    def __init__(self, redis: Redis, channel: str = CHANNEL) -> None:
        self._redis = redis
        self._channel = channel

    async def publish_many(self, envelopes: Sequence[Envelope]) -> None:
        wires = [to_wire(envelope) for envelope in envelopes]
        try:
            try:
                await self._pipeline(wires)
            except (ConnectionError, OSError):
                # A pooled connection that went stale across a Redis restart fails at once; a
                # fresh one succeeds, and these envelopes are not lost with the stale one.
                await self._pipeline(wires)
        except (RedisError, OSError) as exc:
            BUS_ERRORS.labels("publish").inc()
            raise BusUnavailable(type(exc).__name__) from exc

    async def _pipeline(self, wires: list[bytes]) -> None:
        async with self._redis.pipeline(transaction=False) as pipe:
            for wire in wires:
                pipe.publish(self._channel, wire)
            await pipe.execute()

    def subscribe(self) -> AbstractAsyncContextManager[AsyncIterator[Envelope]]:
        return self._subscribe()

    @asynccontextmanager
    async def _subscribe(self) -> AsyncIterator[AsyncIterator[Envelope]]:
        current = [self._redis.pubsub(ignore_subscribe_messages=True)]

        async def stream() -> AsyncIterator[Envelope]:
            failures = 0
            connected = False
            while True:
                pubsub = current[0]
                try:
                    if not connected:
                        await pubsub.subscribe(self._channel)
                        connected = True
                        if failures:
                            log.info("bus: subscription restored")
                            yield Envelope(type=RECONNECTED, data="")
                        failures = 0
                    message = await pubsub.get_message(timeout=1.0)
                except (RedisError, OSError) as exc:
                    if connected or failures == 0:
                        log.warning("bus: subscription lost: %s", type(exc).__name__)
                    BUS_ERRORS.labels("subscribe").inc()
                    connected = False
                    with contextlib.suppress(RedisError, OSError):
                        await pubsub.aclose()  # type: ignore[no-untyped-call]
                    current[0] = self._redis.pubsub(ignore_subscribe_messages=True)
                    await asyncio.sleep(BACKOFF_S[min(failures, len(BACKOFF_S) - 1)])
                    failures += 1
                    continue
                if message is not None and message.get("type") == "message":
                    try:
                        yield from_wire(message["data"])
                    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
                        log.warning("bus: dropped a malformed envelope")

        try:
            yield stream()
        finally:
            with contextlib.suppress(RedisError, OSError):
                await current[0].aclose()  # type: ignore[no-untyped-call]
