"""The event bus: one suite run against MemoryBus, RedisBus on one Redis, and RedisBus on a Redis
Cluster of three real nodes (sharded pub/sub), plus Redis outages.

Probes and markers are addressed to nobody, so they go to the broadcast topic every
subscription follows. A subscription is first synchronised: probes are published until one
arrives, then a marker flushes the probes still in flight.
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

from reverb.domain.events import Envelope
from reverb.realtime.bus import (
    RECONNECTED,
    Bus,
    BusUnavailable,
    Subscription,
    chat_topic,
    user_topic,
)
from reverb.realtime.bus.memory import MemoryBus
from reverb.realtime.bus.redis import RedisBus
from tests.ports import free_port
from tests.redis_server import RedisClusterServers, RedisServer, redis_cluster
from tests.services import REDIS_TEST_URL

__all__ = ["redis_cluster"]  # a fixture, used by name

PROBE = "test.probe"
WAIT_S = 10.0  # upper bound for anything that should happen promptly

SAMPLES = (
    Envelope(
        type="message.created",
        data=(
            '{"type":"message.created","content":"héllo 👋🏽 中文 שלום \\u0000 \u2028 end"}'
        ).encode(),
        chat_id="chat-1",
        seq=1,
        user_ids=("u1", "u2"),
    ),
    Envelope(
        type="member.added",
        data=b'{"type":"member.added"}\nsecond line\r\n\tand a tab',
        chat_id="chat-1",
        seq=2,
        user_ids=("u3",),
        joined=("u3",),
    ),
    Envelope(
        type="member.removed",
        data=b'{"type":"member.removed","user_id":"u2"}',
        chat_id="chat-1",
        seq=3,
        user_ids=("u2",),
        left=("u2",),
    ),
    Envelope(type="typing", data=b'{"type":"typing"}', chat_id="chat-1", exclude="u1"),
    Envelope(type="chat.created", data=b'{"type":"chat.created"}', user_ids=("u1",), opens="c9"),
    Envelope(type="session.revoked", data=b'{"type":"session.revoked"}', user_ids=("ü-1",)),
    Envelope(type="presence", data=b""),
    Envelope(
        type="chat.updated",
        data=b"x" * 70_000,
        chat_id="chat-2",
        seq=2**31 - 1,
        user_ids=("a", "b", "c"),
        joined=("a", "b"),
        left=("c",),
    ),
    Envelope(type="member.added", data=b"{}", chat_id="chat-3", seq=0),
)


# The topics the samples are addressed to, bar the broadcast ones: followed by the suite's
# subscribers, none of them sharing a shard with the users of SAMPLES they do not follow (so
# each sample arrives exactly once).
SAMPLE_TOPICS = frozenset(
    {chat_topic(c) for c in ("chat-1", "chat-2", "chat-3", "c")} | {user_topic("u1")}
)
assert not {user_topic(u) for u in ("u3", "a", "b")} & SAMPLE_TOPICS


# --- fixtures and helpers -------------------------------------------------------------------------


@pytest.fixture(params=["memory", "redis", "cluster"])
async def bus(request: pytest.FixtureRequest) -> AsyncIterator[Bus]:
    if request.param == "memory":
        memory = MemoryBus()
        yield memory
        await memory.close()
        return
    if request.param == "cluster":
        cluster: RedisClusterServers = request.getfixturevalue("redis_cluster")
        redis_bus = RedisBus(cluster.url, cluster=True, prefix=f"test:{uuid4().hex}")
    else:
        redis_bus = RedisBus(REDIS_TEST_URL, prefix=f"test:{uuid4().hex}")
    try:
        yield redis_bus
    finally:
        await redis_bus.close()


class Subscriber:
    """Reads a subscription's stream in a task, into a queue the test waits on."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[Envelope] = asyncio.Queue()
        self.stream: Subscription | None = None

    async def follow(self, *topics: str) -> None:
        assert self.stream is not None
        await self.stream.follow(topics)

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
    marker = Envelope(type=PROBE, data=f"marker-{uuid4().hex}".encode())
    await bus.publish(marker)
    for sub in subs:
        assert await sub.next() == marker


async def synchronise(bus: Bus, *subs: Subscriber) -> None:
    """Publish probes until every subscriber hears one; then flush the probes in flight."""
    token = uuid4().hex.encode()
    waiting = set(subs)
    async with asyncio.timeout(WAIT_S):
        while waiting:
            await bus.publish(Envelope(type=PROBE, data=token))
            for sub in list(waiting):
                with contextlib.suppress(TimeoutError):
                    got = await asyncio.wait_for(sub.queue.get(), 0.05)
                    assert got == Envelope(type=PROBE, data=token), got
                    waiting.discard(sub)
        end = Envelope(type=PROBE, data=token + b":end")
        await bus.publish(end)
        for sub in subs:
            while (got := await sub.queue.get()) != end:
                assert got == Envelope(type=PROBE, data=token), got


