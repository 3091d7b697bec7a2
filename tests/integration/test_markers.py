"""Read and delivered markers: coalesced per member and chat, written in batches, announced
once per batch with the latest value."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY

from reverb.domain.events import Envelope
from reverb.domain.users import User
from reverb.errors import ReverbError
from reverb.realtime.bus import chat_topic
from reverb.realtime.bus.memory import MemoryBus
from reverb.realtime.bus.relay import Relay
from reverb.services.markers import Markers
from reverb.services.publish import Publisher
from reverb.storage import users as user_store
from reverb.storage.db import Database
from tests.helpers import group, register, send
from tests.integration.test_bus import Subscriber, nothing_more, subscribed


def batches() -> float:
    return REGISTRY.get_sample_value("reverb_marker_batch_size_count") or 0.0


async def user(db: Database, session: dict[str, Any]) -> User:
    async with db.read() as conn:
        found = await user_store.get(conn, session["user"]["id"])
    assert found is not None
    return found


@pytest.fixture
async def wired(db: Database) -> AsyncIterator[tuple[Markers, MemoryBus, Subscriber]]:
    bus = MemoryBus()
    relay = Relay(bus)
    relay.start()
    markers = Markers(db, Publisher(relay))
    async with subscribed(bus) as sub:
        yield markers, bus, sub
        await markers.close()
        await relay.close(1.0)


async def test_many_marks_of_one_member_make_one_write_and_one_event(
    client: httpx.AsyncClient,
    db: Database,
    wired: tuple[Markers, MemoryBus, Subscriber],
) -> None:
    markers, bus, sub = wired
    a, b = await register(client), await register(client)
    chat = await group(client, a, b)
    await sub.follow(chat_topic(chat))
    for n in range(3):
        await send(client, a, chat, f"m{n}")
    bob = await user(db, b)
    before = batches()
    # All wanted before the batch runs: the highest wins, and reading implies delivery.
    for seq in (1, 3, 2, 99):
        markers.mark_soon(user_id=b["user"]["id"], chat_id=chat, seq=seq, read=True)
    for seq in (1, 2):
        markers.mark_soon(user_id=b["user"]["id"], chat_id=chat, seq=seq, read=False)
    await markers.mark(me=bob, chat_id=chat, seq=1, read=False)
    assert batches() == before + 1
    got = await sub.next()
    assert got == Envelope(
        type="read",
        data=f'{{"type":"read","chat_id":"{chat}","user_id":"{b["user"]["id"]}","seq":3}}'.encode(),
        chat_id=chat,
    )
    await nothing_more(bus, sub)
    members = (await client.get(f"/api/chats/{chat}/members", headers=a["headers"])).json()
    mine = next(m for m in members["items"] if m["user"]["id"] == b["user"]["id"])
    assert (mine["last_read_seq"], mine["last_delivered_seq"]) == (3, 3)

    # Nothing moves: nothing is written or announced.
    await markers.mark(me=bob, chat_id=chat, seq=2, read=True)
    await nothing_more(bus, sub)


async def test_a_non_member_is_refused_without_failing_the_others_in_its_batch(
    client: httpx.AsyncClient,
    db: Database,
    wired: tuple[Markers, MemoryBus, Subscriber],
) -> None:
    markers, _, sub = wired
    a, b, outsider = await register(client), await register(client), await register(client)
    chat = await group(client, a, b)
    await sub.follow(chat_topic(chat))
    await send(client, a, chat)
    stranger, bob = await user(db, outsider), await user(db, b)
    before = batches()
    results = await asyncio.gather(
        markers.mark(me=stranger, chat_id=chat, seq=1, read=True),
        markers.mark(me=bob, chat_id=chat, seq=1, read=False),
        return_exceptions=True,
    )
    assert isinstance(results[0], ReverbError) and results[0].code == "chat_not_found"
    assert results[1] is None
    assert batches() == before + 1
    delivered = await sub.next()
    assert (delivered.type, delivered.chat_id) == ("delivered", chat)


async def test_concurrent_rest_marks_share_transactions(client: httpx.AsyncClient) -> None:
    owner = await register(client)
    readers = [await register(client) for _ in range(30)]
    chat = await group(client, owner, *readers)
    await send(client, owner, chat)
    before = batches()
    answers = await asyncio.gather(
        *(
            client.post(f"/api/chats/{chat}/read", json={"seq": 1}, headers=r["headers"])
            for r in readers
        )
    )
    assert [r.status_code for r in answers] == [204] * len(readers)
    # Each answer came after its mark was written...
    members = (await client.get(f"/api/chats/{chat}/members", headers=owner["headers"])).json()
    assert sorted(m["last_read_seq"] for m in members["items"]) == [0] + [1] * len(readers)
    # ...and the marks shared transactions (one per interval at most).
    assert batches() - before < len(readers) / 2
