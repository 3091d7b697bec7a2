"""The event bus: one suite run against MemoryBus and RedisBus, plus Redis outages.

RedisBus subscribes lazily (on the first read of the stream) and Redis pub/sub keeps nothing
for a subscriber that is not there yet, so every subscription here is first synchronised: probes
are published until one arrives, then a marker flushes the probes still in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from uuid import uuid4

import pytest
from prometheus_client import REGISTRY
from redis.asyncio import Redis

from reverb.domain.events import Envelope
from reverb.realtime.bus import RECONNECTED, Bus, BusUnavailable
from reverb.realtime.bus.memory import MemoryBus
from reverb.realtime.bus.redis import RedisBus
from tests.conftest import REDIS_TEST_URL
from tests.redis_server import RedisServer, free_port

PROBE = "test.probe"
WAIT_S = 10.0  # upper bound for anything that should happen promptly

SAMPLES = (
    Envelope(
        type="message.created",
        data='{"type":"message.created","content":"héllo 👋🏽 中文 שלום \\u0000 \u2028 end"}',
        chat_id="chat-1",
        seq=1,
        user_ids=("u1", "u2"),
    ),
    Envelope(
        type="member.added",
        data='{"type":"member.added"}\nsecond line\r\n\tand a tab',
        chat_id="chat-1",
        seq=2,
        user_ids=("u3",),
        joined=("u3",),
    ),
    Envelope(
        type="member.removed",
        data='{"type":"member.removed","user_id":"u2"}',
        chat_id="chat-1",
        seq=3,
        user_ids=("u2",),
        left=("u2",),
    ),
    Envelope(type="typing", data='{"type":"typing"}', chat_id="chat-1", exclude="u1"),
    Envelope(type="chat.created", data='{"type":"chat.created"}', user_ids=("u1",), opens="c9"),
    Envelope(type="session.revoked", data='{"type":"session.revoked"}', user_ids=("ü-1",)),
    Envelope(type="presence", data=""),
    Envelope(
        type="chat.updated",
        data="x" * 70_000,
        chat_id="chat-2",
        seq=2**31 - 1,
        user_ids=("a", "b", "c"),
        joined=("a", "b"),
        left=("c",),
    ),
    Envelope(type="member.added", data="{}", chat_id="chat-3", seq=0),
)


# --- fixtures and helpers -------------------------------------------------------------------------


@pytest.fixture(params=["memory", "redis"])
async def bus(request: pytest.FixtureRequest) -> AsyncIterator[Bus]:
    if request.param == "memory":
        memory = MemoryBus()
        yield memory
        await memory.close()
        return
    redis = Redis.from_url(REDIS_TEST_URL)
    redis_bus = RedisBus(redis, channel=f"test:{uuid4().hex}")
    try:
        yield redis_bus
    finally:
        await redis_bus.close()
        await redis.aclose()


class Subscriber:
    """Reads a subscription's stream in a task, into a queue the test waits on."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[Envelope] = asyncio.Queue()

    async def pump(self, stream: AsyncIterator[Envelope]) -> None:
        async for envelope in stream:
            self.queue.put_nowait(envelope)

    async def next(self, timeout: float = WAIT_S) -> Envelope:
        return await asyncio.wait_for(self.queue.get(), timeout)

    async def take(self, n: int, timeout: float = WAIT_S) -> list[Envelope]:
        async with asyncio.timeout(timeout):
            return [await self.queue.get() for _ in range(n)]


async def nothing_more(bus: Bus, *subs: Subscriber) -> None:
    """Only a fresh marker arrives next: nothing unexpected was published before it."""
    marker = Envelope(type=PROBE, data=f"marker-{uuid4().hex}")
    await bus.publish(marker)
    for sub in subs:
        assert await sub.next() == marker