@asynccontextmanager
async def subscribed(
    bus: Bus, topics: frozenset[str] = SAMPLE_TOPICS, *, sync: bool = True
) -> AsyncIterator[Subscriber]:
    sub = Subscriber()
    async with bus.subscribe() as stream:
        sub.stream = stream
        await stream.follow(topics)
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
    await bus.publish(Envelope(type="before", data=b"nobody is listening", chat_id="c", seq=9))
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


def numbered(count: int) -> list[Envelope]:
    return [
        Envelope(type="message.created", data=b'{"n":%d}' % i, chat_id="c", seq=i, user_ids=("u",))
        for i in range(1, count + 1)
    ]


async def test_a_thousand_envelopes_arrive_in_publish_order(bus: Bus) -> None:
    sent = numbered(1000)
    async with subscribed(bus) as sub:
        for envelope in sent:
            await bus.publish(envelope)
        got = await sub.take(len(sent), timeout=30)
        assert [e.seq for e in got] == list(range(1, 1001))
        assert got == sent
        await nothing_more(bus, sub)


async def test_a_batch_published_at_once_arrives_whole_and_in_order(bus: Bus) -> None:
    sent = numbered(300)
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


# --- shards ---------------------------------------------------------------------------------------


def in_other_shards(prefix: str, n: int) -> list[str]:
    """`n` chat ids, each in a shard of its own."""
    found: dict[str, str] = {}
    i = 0
    while len(found) < n:
        chat_id = f"{prefix}-{i}"
        found.setdefault(chat_topic(chat_id), chat_id)
        i += 1
    return list(found.values())


def message(chat_id: str, seq: int) -> Envelope:
    return Envelope(
        type="message.created", data=f'{{"seq":{seq}}}'.encode(), chat_id=chat_id, seq=seq
    )


async def test_a_subscriber_hears_only_the_shards_it_follows(bus: Bus) -> None:
    a, b = in_other_shards("chat", 2)
    async with (
        subscribed(bus, frozenset({chat_topic(a)}), sync=False) as of_a,
        subscribed(bus, frozenset({chat_topic(b)}), sync=False) as of_b,
    ):
        await synchronise(bus, of_a, of_b)
        await bus.publish(message(b, 1))
        await bus.publish(message(a, 1))
        # Each hears its own shard's envelope first: the other one never reached it.
        assert await of_a.next() == message(a, 1)
        assert await of_b.next() == message(b, 1)
        await nothing_more(bus, of_a, of_b)


async def test_following_a_shard_mid_stream_loses_nothing_published_after(bus: Bus) -> None:
    quiet, busy = in_other_shards("chat", 2)
    started = 0
    stop = asyncio.Event()

    async def publisher() -> None:
        nonlocal started
        while not stop.is_set():
            started += 1
            await bus.publish(message(busy, started))
            await asyncio.sleep(0)  # let the subscriber's reader run between publishes

    async with subscribed(bus, frozenset({chat_topic(quiet)})) as sub:
        task = asyncio.create_task(publisher())
        try:
            async with asyncio.timeout(WAIT_S):
                while started < 20:  # well under way before the follow
                    await asyncio.sleep(0.001)  # poll interval, bounded by the timeout
            await sub.follow(chat_topic(busy))
            first_after = started + 1  # publishes that begin from now on must all arrive
            async with asyncio.timeout(WAIT_S):
                while started < first_after + 200:
                    await asyncio.sleep(0.001)  # poll interval, bounded by the timeout
        finally:
            stop.set()
            await task
        got: list[int] = []
        while not got or got[-1] < started:
            envelope = await sub.next()
            assert envelope.chat_id == busy and envelope.seq is not None, envelope
            got.append(envelope.seq)
        assert got == sorted(got)
        assert set(range(first_after, started + 1)) <= set(got)
        await nothing_more(bus, sub)


async def test_unfollowed_shards_go_quiet(bus: Bus) -> None:
    a, b = in_other_shards("chat", 2)
    async with subscribed(bus, frozenset({chat_topic(a), chat_topic(b)})) as sub:
        assert sub.stream is not None
        sub.stream.unfollow({chat_topic(a)})
        await bus.publish(message(a, 1))
        await bus.publish(message(b, 1))
        assert await sub.next() == message(b, 1)
        await nothing_more(bus, sub)


