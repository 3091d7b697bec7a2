"""The Redis pub/sub bus: one channel per topic (see reverb.realtime.bus.route), on one Redis
(PUBLISH/SUBSCRIBE) or on a Redis Cluster (sharded pub/sub: SPUBLISH/SSUBSCRIBE, each channel
served by the node that owns its slot, so no node carries the whole cluster's traffic).

Pub/sub is lossy by design (nothing is kept for a subscriber that is away), so a subscription
that loses a connection says so (`RECONNECTED`) once it follows everything again: the hub then
re-reads the event log for what it tracks. A topic counts as followed only once Redis confirmed
the subscription: from then on, everything published to it reaches this process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import orjson
from redis.asyncio import Redis, RedisCluster
from redis.asyncio.client import PubSub
from redis.asyncio.connection import ConnectionPool, parse_url
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError, RedisError

from reverb.domain.events import Envelope
from reverb.metrics import BUS_ERRORS
from reverb.realtime.bus import BROADCAST, RECONNECTED, Bus, BusUnavailable, Subscription, route

log = logging.getLogger(__name__)

PREFIX = "reverb"
# Waits between reconnection attempts: quick at first, then no busier than once a second.
BACKOFF_S = (0.05, 0.1, 0.25, 0.5, 1.0)
# How long a subscription waits for Redis to confirm it before treating the connection as lost
# (and starting over, which ends in RECONNECTED). A healthy Redis answers in well under a
# millisecond; a connecting client waits at most this long for its `ready`.
CONFIRM_TIMEOUT_S = 2.0


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
    return header + b"\n" + e.data  # the event's bytes as encoded once, not again


def from_wire(raw: bytes) -> Envelope:
    header, _, data = raw.partition(b"\n")
    h = orjson.loads(header)
    return Envelope(
        type=h["t"],
        data=data,
        chat_id=h["c"],
        seq=h["s"],
        user_ids=tuple(h["u"]),
        joined=tuple(h["j"]),
        left=tuple(h["l"]),
        exclude=h.get("x"),
        opens=h.get("o"),
    )


class RedisBus(Bus):
    """`cluster`: the URL names one node of a Redis Cluster, and sharded pub/sub is used."""

    def __init__(
        self, url: str, *, cluster: bool = False, prefix: str = PREFIX, **options: Any
    ) -> None:
        self._url = url
        self._options = options
        self.cluster = cluster
        self._prefix = prefix
        self._redis: Redis | RedisCluster = (
            RedisCluster.from_url(url, **options) if cluster else Redis.from_url(url, **options)
        )

    def channel(self, topic: str) -> str:
        return f"{self._prefix}:{topic}"

    async def publish_many(self, envelopes: Sequence[Envelope]) -> None:
        copies = [
            (self.channel(topic), to_wire(copy))
            for envelope in envelopes
            for topic, copy in route(envelope)
        ]
        try:
            try:
                await self._pipeline(copies)
            except (ConnectionError, OSError):
                # A pooled connection that went stale across a Redis restart fails at once; a
                # fresh one succeeds, and these envelopes are not lost with the stale one.
                await self._pipeline(copies)
        except (RedisError, OSError) as exc:
            BUS_ERRORS.labels("publish").inc()
            raise BusUnavailable(type(exc).__name__) from exc

    async def _pipeline(self, copies: list[tuple[str, bytes]]) -> None:
        async with self._redis.pipeline(transaction=False) as pipe:
            for channel, wire in copies:
                if self.cluster:
                    pipe.spublish(channel, wire)
                else:
                    pipe.publish(channel, wire)
            await pipe.execute()

    def subscribe(self) -> AbstractAsyncContextManager[Subscription]:
        return self._subscribe()

    @asynccontextmanager
    async def _subscribe(self) -> AsyncIterator[Subscription]:
        sub = _RedisSubscription(self)
        await sub.start()
        try:
            yield sub
        finally:
            await sub.stop()

    async def refresh_topology(self) -> None:
        """Re-read which node owns which slot (after a failover or a resharding)."""
        if isinstance(self._redis, RedisCluster):
            await self._redis.initialize()
            await self._redis.nodes_manager.initialize()

    def node_name(self, channel: str) -> str:
        """The server a channel's subscription goes to: "" for the one Redis, else its node."""
        if isinstance(self._redis, RedisCluster):
            node = self._redis.get_node_from_key(channel)
            assert node is not None
            return str(node.name)
        return ""

    def subscriber(self, channel: str) -> Redis:
        """A client of its own for the server of a channel's subscription. It never retries
        behind our back: a retry that reconnected would re-subscribe silently, and what was
        published meanwhile would be lost unnoticed."""
        opts: dict[str, Any] = {**parse_url(self._url), **self._options}
        if isinstance(self._redis, RedisCluster):
            node = self._redis.get_node_from_key(channel)
            assert node is not None
            opts.update(host=node.host, port=node.port)
        return Redis(connection_pool=ConnectionPool(**opts, retry=Retry(NoBackoff(), 0)))

    async def close(self) -> None:
        await self._redis.aclose()