async def synchronise(bus: Bus, *subs: Subscriber) -> None:
    """Publish probes until every subscriber hears one; then flush the probes in flight."""
    token = uuid4().hex
    waiting = set(subs)
    async with asyncio.timeout(WAIT_S):
        while waiting:
            await bus.publish(Envelope(type=PROBE, data=token))
            for sub in list(waiting):
                with contextlib.suppress(TimeoutError):
                    got = await asyncio.wait_for(sub.queue.get(), 0.05)
                    assert got == Envelope(type=PROBE, data=token), got
                    waiting.discard(sub)
        end = Envelope(type=PROBE, data=f"{token}:end")
        await bus.publish(end)
        for sub in subs:
            while (got := await sub.queue.get()) != end:
                assert got == Envelope(type=PROBE, data=token), got


@asynccontextmanager
async def subscribed(bus: Bus, *, sync: bool = True) -> AsyncIterator[Subscriber]:
    sub = Subscriber()
    async with bus.subscribe() as stream:
        task = asyncio.create_task(sub.pump(stream))
        try:
            if sync:
                await synchronise(bus, sub)
            yield sub
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def bus_errors(operation: str) -> float:
    value = REGISTRY.get_sample_value("reverb_bus_errors_total", {"operation": operation})
    return value or 0.0


# --- both buses -----------------------------------------------------------------------------------


async def test_a_subscriber_gets_what_is_published_after_it_subscribed_intact(bus: Bus) -> None:
    await bus.publish(Envelope(type="before", data="nobody is listening", chat_id="c", seq=9))
    async with subscribed(bus) as sub:
        for envelope in SAMPLES:
            await bus.publish(envelope)
        got = await sub.take(len(SAMPLES))
        assert got == list(SAMPLES)
        # Field by field too, types included (tuples stay tuples, None stays None).
        for sent, received in zip(SAMPLES, got, strict=True):
            for name in (f.name for f in dataclasses.fields(Envelope)):
                assert getattr(received, name) == getattr(sent, name)
                assert type(getattr(received, name)) is type(getattr(sent, name))
        await nothing_more(bus, sub)


async def test_two_subscribers_both_get_everything(bus: Bus) -> None:
    async with subscribed(bus, sync=False) as one, subscribed(bus, sync=False) as two:
        await synchronise(bus, one, two)
        for envelope in SAMPLES:
            await bus.publish(envelope)
        assert await one.take(len(SAMPLES)) == list(SAMPLES)
        assert await two.take(len(SAMPLES)) == list(SAMPLES)
        await nothing_more(bus, one, two)


async def test_a_thousand_envelopes_arrive_in_publish_order(bus: Bus) -> None:
    sent = [
        Envelope(type="message.created", data=f'{{"n":{i}}}', chat_id="c", seq=i, user_ids=("u",))
        for i in range(1, 1001)
    ]
    async with subscribed(bus) as sub:
        for envelope in sent:
            await bus.publish(envelope)
        got = await sub.take(len(sent), timeout=30)
        assert [e.seq for e in got] == list(range(1, 1001))
        assert got == sent
        await nothing_more(bus, sub)


async def test_a_batch_published_at_once_arrives_whole_and_in_order(bus: Bus) -> None:
    sent = [
        Envelope(type="message.created", data=f'{{"n":{i}}}', chat_id="c", seq=i, user_ids=("u",))
        for i in range(1, 301)
    ]
    async with subscribed(bus) as sub:
        await bus.publish_many(sent[:100])
        await bus.publish_many(sent[100:])
        assert await sub.take(len(sent), timeout=30) == sent
        await nothing_more(bus, sub)


async def test_publishing_works_after_a_subscription_ends(bus: Bus) -> None:
    async with subscribed(bus) as sub:
        await bus.publish(SAMPLES[0])
        assert await sub.next() == SAMPLES[0]
    # Nobody subscribed: publishing is a no-op, not an error.
    for envelope in SAMPLES:
        await bus.publish(envelope)
    # A later subscription hears only what is published after it.
    async with subscribed(bus) as later:
        await bus.publish(SAMPLES[1])
        assert await later.next() == SAMPLES[1]
        await nothing_more(bus, later)


