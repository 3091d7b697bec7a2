"""One encoding per event, end to end: a real server on Redis, a subscriber on the Redis channel,
real WebSocket clients and the REST API all see the same bytes of a `message.created`, live and
replayed from the event log, and the answers to a send (the `ack`, the REST 201) carry the
message exactly as that event does."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import orjson
import pytest
from redis.asyncio import Redis

from reverb.realtime.bus import chat_topic
from reverb.realtime.bus.redis import PREFIX, from_wire
from tests.e2e.server import reverb_serve, server_env
from tests.e2e.wsclient import WsClient
from tests.helpers import group, register
from tests.services import REDIS_TEST_URL

pytestmark = pytest.mark.e2e

WAIT_S = 10.0


async def raw_frames(client: WsClient, *kinds: str) -> list[bytes]:
    """The next text frame of each type in `kinds` (in whatever order they come), as the bytes
    that came over the socket; frames of other types are skipped."""
    found: dict[str, bytes] = {}
    deadline = time.monotonic() + WAIT_S
    while len(found) < len(kinds):
        raw = await asyncio.wait_for(client.conn.recv(), max(0.01, deadline - time.monotonic()))
        assert isinstance(raw, str)
        kind = orjson.loads(raw)["type"]
        if kind in kinds and kind not in found:
            found[kind] = raw.encode()
    return [found[kind] for kind in kinds]


async def raw_frame(client: WsClient, kind: str) -> bytes:
    (data,) = await raw_frames(client, kind)
    return data


@asynccontextmanager
async def channel(chat_id: str) -> AsyncIterator[asyncio.Queue[bytes]]:
    """What the server publishes to the chat's Redis channel, as published."""
    redis = Redis.from_url(REDIS_TEST_URL)
    pubsub = redis.pubsub()
    await pubsub.subscribe(f"{PREFIX}:{chat_topic(chat_id)}")
    got: asyncio.Queue[bytes] = asyncio.Queue()
    confirmed = asyncio.Event()

    async def read() -> None:
        async for message in pubsub.listen():
            if message["type"] == "subscribe":
                confirmed.set()  # from here on, everything published reaches this subscriber
            elif message["type"] == "message":
                got.put_nowait(message["data"])

    reader = asyncio.create_task(read())
    try:
        await asyncio.wait_for(confirmed.wait(), WAIT_S)
        yield got
    finally:
        reader.cancel()
        await pubsub.aclose()  # type: ignore[no-untyped-call]
        await redis.aclose()


async def published(got: asyncio.Queue[bytes], chat_id: str, seq: int) -> bytes:
    """The data of the envelope published for the chat's event `seq` (the channel is a shard,
    which other chats may share)."""
    async with asyncio.timeout(WAIT_S):
        while True:
            envelope = from_wire(await got.get())
            if envelope.chat_id == chat_id and envelope.seq == seq:
                return envelope.data


def created_prefix(chat_id: str, seq: int) -> bytes:
    return b'{"type":"message.created","chat_id":"%s","seq":%d,"message":' % (chat_id.encode(), seq)


def message_of(created: bytes, chat_id: str, seq: int) -> bytes:
    """The message's bytes inside its `message.created`: the event is exactly these fields."""
    prefix = created_prefix(chat_id, seq)
    assert created.startswith(prefix) and created.endswith(b"}"), created
    return created[len(prefix) : -1]


async def _same_bytes_everywhere(url: str) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        a, b = await register(http), await register(http)
        chat = await group(http, a, b)
        sender = await WsClient.ready(url, a["access_token"])
        member = await WsClient.ready(url, b["access_token"])
        async with channel(chat) as redis_copies:
            # Over the WebSocket: the ack splices in the message as message.created carries it.
            await sender.send(
                {"type": "message.send", "chat_id": chat, "content": "héllo 👋", "client_id": "c1"}
                | {"ref": "r1"}
            )
            ack, own = await raw_frames(sender, "ack", "message.created")
            live = await raw_frame(member, "message.created")
            assert own == live
            assert await published(redis_copies, chat, 1) == live
            message = message_of(live, chat, 1)
            assert ack == b'{"type":"ack","message":' + message + b',"ref":"r1"}'
            assert orjson.loads(message)["content"] == "héllo 👋"

            # Over REST: the 201 body is the message as its message.created carries it.
            r = await http.post(
                "/api/messages",
                json={"chat_id": chat, "content": "two", "client_id": "c2"},
                headers=a["headers"],
            )
            assert r.status_code == 201, r.text
            second = await raw_frame(member, "message.created")
            assert await published(redis_copies, chat, 2) == second
            assert second == created_prefix(chat, 2) + r.content + b"}"
            # A retry answers 200 with the same message (encoded from the stored message).
            again = await http.post(
                "/api/messages",
                json={"chat_id": chat, "content": "two", "client_id": "c2"},
                headers=a["headers"],
            )
            assert (again.status_code, again.content) == (200, r.content)

        # Replayed from the event log: the same bytes, over the socket and over REST.
        resumed = await WsClient.ready(url, b["access_token"], since={chat: 0})
        assert await raw_frame(resumed, "message.created") == live
        assert await raw_frame(resumed, "message.created") == second
        log = await http.get(f"/api/chats/{chat}/events", headers=b["headers"])
        assert log.content == b'{"items":[' + live + b"," + second + b'],"has_more":false}'
        for client in (sender, member, resumed):
            await client.close()


def test_an_event_is_the_same_bytes_on_every_socket_in_redis_and_in_the_replay(
    tmp_path: Path, database_url: str
) -> None:
    env = server_env(database_url, redis_url=REDIS_TEST_URL)
    with reverb_serve(tmp_path, env) as (url, _):
        asyncio.run(_same_bytes_everywhere(url))
