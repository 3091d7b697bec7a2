"""The relay: publishing from the outbox, a circuit breaker for a bus that fails or hangs, and
the repair that follows. Run against both buses, and against a real Redis that is paused."""

from __future__ import annotations

import asyncio
from uuid import uuid4

from prometheus_client import REGISTRY

from reverb.domain.events import Envelope
from reverb.realtime.bus import BROADCAST, REPAIR, Bus, chat_topic
from reverb.realtime.bus.redis import RedisBus
from reverb.realtime.bus.relay import Relay, repaired_chats
from tests.helpers import until
from tests.integration.test_bus import WAIT_S, bus, redis_cluster, subscribed  # noqa: F401
from tests.ports import free_port
from tests.redis_server import RedisServer

# What the subscribers here follow: the chats the envelopes name, and the broadcast channel
# (repairs and revocations).
TOPICS = frozenset({chat_topic("a"), chat_topic("b"), chat_topic("c"), BROADCAST})


def logged(chat_id: str, seq: int) -> Envelope:
    return Envelope(
        type="message.created", data=f'{{"seq":{seq}}}'.encode(), chat_id=chat_id, seq=seq
    )


REVOKED = Envelope(type="session.revoked", data=b'{"type":"session.revoked"}', user_ids=("u1",))
TYPING = Envelope(type="typing", data=b'{"type":"typing"}', chat_id="a", exclude="u1")


def dropped() -> float:
    return REGISTRY.get_sample_value("reverb_outbox_dropped_total") or 0.0


async def test_what_is_put_reaches_subscribers_in_order(bus: Bus) -> None:  # noqa: F811
    relay = Relay(bus)
    sent = [logged("a", seq) for seq in range(1, 1201)]
    async with subscribed(bus, TOPICS) as sub:
        relay.start()
        for envelope in sent:
            relay.put(envelope)
        assert await sub.take(len(sent), timeout=30) == sent
        await relay.close(1.0)
    assert relay.healthy and relay.pending == 0


async def test_close_hands_what_is_queued_to_the_bus_then_refuses(bus: Bus) -> None:  # noqa: F811
    relay = Relay(bus)
    sent = [logged("a", seq) for seq in range(1, 51)]
    async with subscribed(bus, TOPICS) as sub:
        relay.start()
        for envelope in sent:
            relay.put(envelope)
        await relay.close(WAIT_S)
        assert await sub.take(len(sent)) == sent
        before = dropped()
        relay.put(logged("a", 51))
        assert dropped() == before + 1


async def test_an_unreachable_bus_opens_the_breaker_and_the_outbox_stays_bounded() -> None:
    unreachable = RedisBus(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=1)
    relay = Relay(unreachable, capacity=10, held_capacity=5)
    try:
        relay.start()
        before = dropped()
        # All put before the relay first runs: the outbox takes 10, the rest is set aside.
        for seq in range(1, 1001):
            relay.put(logged(("a", "b", "c")[seq % 3], seq))
        for _ in range(20):
            relay.put(REVOKED)
            relay.put(TYPING)
        # 20 typing signals are dropped (they only matter now), 5 revocations are held, and
        # 15 do not fit: dropped and counted.
        assert dropped() == before + 15
        await until(lambda: not relay.healthy, "the breaker opens")
        # Outbox emptied into repair marks: at most one per chat, plus the held envelopes.
        await until(lambda: relay.pending == 3 + 5, "the outbox is reduced to repair marks")
    finally:
        await relay.close(0.5)
        await unreachable.close()


async def test_a_hung_redis_is_repaired_once_it_answers(redis_server: RedisServer) -> None:
    redis_server.start()
    await redis_server.wait_ready()
    redis_bus = RedisBus(redis_server.url, prefix=f"test:{uuid4().hex}", socket_connect_timeout=1)
    relay = Relay(redis_bus, timeout=0.2)
    try:
        async with subscribed(redis_bus, TOPICS) as sub:
            relay.start()
            relay.put(logged("a", 1))
            assert await sub.next() == logged("a", 1)

            redis_server.pause()
            relay.put(logged("a", 2))
            relay.put(logged("b", 1))
            relay.put(TYPING)
            relay.put(REVOKED)
            await until(lambda: not relay.healthy, "a publish to the paused Redis times out")
            relay.put(logged("a", 3))  # while the breaker is open
            redis_server.resume()

            # Once Redis answers: one repair naming both chats, and the held revocation. The
            # timed-out publishes may still arrive as well (Redis reads what was sent before
            # it stopped): duplicates, which hubs drop by seq.
            repaired: set[str] = set()
            revoked = False
            async with asyncio.timeout(WAIT_S):
                while repaired != {"a", "b"} or not revoked:
                    got = await sub.next()
                    if got.type == REPAIR:
                        repaired |= set(repaired_chats(got))
                    revoked = revoked or got == REVOKED
            await until(lambda: relay.healthy and relay.pending == 0, "the relay recovers")
            relay.put(logged("a", 4))
            while (got := await sub.next()) != logged("a", 4):
                assert got.type != REPAIR or set(repaired_chats(got)) <= {"a", "b"}, got
    finally:
        await relay.close(1.0)
        await redis_bus.close()
