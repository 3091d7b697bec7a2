"""Redis stops mid-run under two real server processes, then comes back."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from contextlib import ExitStack
from pathlib import Path
from typing import Any

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


Scenario = Callable[[str, str, RedisServer], Coroutine[Any, Any, None]]


def _on_two_processes(
    scenario: Scenario, tmp_path: Path, database_url: str, redis: RedisServer
) -> None:
    """Run `scenario` against two server processes sharing a Redis of the test's own."""
    redis.start()
    asyncio.run(redis.wait_ready())
    env = server_env(database_url, redis_url=redis.url)
    with ExitStack() as stack:
        one = stack.enter_context(reverb_serve(tmp_path, env))[0]
        two = stack.enter_context(reverb_serve(tmp_path, env))[0]
        asyncio.run(scenario(one, two, redis))


def test_redis_outage_loses_nothing(
    tmp_path: Path, database_url: str, redis_server: RedisServer
) -> None:
    _on_two_processes(_outage, tmp_path, database_url, redis_server)


async def _hang(one: str, two: str, redis: RedisServer) -> None:
    async with httpx.AsyncClient(base_url=one, timeout=30) as http:
        a, b = await register(http), await register(http)
        chat = await group(http, a, b)
    sender = await WsClient.ready(one, a["access_token"])
    near = await WsClient.ready(one, b["access_token"])  # on the sender's process
    far = await WsClient.ready(two, b["access_token"])  # on the other one
    n = 0

    async def send_one() -> int:
        nonlocal n
        n += 1
        ref = n
        frame = {"type": "message.send", "chat_id": chat, "content": f"m{n}", "ref": ref}
        await sender.send({**frame, "client_id": str(n)})
        ack = await sender.until(lambda f: f["type"] in ("ack", "error") and f.get("ref") == ref)
        assert ack["type"] == "ack", ack
        return int(ack["message"]["seq"])

    assert await send_one() == 1
    for reader in (near, far):
        assert seqs(await reader.logged(chat, 1)) == [1]

    redis.pause()
    try:
        # Redis takes connections but answers nothing: sends are still stored and acked, all
        # of them before Redis runs again (the publish happens off the send's path).
        assert [await send_one() for _ in range(5)] == [2, 3, 4, 5, 6]
    finally:
        redis.resume()

    # Once Redis answers, every open socket gets what it missed, in order, once.
    for reader in (near, far):
        assert seqs(await reader.logged(chat, 5, timeout=30)) == [2, 3, 4, 5, 6]
    assert await send_one() == 7
    for reader in (near, far):
        assert seqs(await reader.logged(chat, 1, timeout=30)) == [7]
    for c in (sender, near, far):
        await c.close()


def test_a_hung_redis_holds_up_no_send_and_loses_nothing(
    tmp_path: Path, database_url: str, redis_server: RedisServer
) -> None:
    _on_two_processes(_hang, tmp_path, database_url, redis_server)