async def test_a_subscription_left_unread_does_not_block_publishing(bus: Bus) -> None:
    async with bus.subscribe():
        async with asyncio.timeout(WAIT_S):
            for envelope in SAMPLES * 50:
                await bus.publish(envelope)


# --- Redis only -----------------------------------------------------------------------------------


async def test_redis_publish_with_redis_unreachable_does_not_raise() -> None:
    redis = Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=1)
    unreachable = RedisBus(redis, channel=f"test:{uuid4().hex}")
    before = bus_errors("publish")
    try:
        async with asyncio.timeout(WAIT_S):
            for envelope in SAMPLES:
                await unreachable.publish(envelope)
            # The relay's call says so, for it to act on.
            with pytest.raises(BusUnavailable):
                await unreachable.publish_many(SAMPLES)
    finally:
        await unreachable.close()
        await redis.aclose()
    assert bus_errors("publish") == before + len(SAMPLES) + 1


async def test_redis_subscription_with_redis_unreachable_keeps_retrying() -> None:
    redis = Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=1)
    unreachable = RedisBus(redis, channel=f"test:{uuid4().hex}")
    before = bus_errors("subscribe")
    try:
        async with unreachable.subscribe() as stream:
            sub = Subscriber()
            task = asyncio.create_task(sub.pump(stream))
            async with asyncio.timeout(WAIT_S):
                while bus_errors("subscribe") < before + 3:
                    assert not task.done(), task
                    await asyncio.sleep(0.02)  # poll interval, bounded by the timeout above
            assert not task.done()
            assert sub.queue.empty()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    finally:
        await unreachable.close()
        await redis.aclose()


async def test_redis_outage_yields_reconnected_then_live_envelopes(
    redis_server: RedisServer,
) -> None:
    redis_server.start()
    await redis_server.wait_ready()
    redis = Redis.from_url(redis_server.url)
    outage_bus = RedisBus(redis, channel=f"test:{uuid4().hex}")
    try:
        async with subscribed(outage_bus) as sub:
            await outage_bus.publish(SAMPLES[0])
            assert await sub.next() == SAMPLES[0]

            redis_server.kill()
            # Published while Redis is down: lost (pub/sub keeps nothing), but no error.
            await outage_bus.publish(SAMPLES[1])
            redis_server.start()
            await redis_server.wait_ready()

            reconnected = await sub.next(timeout=WAIT_S)
            assert reconnected == Envelope(type=RECONNECTED, data="")
            # Subscribed again before RECONNECTED is yielded: what is published from now on
            # arrives. (A first publish may still meet a pooled connection of the old server
            # and be dropped, so synchronise with probes before the real envelopes.)
            await synchronise(outage_bus, sub)
            for envelope in SAMPLES[2:]:
                await outage_bus.publish(envelope)
            assert await sub.take(len(SAMPLES) - 2) == list(SAMPLES[2:])
            await nothing_more(outage_bus, sub)
    finally:
        await outage_bus.close()
        await redis.aclose()


async def test_redis_first_publish_after_a_restart_is_not_lost(
    redis_server: RedisServer,
) -> None:
    redis_server.start()
    await redis_server.wait_ready()
    redis = Redis.from_url(redis_server.url)
    restart_bus = RedisBus(redis, channel=f"test:{uuid4().hex}")
    try:
        async with subscribed(restart_bus) as sub:  # leaves an idle pooled connection
            redis_server.kill()
            redis_server.start()
            await redis_server.wait_ready()
            assert await sub.next() == Envelope(type=RECONNECTED, data="")
            before = bus_errors("publish")
            await restart_bus.publish(SAMPLES[0])  # committed already: must not be lost
            assert bus_errors("publish") == before, "the publish after the restart failed"
            assert await sub.next() == SAMPLES[0]
    finally:
        await restart_bus.close()
        await redis.aclose()
