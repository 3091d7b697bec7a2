"""The event bus: services publish envelopes after commit; each process's hub subscribes once.

Two implementations behind one interface: `MemoryBus` (one process, the default, no set-up) and
`RedisBus` (`REDIS_URL` set: any number of processes, on one Redis or a Redis Cluster). The
database is the source of truth; the bus may lose envelopes (Redis pub/sub does, during an
outage), and the hub repairs gaps from the chat event log, so clients still get every logged event
once, in order.

The bus is sharded: an envelope goes to topics (see `route`), and a subscription receives only
the topics it follows. A process follows the shards of the chats and users it has connections
for, so it decodes its own chats' traffic, not the whole cluster's.
"""

from __future__ import annotations

import dataclasses
import logging
import zlib
from abc import ABC, abstractmethod
from collections.abc import Collection, Sequence
from contextlib import AbstractAsyncContextManager

from reverb.domain.events import Envelope

log = logging.getLogger(__name__)

# Yielded by a subscription after it lost and regained its connection: envelopes published in
# between may be gone, so the hub re-reads what it tracks from the database.
RECONNECTED = "bus.reconnected"
# Published by a relay once the bus answers again after it failed; its data is a JSON list of
# the chats whose logged events it could not publish. Every hub re-reads those chats' logs.
REPAIR = "bus.repair"

# Chats are spread over this many topics. A process decodes every envelope of the shards its
# chats fall in, so more shards mean less of other processes' traffic riding along: with 256,
# four busy chats on four processes share a shard with probability about 2%, with 64 about 9%.
# The cost of a shard is one channel subscription per process that follows it (and the process
# re-subscribes all it follows after a reconnect), which stays small at 256.
CHAT_SHARDS = 256
# Users (for envelopes addressed to users rather than to a chat) over this many topics. Fewer
# than chats: a presence change to a large audience is published once per user shard it names,
# and a process with a few hundred users connected follows nearly every user shard anyway.
USER_SHARDS = 64
# Every subscription follows this topic from the start: envelopes that must reach every process
# (`session.revoked`: each process caches access tokens) and envelopes addressed to nobody in
# particular.
BROADCAST = "all"
EVERYWHERE = frozenset({"session.revoked"})


class BusUnavailable(Exception):
    """The bus did not take a publish (error or no answer in time): its envelopes may be lost."""


def _shard(key: str, shards: int) -> int:
    # crc32, not hash(): every process must put a chat in the same shard (hash() is salted).
    return zlib.crc32(key.encode()) % shards


def chat_topic(chat_id: str) -> str:
    return f"c{_shard(chat_id, CHAT_SHARDS)}"


def user_topic(user_id: str) -> str:
    return f"u{_shard(user_id, USER_SHARDS)}"


def route(env: Envelope) -> list[tuple[str, Envelope]]:
    """The topics an envelope is published to, each with the copy that goes there.

    - `session.revoked`, and an envelope addressed to no chat and no user: everyone.
    - A chat's envelope: the chat's topic. A logged one also goes to the topics of the users it
      makes members (`joined`): their processes may not follow that chat's shard yet. A process
      that gets both copies passes the second on to nobody (it is at or below the chat's seq).
    - An envelope to users only (`chat.created`, `presence`): each user shard it names, the copy
      narrowed to that shard's users, so a process following several of those shards still
      passes it on once per user.
    """
    if env.type in EVERYWHERE or (env.chat_id is None and not env.user_ids):
        return [(BROADCAST, env)]
    if env.chat_id is not None:
        if env.seq is None and env.user_ids:
            # Its copies could not be told apart from a repeat (it has no seq); none exists.
            raise ValueError(f"a live-only envelope names a chat and users: {env.type}")
        topics = [(chat_topic(env.chat_id), env)]
        for topic in dict.fromkeys(user_topic(u) for u in env.joined):
            topics.append((topic, env))
        return topics
    by_topic: dict[str, list[str]] = {}
    for user_id in env.user_ids:
        by_topic.setdefault(user_topic(user_id), []).append(user_id)
    if len(by_topic) == 1:
        return [(next(iter(by_topic)), env)]
    return [
        (topic, dataclasses.replace(env, user_ids=tuple(users)))
        for topic, users in by_topic.items()
    ]


class Subscription(ABC):
    """One process's stream of envelopes, for the topics it follows (`BROADCAST` always)."""

    def __aiter__(self) -> Subscription:
        return self

    @abstractmethod
    async def __anext__(self) -> Envelope:
        """The next envelope published to a followed topic, or `RECONNECTED` after a loss."""

    @abstractmethod
    async def follow(self, topics: Collection[str]) -> None:
        """Follow more topics. Returns once every envelope published to them from now on will be
        yielded, or, if the connection is lost meanwhile, once it is known that `RECONNECTED`
        will be yielded after they are followed again. Following a followed topic is free."""

    @abstractmethod
    def following(self, topic: str) -> bool:
        """Whether the topic is followed and confirmed."""

    @abstractmethod
    def unfollow(self, topics: Collection[str]) -> None:
        """Stop following topics at once: nothing more of them is yielded (the server is told in
        the background, unless they are followed again meanwhile)."""


class Bus(ABC):
    @abstractmethod
    async def publish_many(self, envelopes: Sequence[Envelope]) -> None:
        """Hand envelopes to every subscriber that follows their topics (see `route`), in any
        process, in the order given (one round trip for all of them where the bus allows).
        Raises `BusUnavailable` when the bus did not take them; it never retries: the caller
        (the relay) decides what happens next."""

    async def publish(self, envelope: Envelope) -> None:
        """`publish_many` of one envelope, for callers that cannot act on a failure: it is
        logged and counted (subscribers repair what they missed from the event log)."""
        try:
            await self.publish_many((envelope,))
        except BusUnavailable as exc:
            log.warning("bus: publish failed: %s", exc)

    @abstractmethod
    def subscribe(self) -> AbstractAsyncContextManager[Subscription]:
        """An async context manager yielding a subscription that follows `BROADCAST` (confirmed,
        or the connection failed and `RECONNECTED` will come) and nothing else yet."""

    async def close(self) -> None:  # noqa: B027 -- optional hook
        """Release connections."""
