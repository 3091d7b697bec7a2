"""Live-only signals: typing and presence. Not logged; their lasting state is on REST resources
(`last_seen_at`, read and delivered markers)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import time
from dataclasses import dataclass, field
from typing import Literal

from redis.asyncio import Redis
from redis.exceptions import RedisError

from reverb import ids
from reverb.domain.events import Envelope, Presence, Typing, encode
from reverb.domain.wire import rfc3339_or_none
from reverb.errors import ErrorCode, not_found
from reverb.services.publish import Publisher
from reverb.storage import chats as chat_store
from reverb.storage import users as user_store
from reverb.storage.db import Database
from reverb.storage.outage import DatabaseUnavailable
from reverb.storage.types import utcnow

log = logging.getLogger(__name__)

TYPING_EVERY_S = 2.0  # the API contract: at most one `typing` per user and chat every 2 s
PRESENCE_EVERY_S = 5.0  # the API contract: at most one `presence` per user every 5 s


@dataclass(slots=True)
class TypingService:
    db: Database
    publisher: Publisher
    redis: Redis | None
    _last: dict[tuple[str, str], float] = field(default_factory=dict)

    async def typing(self, *, user_id: str, chat_id: str) -> None:
        # Membership first: a non-member gets the same 404 however often they try.
        async with self.db.read() as conn:
            if (
                not ids.is_id(chat_id)
                or await chat_store.get_member(conn, chat_id, user_id) is None
            ):
                raise not_found(ErrorCode.CHAT_NOT_FOUND, "chat")
        if not await self._first_in_window(user_id, chat_id):
            return
        event = Typing(chat_id=chat_id, user_id=user_id)
        self.publisher.now(
            Envelope(type=event.type, data=encode(event), chat_id=chat_id, exclude=user_id)
        )

    async def _first_in_window(self, user_id: str, chat_id: str) -> bool:
        if self.redis is not None:
            # Shared, so a user typing on two processes still yields one event per window.
            try:
                key = f"reverb:typing:{chat_id}:{user_id}"
                return bool(await self.redis.set(key, 1, nx=True, px=int(TYPING_EVERY_S * 1000)))
            except (RedisError, OSError):
                pass  # fall back to this process's own window
        now = time.monotonic()
        if len(self._last) > 100_000:  # old windows are worthless; keep memory bounded
            self._last = {k: t for k, t in self._last.items() if now - t < TYPING_EVERY_S}
        last = self._last.get((user_id, chat_id))
        if last is not None and now - last < TYPING_EVERY_S:
            return False
        self._last[(user_id, chat_id)] = now
        return True


class PresenceService:
    """Online while a user has at least one connection on any process.

    With Redis, each process keeps `reverb:presence:<user>`, a sorted set of process ids scored
    with an expiry it renews while it holds the user's connections; a crashed process stops
    renewing, so its users fall offline within `ttl` instead of staying online forever.
    """

    def __init__(
        self, *, db: Database, publisher: Publisher, redis: Redis | None, ttl: float
    ) -> None:
        self.db = db
        self.publisher = publisher
        self.redis = redis
        self.ttl = ttl
        self.process = f"{os.getpid()}-{secrets.token_hex(4)}"
        self._local: dict[str, int] = {}
        self._published: dict[str, tuple[str, float]] = {}  # user -> (status, when)
        self._deferred: dict[str, asyncio.Task[None]] = {}
        self._renewer: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self.redis is not None:
            self._renewer = asyncio.create_task(self._renew_forever())

    async def stop(self) -> None:
        for task in (self._renewer, *self._deferred.values()):
            if task is not None:
                task.cancel()
        if self.redis is not None and self._local:
            with contextlib.suppress(RedisError, OSError):
                async with self.redis.pipeline(transaction=False) as pipe:
                    for user_id in self._local:
                        pipe.zrem(self._key(user_id), self.process)
                    await pipe.execute()

    def _key(self, user_id: str) -> str:
        return f"reverb:presence:{user_id}"

    async def online(self, user_ids: list[str]) -> set[str]:
        if self.redis is None or not user_ids:
            return {u for u in user_ids if self._local.get(u)}
        try:
            now = time.time()
            async with self.redis.pipeline(transaction=False) as pipe:
                for user_id in user_ids:
                    pipe.zcount(self._key(user_id), now, "+inf")
                counts = await pipe.execute()
        except (RedisError, OSError):
            return {u for u in user_ids if self._local.get(u)}
        return {u for u, n in zip(user_ids, counts, strict=True) if n}

    async def connected(self, user_id: str) -> None:
        self._local[user_id] = self._local.get(user_id, 0) + 1
        if self._local[user_id] > 1:
            return
        was_online = bool(await self.online([user_id])) if self.redis is not None else False
        await self._renew([user_id])
        if not was_online:
            await self._changed(user_id)

    async def disconnected(self, user_id: str) -> None:
        left = self._local.get(user_id, 0) - 1
        if left > 0:
            self._local[user_id] = left
            return
        self._local.pop(user_id, None)
        if self.redis is not None:
            with contextlib.suppress(RedisError, OSError):  # else the entry expires on its own
                await self.redis.zrem(self._key(user_id), self.process)
        if not await self.online([user_id]):
            async with self.db.transaction() as tx:
                await user_store.update_user(tx.conn, user_id, last_seen_at=utcnow())
            await self._changed(user_id)

    async def _renew(self, user_ids: list[str]) -> None:
        if self.redis is None or not user_ids:
            return
        expiry = time.time() + self.ttl
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for user_id in user_ids:
                    pipe.zadd(self._key(user_id), {self.process: expiry})
                    pipe.zremrangebyscore(self._key(user_id), "-inf", time.time())
                    pipe.expire(self._key(user_id), int(self.ttl) + 1)
                await pipe.execute()
        except (RedisError, OSError) as exc:
            log.warning("presence: could not renew: %s", type(exc).__name__)

    async def _renew_forever(self) -> None:
        while True:
            await asyncio.sleep(self.ttl / 3)
            await self._renew(list(self._local))

    async def _changed(self, user_id: str) -> None:
        """Publish the user's status now, or at the end of their 5 s window if one was sent."""
        last = self._published.get(user_id)
        wait = 0.0 if last is None else last[1] + PRESENCE_EVERY_S - time.monotonic()
        if wait <= 0:
            await self._publish(user_id)
        elif user_id not in self._deferred:
            self._deferred[user_id] = asyncio.create_task(self._publish_later(user_id, wait))

    async def _publish_later(self, user_id: str, wait: float) -> None:
        try:
            await asyncio.sleep(wait)
            await self._publish(user_id)
        except DatabaseUnavailable:
            pass  # logged where it happened; the next change publishes the status again
        finally:
            self._deferred.pop(user_id, None)

    async def _publish(self, user_id: str) -> None:
        status: Literal["online", "offline"] = (
            "online" if await self.online([user_id]) else "offline"
        )
        last = self._published.get(user_id)
        if last is not None and last[0] == status:
            return
        self._published[user_id] = (status, time.monotonic())
        async with self.db.read() as conn:
            user = await user_store.get(conn, user_id)
            audience = await chat_store.sharing_users(conn, user_id)
        if user is None:
            return
        event = Presence(
            user_id=user_id, status=status, last_seen_at=rfc3339_or_none(user.last_seen_at)
        )
        self.publisher.now(Envelope(type=event.type, data=encode(event), user_ids=tuple(audience)))