class _Link:
    """One pub/sub connection to one server (the Redis, or one cluster node), and its reader.

    Redis confirms subscriptions in the order they were asked for, on the connection the
    messages come on: each channel's confirmations resolve its waiting futures in that order.
    """

    def __init__(
        self,
        client: Redis,
        *,
        sharded: bool,
        on_message: Callable[[bytes, bytes], None],
        on_dropped: Callable[[bytes], None],
        on_lost: Callable[[BaseException], None],
    ) -> None:
        self.client = client
        self.pubsub: PubSub = client.pubsub()
        self.sharded = sharded
        self.pending: dict[bytes, deque[asyncio.Future[None]]] = {}
        self._leaving: Counter[bytes] = Counter()  # unsubscriptions asked for, not confirmed
        self._on_message = on_message
        self._on_dropped = on_dropped
        self._on_lost = on_lost
        self._reader: asyncio.Task[None] | None = None

    async def subscribe(self, channels: list[str]) -> list[asyncio.Future[None]]:
        loop = asyncio.get_running_loop()
        waits: list[asyncio.Future[None]] = []
        for channel in channels:
            future: asyncio.Future[None] = loop.create_future()
            self.pending.setdefault(channel.encode(), deque()).append(future)
            waits.append(future)
        if self.sharded:
            # A node refuses one SSUBSCRIBE for channels of different slots (CROSSSLOT).
            for channel in channels:
                await self.pubsub.ssubscribe(channel)
        else:
            await self.pubsub.subscribe(*channels)
        if self._reader is None:
            self._reader = asyncio.create_task(self._read(), name="reverb-bus-reader")
        return waits

    async def unsubscribe(self, channels: list[str]) -> None:
        self._leaving.update(channel.encode() for channel in channels)
        if self.sharded:
            for channel in channels:
                await self.pubsub.sunsubscribe(channel)
        else:
            await self.pubsub.unsubscribe(*channels)

    def waiting(self, channel: str) -> asyncio.Future[None] | None:
        queue = self.pending.get(channel.encode())
        return queue[-1] if queue else None

    async def _read(self) -> None:
        try:
            while True:
                message = await self.pubsub.get_message(timeout=None)
                if message is None:
                    continue
                kind = message["type"]
                if kind == "message" or kind == "smessage":
                    self._on_message(message["channel"], message["data"])
                elif kind == "subscribe" or kind == "ssubscribe":
                    queue = self.pending.get(message["channel"])
                    if queue:
                        future = queue.popleft()
                        if not future.done():
                            future.set_result(None)
                elif kind == "unsubscribe" or kind == "sunsubscribe":
                    channel = message["channel"]
                    if self._leaving[channel] > 0:
                        self._leaving[channel] -= 1
                    else:
                        self._on_dropped(channel)
        except (RedisError, OSError) as exc:
            self._on_lost(exc)

    def release(self) -> None:
        """Let every waiter go (the connection is gone; `RECONNECTED` will cover them)."""
        for queue in self.pending.values():
            for future in queue:
                if not future.done():
                    future.set_result(None)
        self.pending.clear()

    async def close(self) -> None:
        self.release()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        with contextlib.suppress(RedisError, OSError):
            await self.pubsub.aclose()  # type: ignore[no-untyped-call]
        with contextlib.suppress(RedisError, OSError):
            await self.client.aclose()


