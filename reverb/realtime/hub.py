"""The hub: one bus subscription per process, fanned out to the connections of this process.

The subscription follows the bus topics (shards) of the chats and users with connections here,
and lets go of a topic a while after its last connection went (`UNFOLLOW_AFTER_S`).

It keeps, per chat with local connections, the last seq it passed on. Logged events are passed
on in seq order: a duplicate is dropped; an early one waits briefly for the ones before it (two
processes may publish in the opposite order to the one they committed in), and if they do not
come, they are read from the event log once for all local connections of the chat.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Protocol

from reverb.domain.events import Envelope
from reverb.metrics import GAP_FILLS
from reverb.realtime.bus import RECONNECTED, REPAIR, Bus, Subscription, chat_topic, user_topic
from reverb.realtime.bus.relay import repaired_chats
from reverb.realtime.connection import CatchUp, Connection
from reverb.storage.outage import DatabaseUnavailable

log = logging.getLogger(__name__)

# How long an early event waits for the ones before it before they are read from the log.
# Publishing after commit from two processes reorders by well under a millisecond.
REORDER_WAIT_S = 0.05
# How long a topic stays followed after its last local connection went: a user who reconnects,
# or the next member of that shard to connect, finds it followed still and waits for nothing.
UNFOLLOW_AFTER_S = 30.0

ReadLog = Callable[[str, int, int | None], Awaitable[list[Envelope]]]


class Sessions(Protocol):
    """What the process remembers of users' sessions (`services.access_cache.AccessCache`):
    every envelope of the process passes the hub, so it is the one to tell."""

    def forget_user(self, user_id: str) -> None: ...

    def clear(self) -> None: ...


@dataclass(slots=True)
class _Chat:
    conns: set[Connection] = field(default_factory=set)
    pos: int | None = None
    early: dict[int, Envelope] = field(default_factory=dict)
    repair: asyncio.Task[None] | None = None


class Hub:
    def __init__(self, bus: Bus, read_log: ReadLog, sessions: Sessions | None = None) -> None:
        self._bus = bus
        self._read_log = read_log
        self._sessions = sessions
        self._chats: dict[str, _Chat] = {}
        self._users: dict[str, set[Connection]] = defaultdict(set)
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._sub: Subscription | None = None
        self._refs: Counter[str] = Counter()  # topic -> local chats and users in it
        self._unused: dict[str, float] = {}  # topic -> since when nothing local is in it
        self._sweep: asyncio.TimerHandle | None = None
        # Chats a connection was attached to by an event, waiting for their topic to be
        # followed; then they catch up on what the bus did not bring meanwhile.
        self._after_follow: dict[str, list[tuple[Connection, str]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    # --- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="reverb-hub")
        await self._ready.wait()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for chat in self._chats.values():
            if chat.repair is not None:
                chat.repair.cancel()
        for task in list(self._tasks):
            task.cancel()
        if self._sweep is not None:
            self._sweep.cancel()

    async def _run(self) -> None:
        async with self._bus.subscribe() as sub:
            self._sub = sub
            self._ready.set()
            async for envelope in sub:
                try:
                    self.dispatch(envelope)
                except Exception:
                    log.exception("hub: dispatch failed for %s", envelope.type)

    # --- connections ------------------------------------------------------------------------------

    def register(self, conn: Connection) -> None:
        users = self._users[conn.user_id]
        if not users:
            self._want(user_topic(conn.user_id))
        users.add(conn)

    def unregister(self, conn: Connection) -> None:
        users = self._users.get(conn.user_id)
        if users is not None:
            users.discard(conn)
            if not users:
                del self._users[conn.user_id]
                self._unwant(user_topic(conn.user_id))
        for chat_id in list(conn.positions):
            self.detach(conn, chat_id)

    def attach(self, conn: Connection, chat_id: str, position: int) -> None:
        """Deliver the chat's logged events after `position` (and its live events) to conn.
        The bus brings them once the chat's topic is followed (see `follow`)."""
        chat = self._chats.get(chat_id)
        if chat is None:
            chat = self._open(chat_id, position)
        chat.conns.add(conn)
        conn.positions.setdefault(chat_id, position)

    def detach(self, conn: Connection, chat_id: str) -> None:
        conn.positions.pop(chat_id, None)
        chat = self._chats.get(chat_id)
        if chat is not None:
            chat.conns.discard(conn)
            if not chat.conns:
                self._close(chat_id, chat)

    async def follow(self, conn: Connection) -> None:
        """Returns once the bus brings this process everything published from now on for the
        connection's user and the chats it is attached to (a new shard is subscribed to and
        confirmed first). Only then may the gateway read where its chats stand."""
        if self._sub is not None:
            topics = {user_topic(conn.user_id), *(chat_topic(c) for c in conn.positions)}
            await self._sub.follow(topics)

    def following(self, topic: str) -> bool:
        """Whether the bus brings this process the topic now."""
        return self._sub is not None and self._sub.following(topic)

    def _open(self, chat_id: str, pos: int | None) -> _Chat:
        chat = self._chats[chat_id] = _Chat(pos=pos)
        self._want(chat_topic(chat_id))
        return chat

    def _close(self, chat_id: str, chat: _Chat) -> None:
        if chat.repair is not None:
            chat.repair.cancel()
        del self._chats[chat_id]
        self._unwant(chat_topic(chat_id))

    # --- topics -----------------------------------------------------------------------------------

    def _want(self, topic: str) -> None:
        self._refs[topic] += 1
        self._unused.pop(topic, None)

    def _unwant(self, topic: str) -> None:
        self._refs[topic] -= 1
        if self._refs[topic] > 0:
            return
        del self._refs[topic]
        loop = asyncio.get_running_loop()
        self._unused[topic] = loop.time()
        if self._sweep is None:
            self._sweep = loop.call_later(UNFOLLOW_AFTER_S, self._unfollow_unused)

    def _unfollow_unused(self) -> None:
        self._sweep = None
        loop = asyncio.get_running_loop()
        due = [t for t, since in self._unused.items() if loop.time() - since >= UNFOLLOW_AFTER_S]
        for topic in due:
            del self._unused[topic]
        if due and self._sub is not None:
            self._sub.unfollow(due)
        if self._unused:
            wait = UNFOLLOW_AFTER_S - (loop.time() - min(self._unused.values()))
            self._sweep = loop.call_later(max(wait, 0.0), self._unfollow_unused)

    def _attach_by_event(self, conn: Connection, chat_id: str, position: int) -> None:
        """`attach` for a chat an event gave the connection (it joined, or created it): its
        topic may not be followed yet, and what the bus did not bring before it is, the
        connection reads from the log once it is."""
        self.attach(conn, chat_id, position)
        topic = chat_topic(chat_id)
        sub = self._sub
        if sub is None or sub.following(topic):
            return
        waiting = self._after_follow.get(topic)
        if waiting is None:
            waiting = self._after_follow[topic] = []
            self._spawn(self._follow_then_catch_up(sub, topic))
        waiting.append((conn, chat_id))

    async def _follow_then_catch_up(self, sub: Subscription, topic: str) -> None:
        try:
            await sub.follow((topic,))
        finally:
            waiting = self._after_follow.pop(topic, [])
        for conn, chat_id in waiting:
            if chat_id in conn.positions:
                conn.push(CatchUp(chat_id))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- dispatch ---------------------------------------------------------------------------------

    def dispatch(self, env: Envelope) -> None:
        if env.type == RECONNECTED:
            if self._sessions is not None:
                self._sessions.clear()  # a revocation may have been lost with the rest
            self._resync(list(self._chats), "reconnect")
            return
        if env.type == REPAIR:
            self._resync(repaired_chats(env), "repair")
            return
        if env.type == "session.revoked" and self._sessions is not None:
            for user_id in env.user_ids:
                self._sessions.forget_user(user_id)
        if env.chat_id is None or env.seq is None:
            targets = set(self._chats[env.chat_id].conns) if env.chat_id in self._chats else set()
            for user_id in env.user_ids:
                targets |= self._users.get(user_id, set())
            if env.opens is not None:
                for conn in targets:
                    if env.opens not in conn.positions:
                        self._attach_by_event(conn, env.opens, 0)
            for conn in targets:
                if conn.user_id != env.exclude:
                    conn.push(env)
            return
        chat = self._chats.get(env.chat_id)
        if chat is None:
            if not any(u in self._users for u in (*env.user_ids, *env.joined)):
                return  # nobody here cares
            chat = self._open(env.chat_id, env.seq - 1)
            self._sequence(env.chat_id, chat, env)
            if not chat.conns and chat.repair is None and self._chats.get(env.chat_id) is chat:
                self._close(env.chat_id, chat)  # it named users here, none following the chat
            return
        self._sequence(env.chat_id, chat, env)

    def _sequence(self, chat_id: str, chat: _Chat, env: Envelope) -> None:
        assert env.seq is not None
        if chat.pos is None or env.seq == chat.pos + 1:
            self._emit(chat_id, chat, env)
            self._drain(chat_id, chat)
        elif env.seq > chat.pos + 1:
            chat.early[env.seq] = env
            if chat.repair is None:
                chat.repair = asyncio.create_task(self._repair(chat_id, chat))
        # else: a duplicate of something already passed on

    def _drain(self, chat_id: str, chat: _Chat) -> None:
        while chat.pos is not None and (nxt := chat.early.pop(chat.pos + 1, None)) is not None:
            self._emit(chat_id, chat, nxt)
        if not chat.early and chat.repair is not None and chat.repair is not asyncio.current_task():
            chat.repair.cancel()
            chat.repair = None

    def _emit(self, chat_id: str, chat: _Chat, env: Envelope) -> None:
        assert env.seq is not None
        chat.pos = env.seq
        for user_id in env.joined:
            for conn in self._users.get(user_id, ()):
                if chat_id not in conn.positions:
                    self._attach_by_event(conn, chat_id, env.seq - 1)
        # The hot path of a big chat: push to each connection without copying the set first.
        for conn in chat.conns:
            conn.push(env)
        for user_id in env.user_ids:
            for conn in self._users.get(user_id, ()):
                if conn not in chat.conns:
                    conn.push(env)
        for user_id in env.left:
            for conn in list(self._users.get(user_id, ())):
                # Stop at once: nothing after its own removal reaches a removed member. The
                # connection still sends the removal itself, which is already in its queue.
                chat.conns.discard(conn)

    async def _repair(self, chat_id: str, chat: _Chat) -> None:
        try:
            await asyncio.sleep(REORDER_WAIT_S)
            while chat.early and chat.pos is not None:
                first = min(chat.early)
                if first <= chat.pos + 1:
                    self._drain(chat_id, chat)
                    continue
                GAP_FILLS.labels("hub").inc()
                try:
                    missing = await self._read_log(chat_id, chat.pos, first)
                except DatabaseUnavailable:
                    missing = []  # logged where it happened
                except Exception:
                    log.exception("hub: could not read the event log; skipping ahead")
                    missing = []
                for env in missing:
                    if env.seq is not None and chat.pos is not None and env.seq == chat.pos + 1:
                        self._emit(chat_id, chat, env)
                if chat.pos is not None and chat.pos < first - 1:
                    chat.pos = first - 1  # connections fill the rest from the log themselves
                self._drain(chat_id, chat)
        finally:
            chat.repair = None

    def _resync(self, chat_ids: list[str], why: str) -> None:
        """After the bus lost events of these chats: their connections re-read the log."""
        GAP_FILLS.labels(why).inc()
        for chat_id in chat_ids:
            chat = self._chats.get(chat_id)
            if chat is None:
                continue  # nobody here follows it
            chat.pos = None
            chat.early.clear()
            for conn in chat.conns:
                conn.push(CatchUp(chat_id))
