"""The hub's sequencing, with real parts: events stored through the REST API, the real event log
as the source of repairs, and `Connection` objects whose socket is a list.

Envelopes are fed to `Hub.dispatch` directly (as the bus would), so the order, duplicates and
gaps are chosen by the test.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any
from uuid import uuid4

import httpx
import orjson
import pytest
from fastapi import FastAPI
from prometheus_client import REGISTRY

from reverb.app import create_app
from reverb.config import Settings
from reverb.domain.events import Envelope, SessionRevoked, encode
from reverb.realtime import hub as hub_module
from reverb.realtime.bus import RECONNECTED, chat_topic
from reverb.realtime.bus.memory import MemoryBus
from reverb.realtime.connection import Connection, OwnFrame
from reverb.realtime.hub import REORDER_WAIT_S, Hub
from reverb.realtime.protocol import CLOSE_TOO_SLOW, CLOSE_UNAUTHORIZED
from reverb.realtime.transport import Transport
from tests.helpers import events, group, register, send, until

WAIT_S = 5.0  # upper bound for anything that should happen promptly

Session = dict[str, Any]


# --- the rig -----------------------------------------------------------------------------------


class Peer(Transport):
    """A connection whose socket is a list: what it sent, and how it was closed."""

    def __init__(self, world: World, user: Session, max_queue: int, blocked: bool) -> None:
        self.user_id: str = user["user"]["id"]
        self.sent: list[bytes] = []
        self.closes: list[int] = []
        self.sending = asyncio.Event()  # set once a send is under way (and, if blocked, stuck)
        self.unblock = asyncio.Event()
        if not blocked:
            self.unblock.set()
        self._changed = asyncio.Event()
        self.conn = Connection(
            user_id=self.user_id,
            transport=self,
            read_log=world.read_log,
            max_queue=max_queue,
            on_left=world.hub.detach,
        )
        self.conn.start()

    async def send(self, data: bytes) -> None:
        self.sending.set()
        await self.unblock.wait()
        self.sent.append(data)
        self._changed.set()

    async def close(self, code: int, reason: str) -> None:
        self.closes.append(code)
        self._changed.set()

    async def until(self, done: Callable[[], bool], timeout: float = WAIT_S) -> None:
        async with asyncio.timeout(timeout):
            while not done():
                self._changed.clear()
                await self._changed.wait()

    async def flush(self) -> None:
        """Wait until everything queued so far has been written (a marker frame comes back)."""
        marker = f"marker-{uuid4().hex}".encode()
        self.conn.push(OwnFrame(marker))
        await self.until(lambda: marker in self.sent)
        self.sent.remove(marker)

    def frames(self) -> list[dict[str, Any]]:
        return [orjson.loads(data) for data in self.sent]

    def seqs(self, chat_id: str) -> list[int]:
        return [f["seq"] for f in self.frames() if f.get("chat_id") == chat_id and "seq" in f]

    async def until_seqs(self, chat_id: str, expected: list[int]) -> None:
        await self.until(lambda: len(self.seqs(chat_id)) >= len(expected))
        await self.flush()
        assert self.seqs(chat_id) == expected


@dataclass
class World:
    app: FastAPI
    client: httpx.AsyncClient
    bus: MemoryBus
    hub: Hub
    peers: list[Peer] = field(default_factory=list)

    async def read_log(self, chat_id: str, after: int, before: int | None) -> list[Envelope]:
        log: list[Envelope] = await self.app.state.services.chats.log_between(
            chat_id, after, before
        )
        return log

    async def log(self, chat_id: str) -> list[Envelope]:
        return await self.read_log(chat_id, 0, None)

    def peer(
        self, user: Session, *, max_queue: int = 100, blocked: bool = False, register: bool = True
    ) -> Peer:
        peer = Peer(self, user, max_queue, blocked)
        self.peers.append(peer)
        if register:
            self.hub.register(peer.conn)
        return peer


@pytest.fixture
async def world(settings: Settings) -> AsyncIterator[World]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://reverb.test") as client:
            bus = MemoryBus()
            # The hub reads the log through the app's own service, as in production.
            hub = Hub(bus, app.state.services.chats.log_between)
            w = World(app=app, client=client, bus=bus, hub=hub)
            await hub.start()
            try:
                yield w
            finally:
                for peer in w.peers:
                    peer.unblock.set()
                    await peer.conn.stop(0)
                await hub.stop()


async def chat_with_messages(
    w: World, n: int, *members: Session
) -> tuple[str, Session, list[Envelope]]:
    """A group owned by a new user, with `members`, and `n` messages in its log."""
    owner = await register(w.client)
    chat_id = await group(w.client, owner, *members)
    for i in range(n):
        await send(w.client, owner, chat_id, f"message {i + 1} ✉️")
    log = await w.log(chat_id)
    assert [e.seq for e in log] == list(range(1, n + 1))
    return chat_id, owner, log


def gap_fills(where: str) -> float:
    return REGISTRY.get_sample_value("reverb_gap_fills_total", {"where": where}) or 0.0


def typing(chat_id: str, user_id: str) -> Envelope:
    data = orjson.dumps({"type": "typing", "chat_id": chat_id, "user_id": user_id})
    return Envelope(type="typing", data=data, chat_id=chat_id)


def presence(user_id: str, audience: str) -> Envelope:
    data = orjson.dumps(
        {"type": "presence", "user_id": user_id, "status": "online", "last_seen_at": None}
    )
    return Envelope(type="presence", data=data, user_ids=(audience,))


# --- the log the tests feed from ------------------------------------------------------------------


async def test_log_envelopes_match_the_rest_event_log(world: World) -> None:
    member = await register(world.client)
    chat_id, _, log = await chat_with_messages(world, 3, member)
    rest = await events(world.client, member, chat_id)
    assert [orjson.loads(e.data) for e in log] == rest
    assert all(e.chat_id == chat_id and e.type == "message.created" for e in log)


# --- ordering ---------------------------------------------------------------------------------


async def test_in_order_dispatch_is_delivered_once_each(world: World) -> None:
    member = await register(world.client)
    chat_id, owner, log = await chat_with_messages(world, 5, member)
    peers = [world.peer(owner), world.peer(member), world.peer(member)]  # two of one user's
    for p in peers:
        world.hub.attach(p.conn, chat_id, 0)
    for envelope in log:
        world.hub.dispatch(envelope)
    for p in peers:
        await p.until_seqs(chat_id, [1, 2, 3, 4, 5])
        assert p.sent == [e.data for e in log]  # the stored text, byte for byte
        assert p.closes == []


async def test_duplicates_are_dropped(world: World) -> None:
    chat_id, owner, log = await chat_with_messages(world, 5)
    peer = world.peer(owner)
    world.hub.attach(peer.conn, chat_id, 0)
    e = {envelope.seq: envelope for envelope in log}
    for seq in (1, 1, 2, 1, 2, 3, 3, 4, 2, 5, 5, 1):
        world.hub.dispatch(e[seq])
    await peer.until_seqs(chat_id, [1, 2, 3, 4, 5])
    for envelope in log:  # the whole log again, as after a replay
        world.hub.dispatch(envelope)
    await peer.flush()
    assert peer.seqs(chat_id) == [1, 2, 3, 4, 5]


async def test_out_of_order_is_delivered_in_order_without_reading_the_log(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A long reorder wait, so the log is never read however slow this machine is: 2 does come.
    monkeypatch.setattr(hub_module, "REORDER_WAIT_S", WAIT_S)
    chat_id, owner, log = await chat_with_messages(world, 5)
    peer = world.peer(owner)
    world.hub.attach(peer.conn, chat_id, 0)
    e = {envelope.seq: envelope for envelope in log}
    before = gap_fills("hub") + gap_fills("connection")
    world.hub.dispatch(e[1])
    world.hub.dispatch(e[3])
    await peer.flush()
    assert peer.seqs(chat_id) == [1]  # 3 waits for 2
    world.hub.dispatch(e[2])
    world.hub.dispatch(e[5])
    world.hub.dispatch(e[4])
    await peer.until_seqs(chat_id, [1, 2, 3, 4, 5])
    assert gap_fills("hub") + gap_fills("connection") == before


async def test_a_missing_event_is_read_from_the_log_after_the_reorder_wait(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Longer than the default, so the check that 3 waits cannot race the repair on a slow machine.
    wait_s = max(REORDER_WAIT_S, 0.25)
    monkeypatch.setattr(hub_module, "REORDER_WAIT_S", wait_s)
    member = await register(world.client)
    chat_id, owner, log = await chat_with_messages(world, 6, member)
    peers = [world.peer(owner), world.peer(member)]
    for p in peers:
        world.hub.attach(p.conn, chat_id, 0)
    e = {envelope.seq: envelope for envelope in log}
    before, by_connections = gap_fills("hub"), gap_fills("connection")
    started = time.monotonic()
    for seq in (1, 3, 4, 6):  # 2 and 5 never come
        world.hub.dispatch(e[seq])
    for p in peers:
        await p.flush()
        assert p.seqs(chat_id) == [1]  # the early ones wait for the ones before them
    for p in peers:
        await p.until_seqs(chat_id, [1, 2, 3, 4, 5, 6])
        assert p.sent == [envelope.data for envelope in log]
    assert time.monotonic() - started >= wait_s
    # Read by the hub for all local connections of the chat (here: once per gap), not by each.
    assert before < gap_fills("hub") <= before + 2
    assert gap_fills("connection") == by_connections


async def test_a_missing_first_event_is_read_from_the_log(world: World) -> None:
    chat_id, owner, log = await chat_with_messages(world, 3)
    peer = world.peer(owner)
    world.hub.attach(peer.conn, chat_id, 0)
    world.hub.dispatch(log[2])  # 1 and 2 never come
    await peer.until_seqs(chat_id, [1, 2, 3])


async def test_a_connection_attached_at_p_gets_only_later_seqs(world: World) -> None:
    member = await register(world.client)
    chat_id, owner, log = await chat_with_messages(world, 6, member)
    from_start, from_three = world.peer(owner), world.peer(member)
    world.hub.attach(from_start.conn, chat_id, 0)
    world.hub.attach(from_three.conn, chat_id, 3)
    for envelope in log:
        world.hub.dispatch(envelope)
    await from_start.until_seqs(chat_id, [1, 2, 3, 4, 5, 6])
    await from_three.until_seqs(chat_id, [4, 5, 6])


async def test_the_first_connection_attached_at_p_gets_only_later_seqs(world: World) -> None:
    chat_id, owner, log = await chat_with_messages(world, 5)
    peer = world.peer(owner)
    world.hub.attach(peer.conn, chat_id, 2)
    for envelope in log:
        world.hub.dispatch(envelope)
    await peer.until_seqs(chat_id, [3, 4, 5])


async def test_a_connection_attached_behind_the_hub_reads_the_seam_from_the_log(
    world: World,
) -> None:
    member = await register(world.client)
    chat_id, owner, log = await chat_with_messages(world, 6, member)
    early, late = world.peer(owner), world.peer(member)
    world.hub.attach(early.conn, chat_id, 0)
    for envelope in log[:4]:
        world.hub.dispatch(envelope)
    await early.until_seqs(chat_id, [1, 2, 3, 4])
    # Attached at 2 (its replay position) after the hub passed 4: 3 and 4 are not live any more.
    world.hub.attach(late.conn, chat_id, 2)
    for envelope in log[4:]:
        world.hub.dispatch(envelope)
    await early.until_seqs(chat_id, [1, 2, 3, 4, 5, 6])
    await late.until_seqs(chat_id, [3, 4, 5, 6])


async def test_reconnected_bus_makes_every_connection_catch_up_from_the_log(
    world: World,
) -> None:
    chat_id, owner, log = await chat_with_messages(world, 5)
    peer = world.peer(owner)
    world.hub.attach(peer.conn, chat_id, 0)
    world.hub.dispatch(log[0])
    await peer.until_seqs(chat_id, [1])
    # 2..5 were lost while the bus was away.
    world.hub.dispatch(Envelope(type=RECONNECTED, data=b""))
    await peer.until_seqs(chat_id, [1, 2, 3, 4, 5])
    for envelope in log:  # late copies change nothing
        world.hub.dispatch(envelope)
    await peer.flush()
    assert peer.seqs(chat_id) == [1, 2, 3, 4, 5]


async def test_envelopes_published_on_the_bus_reach_connections(world: World) -> None:
    chat_id, owner, log = await chat_with_messages(world, 3)
    peer = world.peer(owner)
    world.hub.attach(peer.conn, chat_id, 0)
    await world.hub.follow(peer.conn)  # the bus brings this process the chat's shard
    for envelope in reversed(log):
        await world.bus.publish(envelope)
    await peer.until_seqs(chat_id, [1, 2, 3])


# --- membership -------------------------------------------------------------------------------


async def test_left_is_the_last_event_of_the_chat_the_user_gets(world: World) -> None:
    leaver, stayer = await register(world.client), await register(world.client)
    owner = await register(world.client)
    chat_id = await group(world.client, owner, leaver, stayer)
    await send(world.client, owner, chat_id, "one")
    await send(world.client, leaver, chat_id, "two")
    r = await world.client.delete(
        f"/api/chats/{chat_id}/members/{leaver['user']['id']}", headers=owner["headers"]
    )
    assert r.status_code == 204, r.text
    await send(world.client, owner, chat_id, "four")
    log = await world.log(chat_id)
    assert [(e.seq, e.type) for e in log] == [
        (1, "message.created"),
        (2, "message.created"),
        (3, "member.removed"),
        (4, "message.created"),
    ]
    assert log[2].left == (leaver["user"]["id"],)

    gone, other_tab, staying = world.peer(leaver), world.peer(leaver), world.peer(stayer)
    for p in (gone, other_tab, staying):
        world.hub.attach(p.conn, chat_id, 0)
    for envelope in log:
        world.hub.dispatch(envelope)
    await staying.until_seqs(chat_id, [1, 2, 3, 4])
    for p in (gone, other_tab):
        await p.until_seqs(chat_id, [1, 2, 3])
        assert p.frames()[-1] == {
            "type": "member.removed",
            "chat_id": chat_id,
            "seq": 3,
            "user_id": leaver["user"]["id"],
        }
        assert chat_id not in p.conn.positions

    # Later events of the chat, live or repaired, do not reach the removed member.
    await send(world.client, owner, chat_id, "five")
    await send(world.client, owner, chat_id, "six")
    later = await world.read_log(chat_id, 4, None)
    world.hub.dispatch(later[1])  # 6 before 5: the hub reads 5 from the log
    await staying.until_seqs(chat_id, [1, 2, 3, 4, 5, 6])
    world.hub.dispatch(Envelope(type=RECONNECTED, data=b""))
    await staying.flush()
    for p in (gone, other_tab):
        await p.flush()
        assert p.seqs(chat_id) == [1, 2, 3]


async def test_left_when_the_removal_arrives_early(world: World) -> None:
    leaver, owner = await register(world.client), await register(world.client)
    chat_id = await group(world.client, owner, leaver)
    await send(world.client, owner, chat_id, "one")
    r = await world.client.delete(
        f"/api/chats/{chat_id}/members/{leaver['user']['id']}", headers=leaver["headers"]
    )
    assert r.status_code == 204, r.text
    await send(world.client, owner, chat_id, "three")
    log = await world.log(chat_id)
    assert [e.type for e in log] == ["message.created", "member.removed", "message.created"]
    gone = world.peer(leaver)
    world.hub.attach(gone.conn, chat_id, 0)
    world.hub.dispatch(log[1])  # the removal before the message it follows
    world.hub.dispatch(log[2])
    world.hub.dispatch(log[0])
    await gone.until_seqs(chat_id, [1, 2])
    assert gone.frames()[-1]["type"] == "member.removed"


async def test_joined_attaches_the_new_members_connections(world: World) -> None:
    member, newcomer = await register(world.client), await register(world.client)
    chat_id, owner, _ = await chat_with_messages(world, 1, member)
    r = await world.client.post(
        f"/api/chats/{chat_id}/members",
        json={"user_id": newcomer["user"]["id"]},
        headers=owner["headers"],
    )
    assert r.status_code == 201, r.text
    await send(world.client, member, chat_id, "welcome")
    log = await world.log(chat_id)
    assert [e.type for e in log] == ["message.created", "member.added", "message.created"]
    assert log[1].joined == (newcomer["user"]["id"],)

    old = world.peer(owner)
    world.hub.attach(old.conn, chat_id, 0)
    new_tabs = [world.peer(newcomer), world.peer(newcomer)]  # registered, attached to nothing
    for envelope in log:
        world.hub.dispatch(envelope)
    await old.until_seqs(chat_id, [1, 2, 3])
    for p in new_tabs:
        await p.until_seqs(chat_id, [2, 3])
        assert p.frames()[0]["type"] == "member.added"
        assert p.frames()[0]["user"]["id"] == newcomer["user"]["id"]
        assert p.conn.positions[chat_id] == 3


async def test_joined_attaches_when_no_other_local_connection_follows_the_chat(
    world: World,
) -> None:
    newcomer = await register(world.client)
    chat_id, owner, _ = await chat_with_messages(world, 2)
    r = await world.client.post(
        f"/api/chats/{chat_id}/members",
        json={"user_id": newcomer["user"]["id"]},
        headers=owner["headers"],
    )
    assert r.status_code == 201, r.text
    await send(world.client, owner, chat_id, "welcome")
    log = await world.log(chat_id)
    new = world.peer(newcomer)
    for envelope in log:
        world.hub.dispatch(envelope)
    await new.until_seqs(chat_id, [3, 4])
    assert new.frames()[0]["type"] == "member.added"


# --- the queue bound --------------------------------------------------------------------------


async def stuck_after_first(w: World, n: int) -> tuple[str, list[Envelope], Peer]:
    """A connection with max_queue=5 whose writer is stuck sending seq 1 of `n`."""
    chat_id, owner, log = await chat_with_messages(w, n)
    peer = w.peer(owner, max_queue=5, blocked=True)
    w.hub.attach(peer.conn, chat_id, 0)
    w.hub.dispatch(log[0])
    await asyncio.wait_for(peer.sending.wait(), WAIT_S)  # the writer holds seq 1 now
    return chat_id, log, peer


async def test_a_full_queue_of_logged_events_closes_with_too_slow(world: World) -> None:
    chat_id, log, peer = await stuck_after_first(world, 7)
    for envelope in log[1:6]:  # 2..6 fill the queue
        world.hub.dispatch(envelope)
    assert peer.conn.closing is None
    world.hub.dispatch(log[6])  # 7 does not fit
    assert peer.conn.closing == CLOSE_TOO_SLOW
    # The close follows the frame in flight (by design: Connection.close_soon). Once the stuck
    # send completes, nothing queued after it is sent, and the socket is closed.
    peer.unblock.set()
    await peer.until(lambda: bool(peer.closes))
    assert peer.closes == [CLOSE_TOO_SLOW]
    assert peer.seqs(chat_id) == [1]
    assert await peer.conn.stop(WAIT_S)  # the writer ends by itself after closing


async def test_typing_and_presence_are_dropped_first(world: World) -> None:
    chat_id, log, peer = await stuck_after_first(world, 6)
    uid = peer.user_id
    world.hub.dispatch(typing(chat_id, "someone"))
    world.hub.dispatch(presence("someone", uid))
    for envelope in log[1:4]:  # 2, 3, 4: the queue is full now
        world.hub.dispatch(envelope)
    world.hub.dispatch(log[4])  # 5 takes the typing's place
    world.hub.dispatch(log[5])  # 6 takes the presence's place
    assert peer.conn.closing is None
    peer.unblock.set()
    await peer.until_seqs(chat_id, [1, 2, 3, 4, 5, 6])
    assert [f["type"] for f in peer.frames()] == ["message.created"] * 6
    assert peer.closes == []


async def test_a_full_queue_with_only_logged_events_closes_on_the_next_logged_event(
    world: World,
) -> None:
    chat_id, log, peer = await stuck_after_first(world, 8)
    world.hub.dispatch(typing(chat_id, "someone"))
    for envelope in log[1:5]:  # typing, 2, 3, 4, 5: full
        world.hub.dispatch(envelope)
    world.hub.dispatch(log[5])  # 6 replaces the typing
    assert peer.conn.closing is None
    world.hub.dispatch(log[6])  # 7: nothing left to drop
    assert peer.conn.closing == CLOSE_TOO_SLOW
    peer.unblock.set()
    await peer.until(lambda: bool(peer.closes))
    assert peer.closes == [CLOSE_TOO_SLOW]
    assert peer.seqs(chat_id) == [1]


async def test_an_ephemeral_envelope_meeting_a_full_queue_is_dropped(world: World) -> None:
    chat_id, _, peer = await stuck_after_first(world, 2)
    for i in range(5):
        world.hub.dispatch(typing(chat_id, f"typist-{i}"))  # a full queue of typing
    world.hub.dispatch(typing(chat_id, "one-more"))
    world.hub.dispatch(presence("someone", peer.user_id))
    assert peer.conn.closing is None


# --- session revoked --------------------------------------------------------------------------


async def test_session_revoked_is_sent_then_the_connection_closes_with_4401(
    world: World,
) -> None:
    member = await register(world.client)
    chat_id, owner, log = await chat_with_messages(world, 2, member)
    revoked, other_user = world.peer(owner), world.peer(member)
    for p in (revoked, other_user):
        world.hub.attach(p.conn, chat_id, 0)
    world.hub.dispatch(log[0])
    await revoked.until_seqs(chat_id, [1])
    world.hub.dispatch(
        Envelope(
            type="session.revoked",
            data=encode(SessionRevoked()),
            user_ids=(revoked.user_id,),
        )
    )
    world.hub.dispatch(log[1])  # queued behind the revocation: never sent
    await revoked.until(lambda: bool(revoked.closes))
    assert revoked.closes == [CLOSE_UNAUTHORIZED]
    assert revoked.frames()[-1] == {"type": "session.revoked"}
    assert revoked.seqs(chat_id) == [1]
    assert await revoked.conn.stop(WAIT_S)
    await other_user.until_seqs(chat_id, [1, 2])
    assert other_user.closes == []
    assert all(f["type"] != "session.revoked" for f in other_user.frames())


# --- shards -----------------------------------------------------------------------------------


async def test_a_shard_is_let_go_after_its_last_connection_and_followed_again(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(hub_module, "UNFOLLOW_AFTER_S", 0.05)
    chat_id, owner, _ = await chat_with_messages(world, 1)
    topic = chat_topic(chat_id)
    first = world.peer(owner)
    world.hub.attach(first.conn, chat_id, 1)
    await world.hub.follow(first.conn)
    assert world.hub.following(topic)
    world.hub.unregister(first.conn)
    await until(lambda: not world.hub.following(topic), "the shard is let go", WAIT_S)
    # Live-only envelopes tell what the bus brings (a logged one would be read from the log).
    second = world.peer(owner)
    world.hub.attach(second.conn, chat_id, 1)
    typing = Envelope(type="typing", data=b'{"n":1}', chat_id=chat_id)
    await world.bus.publish(typing)  # not followed: it never reaches this process
    await world.hub.follow(second.conn)
    assert world.hub.following(topic)
    again = Envelope(type="typing", data=b'{"n":2}', chat_id=chat_id)
    await world.bus.publish(again)
    await second.until(lambda: bool(second.sent))
    await second.flush()
    assert second.sent == [again.data]


async def test_a_chat_joined_in_a_new_shard_catches_up_once_the_shard_is_followed(
    world: World,
) -> None:
    owner, newcomer = await register(world.client), await register(world.client)
    chat_id = await group(world.client, owner)
    r = await world.client.post(
        f"/api/chats/{chat_id}/members",
        json={"user_id": newcomer["user"]["id"]},
        headers=owner["headers"],
    )
    assert r.status_code == 201, r.text
    await send(world.client, owner, chat_id, "right after")
    added, message = await world.log(chat_id)
    assert added.seq is not None and message.seq == added.seq + 1
    assert added.joined == (newcomer["user"]["id"],)
    peer = world.peer(newcomer)
    await world.hub.follow(peer.conn)  # the user's topic; no shard of a chat yet
    assert not world.hub.following(chat_topic(chat_id))
    # Both go out before this process follows the chat's shard: the addition reaches it on the
    # newcomer's topic, the message does not reach it at all.
    await world.bus.publish_many([added, message])
    await peer.until_seqs(chat_id, [added.seq, message.seq])
    assert world.hub.following(chat_topic(chat_id))