class _RedisSubscription(Subscription):
    def __init__(self, bus: RedisBus) -> None:
        self._bus = bus
        self._queue: asyncio.Queue[Envelope] = asyncio.Queue()
        self._wanted: set[str] = {BROADCAST}
        self._confirmed: set[str] = set()
        self._topics: dict[bytes, str] = {}  # channel -> topic, for every topic ever wanted
        self._links: dict[str, _Link] = {}  # by node name
        self._up = False
        self._lost = asyncio.Event()
        self._asking = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        self._tried = asyncio.Event()
        self._supervisor: asyncio.Task[None] | None = None

    # --- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        self._supervisor = asyncio.create_task(self._supervise(), name="reverb-bus-subscription")
        await self._tried.wait()

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
        await self._teardown()

    async def _supervise(self) -> None:
        failures = 0
        while True:
            self._lost.clear()
            try:
                await self._connect()
            except (RedisError, OSError, TimeoutError) as exc:
                if failures == 0:
                    log.warning("bus: subscription lost: %s", type(exc).__name__)
                BUS_ERRORS.labels("subscribe").inc()
                await self._teardown()
                self._tried.set()
                await asyncio.sleep(BACKOFF_S[min(failures, len(BACKOFF_S) - 1)])
                failures += 1
                continue
            self._up = True
            self._tried.set()
            if failures:
                log.info("bus: subscription restored")
                self._queue.put_nowait(Envelope(type=RECONNECTED, data=b""))
            failures = 0
            await self._lost.wait()
            log.warning("bus: subscription lost")
            BUS_ERRORS.labels("subscribe").inc()
            await self._teardown()
            failures = 1  # the next connection that works says RECONNECTED

    async def _connect(self) -> None:
        """Subscribe to every wanted topic, including those wanted while this runs, and wait for
        Redis to confirm them all."""
        await self._bus.refresh_topology()
        asked: set[str] = set()
        while missing := self._wanted - asked:
            asked |= missing
            waits = await self._ask(missing)
            async with asyncio.timeout(CONFIRM_TIMEOUT_S):
                await asyncio.gather(*waits)
            if self._lost.is_set():
                raise ConnectionError("lost while subscribing")
            self._confirmed |= missing & self._wanted

    async def _teardown(self) -> None:
        links, self._links = list(self._links.values()), {}
        self._confirmed.clear()
        for link in links:
            await link.close()

    def _lose(self, exc: BaseException) -> None:
        log.debug("bus: link lost: %r", exc)
        self._up = False  # from now on, follow() leaves the topics to the reconnection
        for link in self._links.values():
            link.release()
        self._lost.set()

    # --- topics ---------------------------------------------------------------------------------

    def _channel(self, topic: str) -> str:
        channel = self._bus.channel(topic)
        self._topics[channel.encode()] = topic
        return channel

    def _link(self, channel: str) -> _Link:
        name = self._bus.node_name(channel)
        link = self._links.get(name)
        if link is None:
            link = self._links[name] = _Link(
                self._bus.subscriber(channel),
                sharded=self._bus.cluster,
                on_message=self._received,
                on_dropped=self._dropped,
                on_lost=self._lose,
            )
        return link

    async def _ask(self, topics: Collection[str]) -> list[asyncio.Future[None]]:
        by_link: dict[_Link, list[str]] = {}
        for topic in topics:
            channel = self._channel(topic)
            by_link.setdefault(self._link(channel), []).append(channel)
        waits: list[asyncio.Future[None]] = []
        for link, channels in by_link.items():
            waits += await link.subscribe(channels)
        return waits

    async def follow(self, topics: Collection[str]) -> None:
        waits: list[asyncio.Future[None]] = []
        # One caller at a time asks: a follow and an unfollow of one topic reach Redis in the
        # order they were made.
        async with self._asking:
            new = [t for t in topics if t not in self._wanted]
            self._wanted.update(new)
            if not self._up:
                return  # the connection under way follows them, then says RECONNECTED
            try:
                for topic in topics:
                    if topic in self._confirmed or topic in new:
                        continue
                    # Wanted, not confirmed yet: another caller asked; wait for the same answer.
                    channel = self._channel(topic)
                    waiting = self._link(channel).waiting(channel)
                    if waiting is not None:
                        waits.append(waiting)
                    else:
                        new.append(topic)
                if new:
                    waits += await self._ask(new)
            except (RedisError, OSError) as exc:
                self._lose(exc)
                return
        if not waits:
            return
        done, _ = await asyncio.wait(waits, timeout=CONFIRM_TIMEOUT_S)
        if len(done) < len(waits):
            self._lose(TimeoutError("no confirmation from Redis"))
            return
        if self._up:
            self._confirmed.update(t for t in topics if t in self._wanted)

    def following(self, topic: str) -> bool:
        return topic in self._confirmed

    def unfollow(self, topics: Collection[str]) -> None:
        gone = [t for t in topics if t in self._wanted and t != BROADCAST]
        self._wanted.difference_update(gone)
        self._confirmed.difference_update(gone)
        if gone and self._up:
            task = asyncio.create_task(self._unsubscribe(gone))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _unsubscribe(self, topics: list[str]) -> None:
        async with self._asking:
            # Followed again since: the follow found it subscribed still, and it stays so.
            gone = [t for t in topics if t not in self._wanted]
            if not self._up or not gone:
                return
            by_link: dict[_Link, list[str]] = {}
            try:
                for topic in gone:
                    channel = self._channel(topic)
                    by_link.setdefault(self._link(channel), []).append(channel)
                for link, channels in by_link.items():
                    await link.unsubscribe(channels)
            except (RedisError, OSError) as exc:
                self._lose(exc)

    def _dropped(self, channel: bytes) -> None:
        topic = self._topics.get(channel)
        if topic is not None and topic in self._wanted:
            # Not asked for by us: a cluster node hands over a slot's subscribers this way when the
            # slot moves. Start over on the new owners.
            self._lose(ConnectionError("unsubscribed by the server"))

    # --- messages -------------------------------------------------------------------------------

    def _received(self, channel: bytes, data: bytes) -> None:
        topic = self._topics.get(channel)
        if topic is None or topic not in self._wanted:
            return  # of a topic just unfollowed, still in flight
        try:
            envelope = from_wire(data)
        except (ValueError, KeyError, TypeError, UnicodeDecodeError):
            log.warning("bus: dropped a malformed envelope")
            return
        self._queue.put_nowait(envelope)

    async def __anext__(self) -> Envelope:
        return await self._queue.get()
