"""The hub: one bus subscription per process, fanned out to the connections of this process.

It keeps, per chat with local connections, the last seq it passed on. Logged events are passed
on in seq order: a duplicate is dropped; an early one waits briefly for the ones before it (two
processes may publish in the opposite order to the one they committed in), and if they do not
come, they are read from the event log once for all local connections of the chat.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from reverb.domain.events import Envelope
from reverb.metrics import GAP_FILLS
from reverb.realtime.bus import RECONNECTED, Bus
from reverb.realtime.connection import CatchUp, Connection

log = logging.getLogger(__name__)

# How long an early event waits for the ones before it before they are read from the log.
# Publishing after commit from two processes reorders by well under a millisecond.
REORDER_WAIT_S = 0.05

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

    async def _run(self) -> None:
        async with self._bus.subscribe() as stream:
            self._ready.set()
            async for envelope in stream:
                try:
                    self.dispatch(envelope)
                except Exception:
                    log.exception("hub: dispatch failed for %s", envelope.type)

    # --- connections ------------------------------------------------------------------------------

    def register(self, conn: Connection) -> None:
        self._users[conn.user_id].add(conn)

    def unregister(self, conn: Connection) -> None:
        users = self._users.get(conn.user_id)
        if users is not None:
            users.discard(conn)
            if not users:
                del self._users[conn.user_id]
        for chat_id in list(conn.positions):
            self.detach(conn, chat_id)

    def attach(self, conn: Connection, chat_id: str, position: int) -> None:
        """Deliver the chat's logged events after `position` (and its live events) to conn."""
        chat = self._chats.get(chat_id)
        if chat is None:
            chat = self._chats[chat_id] = _Chat(pos=position)
        chat.conns.add(conn)
        conn.positions.setdefault(chat_id, position)

    def detach(self, conn: Connection, chat_id: str) -> None:
        conn.positions.pop(chat_id, None)
        chat = self._chats.get(chat_id)
        if chat is not None:
            chat.conns.discard(conn)
            if not chat.conns:
                if chat.repair is not None:
                    chat.repair.cancel()
                del self._chats[chat_id]

    # --- dispatch ---------------------------------------------------------------------------------

    def dispatch(self, env: Envelope) -> None:
        if env.type == RECONNECTED:
            if self._sessions is not None:
                self._sessions.clear()  # a revocation may have been lost with the rest
            self._resync()
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
                        self.attach(conn, env.opens, 0)
            for conn in targets:
                if conn.user_id != env.exclude:
                    conn.push(env)
            return
        chat = self._chats.get(env.chat_id)
        if chat is None:
            if not any(u in self._users for u in (*env.user_ids, *env.joined)):
                return  # nobody here cares
            chat = self._chats[env.chat_id] = _Chat(pos=env.seq - 1)
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
                    self.attach(conn, chat_id, env.seq - 1)
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

    def _resync(self) -> None:
        """After the bus lost messages: every connection re-reads its chats from the log."""
        GAP_FILLS.labels("reconnect").inc()
        for chat_id, chat in self._chats.items():
            chat.pos = None
            chat.early.clear()
            for conn in chat.conns:
                conn.push(CatchUp(chat_id))