async def test_a_shard_followed_again_right_after_it_was_let_go_stays_followed(bus: Bus) -> None:
    (a,) = in_other_shards("chat", 1)
    async with subscribed(bus, frozenset({chat_topic(a)})) as sub:
        assert sub.stream is not None
        sub.stream.unfollow({chat_topic(a)})
        await sub.follow(chat_topic(a))  # before the server was told, or after: either way
        assert sub.stream.following(chat_topic(a))
        await bus.publish(message(a, 1))
        assert await sub.next() == message(a, 1)
        sub.stream.unfollow({chat_topic(a)})
        await nothing_more(bus, sub)  # time for the unsubscription to go out: the other path
        await sub.follow(chat_topic(a))
        await bus.publish(message(a, 2))
        assert await sub.next() == message(a, 2)
        await nothing_more(bus, sub)


def users_in_other_shards(n: int) -> list[str]:
    found: dict[str, str] = {}
    i = 0
    while len(found) < n:
        found.setdefault(user_topic(f"user-{i}"), f"user-{i}")
        i += 1
    return list(found.values())


async def test_an_envelope_to_users_reaches_each_user_shard_once_per_user(bus: Bus) -> None:
    one, two, three = users_in_other_shards(3)
    presence = Envelope(type="presence", data=b'{"type":"presence"}', user_ids=(one, two, three))
    async with (
        subscribed(bus, frozenset({user_topic(one)}), sync=False) as first,
        subscribed(bus, frozenset({user_topic(two), user_topic(three)}), sync=False) as others,
    ):
        await synchronise(bus, first, others)
        await bus.publish(presence)
        # The copy to a shard names only that shard's users: a process with several of them
        # connected passes it on once to each.
        assert await first.next() == dataclasses.replace(presence, user_ids=(one,))
        got = sorted((await others.take(2)), key=lambda e: e.user_ids)
        assert got == sorted(
            (
                dataclasses.replace(presence, user_ids=(two,)),
                dataclasses.replace(presence, user_ids=(three,)),
            ),
            key=lambda e: e.user_ids,
        )
        await nothing_more(bus, first, others)


async def test_a_member_added_reaches_the_new_member_outside_the_chat_shard(bus: Bus) -> None:
    (chat_id,) = in_other_shards("chat", 1)
    (newcomer,) = users_in_other_shards(1)
    added = Envelope(
        type="member.added",
        data=b'{"type":"member.added"}',
        chat_id=chat_id,
        seq=4,
        user_ids=(newcomer,),
        joined=(newcomer,),
    )
    async with (
        subscribed(bus, frozenset({user_topic(newcomer)}), sync=False) as theirs,
        subscribed(bus, frozenset({chat_topic(chat_id)}), sync=False) as chats,
    ):
        await synchronise(bus, theirs, chats)
        await bus.publish(added)
        assert await theirs.next() == added
        assert await chats.next() == added
        await nothing_more(bus, theirs, chats)


async def test_a_revocation_reaches_every_subscriber(bus: Bus) -> None:
    revoked = Envelope(type="session.revoked", data=b"{}", user_ids=("someone",))
    async with (
        subscribed(bus, frozenset(), sync=False) as bare,
        subscribed(bus, frozenset({user_topic("someone")}), sync=False) as theirs,
    ):
        await synchronise(bus, bare, theirs)
        await bus.publish(revoked)
        assert await bare.next() == revoked
        assert await theirs.next() == revoked
        await nothing_more(bus, bare, theirs)


# --- Redis only -----------------------------------------------------------------------------------


async def test_redis_publish_with_redis_unreachable_does_not_raise() -> None:
    unreachable = RedisBus(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=1)
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
    assert bus_errors("publish") == before + len(SAMPLES) + 1


async def test_redis_subscription_with_redis_unreachable_keeps_retrying() -> None:
    unreachable = RedisBus(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=1)
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


async def test_redis_outage_yields_reconnected_then_live_envelopes(
    redis_server: RedisServer,
) -> None:
    redis_server.start()
    await redis_server.wait_ready()
    outage_bus = RedisBus(redis_server.url)
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
            assert reconnected == Envelope(type=RECONNECTED, data=b"")
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


async def test_redis_first_publish_after_a_restart_is_not_lost(
    redis_server: RedisServer,
) -> None:
    redis_server.start()
    await redis_server.wait_ready()
    restart_bus = RedisBus(redis_server.url)
    try:
        async with subscribed(restart_bus) as sub:  # leaves an idle pooled connection
            redis_server.kill()
            redis_server.start()
            await redis_server.wait_ready()
            assert await sub.next() == Envelope(type=RECONNECTED, data=b"")
            before = bus_errors("publish")
            await restart_bus.publish(SAMPLES[0])  # committed already: must not be lost
            assert bus_errors("publish") == before, "the publish after the restart failed"
            assert await sub.next() == SAMPLES[0]
    finally:
        await restart_bus.close()
