"""Redis stops mid-run under two real server processes, then comes back."""

from __future__ import annotations

import asyncio
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest

from reverb.domain.events import LOGGED_TYPES
from tests.e2e.server import reverb_serve, server_env
from tests.e2e.wsclient import Json, WsClient
from tests.helpers import events, group, register
from tests.redis_server import RedisServer

pytestmark = pytest.mark.e2e


def seqs(frames: list[Json]) -> list[int]:
    return [int(f["seq"]) for f in frames]


async def _outage(one: str, two: str, redis: RedisServer) -> None:
    async with httpx.AsyncClient(base_url=one, timeout=30) as http:
        a, b = await register(http), await register(http)
        chat = await group(http, a, b)
    sender = await WsClient.ready(one, a["access_token"])
    reader = await WsClient.ready(two, b["access_token"])
    n = 0

    async def send_one() -> Json:
        nonlocal n
        n += 1
        await sender.send(
            {
                "type": "message.send",
                "chat_id": chat,
                "content": f"m{n}",
                "client_id": str(n),
                "ref": n,
            }
        )
        ack = await sender.until(lambda f: f["type"] in ("ack", "error") and f.get("ref") == n)
        assert ack["type"] == "ack", ack
        return ack

    await send_one()
    assert seqs(await reader.logged(chat, 1)) == [1]

    redis.kill()
    # Sends keep being stored and acknowledged while Redis is away.
    acked = [(await send_one())["message"]["seq"] for _ in range(5)]
    assert acked == [2, 3, 4, 5, 6]

    redis.start()
    await redis.wait_ready()
    # Live delivery across the processes comes back, and nothing missed in between is lost:
    # the reader's process re-reads the log when its subscription returns.
    got = await reader.logged(chat, 5, timeout=30)
    for _ in range(3):
        await send_one()
    got += await reader.logged(chat, 3, timeout=30)
    assert seqs(got) == list(range(2, n + 1))
    assert [
        f for f in await reader.quiet(0.3) if f.get("chat_id") == chat and f["type"] in LOGGED_TYPES
    ] == []

    # A client resuming from the start has every event.
    late = await WsClient.ready(two, b["access_token"], since={chat: 0})
    assert seqs(await late.logged(chat, n)) == list(range(1, n + 1))
    async with httpx.AsyncClient(base_url=two, timeout=30) as http:
        assert [e["seq"] for e in await events(http, b, chat)] == list(range(1, n + 1))
    for c in (sender, reader, late):
        await c.close()


def test_redis_outage_loses_nothing(
    tmp_path: Path, database_url: str, redis_server: RedisServer
) -> None:
    redis_server.start()
    asyncio.run(redis_server.wait_ready())
    env = server_env(database_url, redis_url=redis_server.url)
    with ExitStack() as stack:
        one = stack.enter_context(reverb_serve(tmp_path, env))[0]
        two = stack.enter_context(reverb_serve(tmp_path, env))[0]
        asyncio.run(_outage(one, two, redis_server))
