"""The sharded bus under real server processes: a process that never followed a chat's shard
gets every event committed after a client's `ready` (on one Redis and on a Redis Cluster).

Process one takes the sends; the reader connects to process two, which had no connection at
all before, so every shard the reader's chats fall in is new to it: the gateway must have them
subscribed (confirmed by Redis) before it reads where the chats stand.
"""

from __future__ import annotations

import asyncio
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest

from reverb.realtime.bus import chat_topic
from tests.e2e.server import reverb_serve, server_env
from tests.e2e.wsclient import Json, WsClient
from tests.helpers import group, register, send
from tests.redis_server import RedisClusterServers, redis_cluster

__all__ = ["redis_cluster"]  # a fixture, used by name
pytestmark = pytest.mark.e2e

WAIT_S = 30.0
CHATS = 4


def messages_of(frames: list[Json], chat_id: str) -> list[int]:
    return [
        int(f["seq"])
        for f in frames
        if f.get("chat_id") == chat_id and f["type"] == "message.created"
    ]


async def _scenario(one: str, two: str) -> None:
    async with httpx.AsyncClient(base_url=one, timeout=WAIT_S) as http:
        ready = await http.get("/readyz")  # Redis (or the cluster) answers
        assert ready.status_code == 200 and ready.json()["checks"]["redis"] == "ok", ready.text
        a, b = await register(http), await register(http)
        chats: list[str] = []
        while len(chats) < CHATS:  # each in a shard of its own
            chat_id = await group(http, a, b, name=f"g{len(chats)}")
            if chat_topic(chat_id) not in {chat_topic(c) for c in chats}:
                chats.append(chat_id)

        # Sends keep coming on process one, round robin over the chats, from before the reader
        # connects until well after: (when the send began, chat, seq).
        sent: list[tuple[float, str, int]] = []
        stop = asyncio.Event()

        async def sender() -> None:
            i = 0
            while not stop.is_set():
                chat_id = chats[i % CHATS]
                began = time.monotonic()
                message = await send(http, a, chat_id, f"m{i}")
                sent.append((began, chat_id, int(message["seq"])))
                i += 1

        task = asyncio.create_task(sender())
        try:
            async with asyncio.timeout(WAIT_S):
                while len(sent) < 10:
                    await asyncio.sleep(0.005)  # poll interval, bounded by the timeout
            reader = await WsClient.ready(two, b["access_token"])
            ready_at = time.monotonic()
            async with asyncio.timeout(WAIT_S):
                while len([s for s in sent if s[0] > ready_at]) < 40:
                    await asyncio.sleep(0.005)  # poll interval, bounded by the timeout
        finally:
            stop.set()
            await task

        # Every send that began after `ready` reaches the reader, in order, once.
        due = {c: {seq for began, cc, seq in sent if cc == c and began > ready_at} for c in chats}
        last = {c: max(seq for _, cc, seq in sent if cc == c) for c in chats}
        async with asyncio.timeout(WAIT_S):
            while any(messages_of(reader.received, c)[-1:] != [last[c]] for c in chats):
                await reader.recv()
        for chat_id in chats:
            got = messages_of(reader.received, chat_id)
            assert got == sorted(set(got)), (chat_id, got)
            assert due[chat_id] <= set(got), (chat_id, due[chat_id], got)
            assert got == list(range(got[0], last[chat_id] + 1)), got

        # A chat created now (its shard new to process two, most likely) and written to at once:
        # the reader hears of it on its user's shard and gets every message.
        fresh = await group(http, a, b, name="fresh")
        seqs = [int((await send(http, a, fresh, f"f{k}"))["seq"]) for k in range(5)]
        heard = await reader.logged(fresh, 5, timeout=WAIT_S)
        assert [int(f["seq"]) for f in heard] == seqs == [1, 2, 3, 4, 5]
        created = [f for f in reader.received if f["type"] == "chat.created"]
        assert [f["chat"]["id"] for f in created] == [fresh]

        # Added to a chat that existed before (the same again, through `member.added`).
        c = await register(http)
        older = await group(http, a, c, name="older")
        r = await http.post(
            f"/api/chats/{older}/members",
            json={"user_id": b["user"]["id"]},
            headers=a["headers"],
        )
        assert r.status_code == 201, r.text
        seqs = [int((await send(http, c, older, f"o{k}"))["seq"]) for k in range(5)]
        heard = await reader.logged(older, 6, timeout=WAIT_S)
        assert [(f["type"], int(f["seq"])) for f in heard] == [
            ("member.added", seqs[0] - 1),
            *(("message.created", s) for s in seqs),
        ]
        await reader.close()


def _run(tmp_path: Path, env: dict[str, Any]) -> None:
    with ExitStack() as stack:
        one = stack.enter_context(reverb_serve(tmp_path, env))[0]
        two = stack.enter_context(reverb_serve(tmp_path, env))[0]
        asyncio.run(_scenario(one, two))


def test_a_new_shard_misses_nothing_after_ready_on_one_redis(
    tmp_path: Path, database_url: str
) -> None:
    from tests.services import REDIS_TEST_URL

    _run(tmp_path, server_env(database_url, redis_url=REDIS_TEST_URL))


def test_a_new_shard_misses_nothing_after_ready_on_a_redis_cluster(
    tmp_path: Path, database_url: str, redis_cluster: RedisClusterServers
) -> None:
    _run(
        tmp_path,
        server_env(database_url, redis_url=redis_cluster.url, redis_cluster="true"),
    )
